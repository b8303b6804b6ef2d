"""Prediction writer: ``python -m mvf_lightning predict`` -> an embedding export.

The module's ``predict_step`` returns one whole video's L2-normalised frame ``embeddings``
``[N, E]`` with the evaluation item's fields (``labels``, ``frame_indices``, ``video_id``,
``group``, ``split``, ``set_name``). :class:`EmbeddingExport` collects them and writes them
once, at the end of the predict epoch, with
:func:`~mvf_lightning.evaluation.export.write_embeddings` (the safe, pickle-free format that
``python -m mvf_lightning evaluate --embeddings DIR`` reads).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter

from ..data.contract import evaluation_data
from ..errors import DataError, ExistingFileError, MVFError
from .export import (
    EXPORT_FORMAT,
    INDEX_NAME,
    SPLITS,
    is_export,
    write_embeddings,
)
from .protocol import EvalProtocol
from .records import VideoEmbedding, gather_videos, video_record

__all__ = ["EmbeddingExport"]

# (sort key, record): the sort key is (dataloader_idx, dataset index) where known.
_Item = tuple[tuple[int, int], VideoEmbedding]


class EmbeddingExport(BasePredictionWriter):
    """Write the predicted per-video frame embeddings as an embedding export.

    Usage (appends this callback to the config's callbacks; ``output_dir`` goes to it)::

        python -m mvf_lightning predict --config configs/demo.yaml --ckpt_path CKPT \\
            --trainer.callbacks+=mvf_lightning.evaluation.prediction_writer.EmbeddingExport \\
            --trainer.callbacks.output_dir=exports/demo
        python -m mvf_lightning evaluate --embeddings exports/demo

    Adding ``--return_predictions=false`` stops the trainer from keeping a second copy of
    every prediction in memory. In a YAML config::

        trainer:
          callbacks:
            - class_path: mvf_lightning.evaluation.prediction_writer.EmbeddingExport
              init_args: {output_dir: exports/demo}

    Every video is written once, keyed by ``(set_name, split, video_id)`` (a video that comes
    twice keeps its first copy), in dataset order. Labels are written where known, i.e.
    unless all of a video's labels are ``-1``; source frame indices are written too. The
    export records the DataModule's evaluation protocol, so ``evaluate`` scores it as
    training did. Videos that fail to decode are skipped with one warning and listed in
    the export's ``broken_videos``.

    Under DDP every rank embeds its own shard; the shards are gathered to rank 0, which writes
    the one export (so ``output_dir`` needs to be reachable from rank 0 only). Errors while
    writing are raised on every rank.

    Args:
        output_dir: directory of the export. It must not exist or be empty, unless
            ``overwrite`` is set, and even then only an earlier export is replaced (checked
            before prediction starts, so no time is wasted on a run that could not be saved).
        overwrite: replace an earlier export at ``output_dir``.
    """

    def __init__(self, output_dir: str, overwrite: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir).expanduser()
        self.overwrite = bool(overwrite)
        self._items: list[_Item] = []
        self.written: Path | None = None
        """The export written by the last predict run (rank 0; ``None`` elsewhere)."""

    # ---------------------------------------------------------------- checks
    def check_output_dir(self) -> None:
        """Raise :class:`FileExistsError` if the export could not be written at the end."""
        out = self.output_dir
        if not out.exists():
            return
        if not out.is_dir():
            raise ExistingFileError(f"EmbeddingExport: {out} exists and is not a directory")
        if not any(out.iterdir()):
            return
        if not self.overwrite:
            raise ExistingFileError(
                f"EmbeddingExport: {out} already exists and is not empty; choose another "
                "output_dir or set overwrite: true (--trainer.callbacks.overwrite=true) to "
                "replace an earlier export"
            )
        if not is_export(out):
            raise ExistingFileError(
                f"EmbeddingExport: {out} is not an embedding export (no {INDEX_NAME} of format "
                f"{EXPORT_FORMAT!r}); refusing to replace it even with overwrite"
            )

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "predict":
            self.check_output_dir()

    # ---------------------------------------------------------------- collection
    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._items = []
        self.written = None

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        record = video_record(prediction)
        if record is None:
            raise ValueError(
                "EmbeddingExport: predict_step must return a dict with 'embeddings' [N, E] "
                f"(one whole video), got {type(prediction).__name__}"
            )
        for name in ("video_id", "set_name", "split"):
            if not isinstance(prediction.get(name), str):
                raise ValueError(
                    f"EmbeddingExport: prediction has no string {name!r}: evaluation loaders "
                    "yield one whole video per batch (batch size 1)"
                )
        if not record.broken:
            if record.split not in SPLITS:
                raise ValueError(
                    f"EmbeddingExport: video {record.video_id!r} has split {record.split!r}; "
                    f"exports hold the roles {SPLITS}"
                )
            if record.labels is not None and not (record.labels >= 0).any():
                record.labels = None  # nothing known about this video's phases
        index = batch_idx
        if batch_indices is not None and len(batch_indices) == 1:
            index = int(batch_indices[0])
        self._items.append(((int(dataloader_idx), index), record))

    # ---------------------------------------------------------------- writing
    @staticmethod
    def _in_dataset_order(items: list[_Item]) -> list[VideoEmbedding]:
        """Each video once (the DistributedSampler pads shards with repeats), in dataset
        order."""
        first: dict[tuple[str, str, str], _Item] = {}
        for order, rec in items:
            if rec.key not in first or order < first[rec.key][0]:
                first[rec.key] = (order, rec)
        return [rec for _, rec in sorted(first.values(), key=lambda item: item[0])]

    @staticmethod
    def _protocol(trainer: pl.Trainer) -> tuple[EvalProtocol | None, str | None]:
        """The DataModule's evaluation protocol (with this run's world size) and name."""
        data = evaluation_data(trainer)
        if data is None:
            return None, None
        return data.eval_protocol.with_world_size(trainer.world_size), data.eval_name

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        items = gather_videos(self._items, trainer.world_size, trainer.global_rank, to=0)
        self._items = []
        error = None
        count = 0
        protocol, dataset = self._protocol(trainer)
        if items is not None:
            try:
                unique = self._in_dataset_order(items)
                records = [r for r in unique if not r.broken]
                broken = [r for r in unique if r.broken]
                if broken:
                    listing = "; ".join(f"{b.set_name}/{b.split}/{b.video_id}: {b.error}"
                                        for b in broken)
                    warnings.warn(f"EmbeddingExport: {len(broken)} video(s) failed to decode "
                                  f"and were not exported: {listing}", stacklevel=2)
                if not records:
                    raise ValueError("EmbeddingExport: the predict loop produced no videos")
                self.written = write_embeddings(
                    self.output_dir, records, overwrite=self.overwrite, protocol=protocol,
                    dataset=dataset, broken=broken,
                )
                count = len(records)
            except (OSError, ValueError) as e:
                error = (isinstance(e, MVFError), f"{type(e).__name__}: {e}")
        if trainer.world_size > 1:
            error = trainer.strategy.broadcast(error, src=0)
        if error is not None:
            mistake, reason = error  # a user's mistake stays one (one line from the CLI)
            kind = DataError if mistake else RuntimeError
            raise kind(f"EmbeddingExport: writing {self.output_dir} failed: {reason}")
        if trainer.is_global_zero:
            print(f"EmbeddingExport: wrote {count} videos to {self.written}", flush=True)

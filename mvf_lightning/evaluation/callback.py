"""Lightning callback that scores the evaluation loop's per-video embeddings with the
DataModule's evaluation protocol and logs, prints and saves the results.

The module's ``validation_step`` / ``test_step`` embed one whole video each
(:mod:`~mvf_lightning.evaluation.records`). This callback feeds each video to the metrics of
its set (the protocol's ``torchmetrics.Metric`` classes, :mod:`~.metrics`), which synchronise
their videos across DDP ranks and score them (each video counted once, even when a
distributed sampler padded the shards) identically on every rank, so checkpoint and
early-stopping monitors see the same numbers everywhere. Rank 0 writes the results as JSON to
``<log_dir>/evaluation/<stage>_epoch<EEEE>.json``.
"""

from __future__ import annotations

import math
import sys
import warnings
from typing import Any

import lightning.pytorch as pl
import torch

from ..data.contract import evaluation_data
from .metrics import VideoMetric
from .protocol import (
    EvalProtocol,
    EvalResults,
    computed_values,
    format_table,
    mean_over_sets,
    results_path,
    results_payload,
    write_results,
)
from .records import VideoEmbedding, gather_videos, unique_videos, video_record

_LIMITS = {"fit": "limit_val_batches", "validate": "limit_val_batches",
           "test": "limit_test_batches"}


def check_whole_evaluation(trainer: pl.Trainer, stage: str) -> None:
    """Refuse a ``trainer.limit_val_batches`` / ``limit_test_batches`` that would cut the
    evaluation short: each batch is one video, and the alignment metrics need every video
    of a set (a cut loader leaves most sets without their val videos and logs nothing)."""
    key = _LIMITS.get(stage)
    data = evaluation_data(trainer)
    limit = getattr(trainer, key) if key else None
    if data is None or not limit or isinstance(limit, float) and limit >= 1.0:
        return
    videos = sum(len(s.train_ids) + len(s.val_ids) for s in data.eval_sets().values())
    per_rank = math.ceil(videos / max(trainer.world_size, 1))
    kept = min(limit, per_rank) if isinstance(limit, int) else int(per_rank * limit)
    if 0 < kept < per_rank:
        from ..errors import ConfigError

        where = " per process" if trainer.world_size > 1 else ""
        raise ConfigError(
            f"trainer.{key}={limit} evaluates {kept} of the {per_rank} evaluation videos{where} "
            "(one video per batch), but the alignment metrics need every video of a set: use "
            f"trainer.{key}=1.0 (all) or 0 (none), or evaluate fewer sets (data.eval_groups)"
        )


class AlignmentEvaluation(pl.Callback):
    """Phase classification, phase progression, Kendall's tau and retrieval AP@K after each
    evaluation loop, logged as ``<stage>/<dataset>/<set>/<metric>`` and
    ``<stage>/<dataset>/mean/<metric>``, plus ``<stage>/<dataset>/broken_videos``.

    The protocol (stride, probe, fractions, ...) is the DataModule's ``eval_protocol``;
    the arguments below override it explicitly (None keeps the DataModule's).

    Args:
        dataset_name: the ``<dataset>`` part of the names; default from the DataModule.
        stride: frame stride for Kendall's tau and retrieval.
        ap_ks: K values of retrieval AP@K.
        fractions: shares of train videos for phase classification.
        probe: ``logreg`` or ``sgd`` (FineGym's SGD probe).
        metrics: which of the four metric families to compute.
        print_table: print a table of the results (rank 0) after validate / test and at the
            end of fit.
        save_json: write each evaluation's results as JSON (rank 0).
    """

    def __init__(
        self,
        dataset_name: str | None = None,
        stride: int | None = None,
        ap_ks: list[int] | None = None,
        fractions: list[float] | None = None,
        probe: str | None = None,
        metrics: list[str] | None = None,
        print_table: bool = True,
        save_json: bool = True,
    ) -> None:
        super().__init__()
        self.dataset_name = dataset_name
        self.overrides = {
            "stride": stride,
            "ap_ks": None if ap_ks is None else tuple(ap_ks),
            "fractions": None if fractions is None else tuple(fractions),
            "probe": probe,
            "metrics": None if metrics is None else tuple(metrics),
        }
        EvalProtocol().replace(**self.overrides)  # bad values fail at construction
        self.print_table = print_table
        self.save_json = save_json
        self._metrics: dict[str, dict[str, VideoMetric]] = {}
        """Per evaluation set, its metrics (``torchmetrics.Metric``s collecting its videos)."""
        self._broken: list[VideoEmbedding] = []
        self._device: torch.device | str = "cpu"
        self._warned: set[tuple[str, str, str]] = set()
        self.results: dict[str, dict[str, float]] = {}
        """Last evaluation: ``{set: {metric: value}, ..., "mean": {...}}``."""
        self.broken: list[VideoEmbedding] = []
        self.protocol: EvalProtocol | None = None
        self._scored: EvalResults | None = None
        self.last_stage: str = "val"
        self.evaluated_at: tuple[int, int] | None = None
        """``(epoch, global_step)`` of the last evaluation during ``fit``."""

    def protocol_for(self, trainer: pl.Trainer) -> EvalProtocol:
        """The DataModule's protocol with this callback's overrides and the world size."""
        data = evaluation_data(trainer)
        protocol = data.eval_protocol if data is not None else EvalProtocol()
        return protocol.replace(**self.overrides).with_world_size(trainer.world_size)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        check_whole_evaluation(trainer, stage)

    # ---------------------------------------------------------------- collection
    def _start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.protocol = self.protocol_for(trainer)
        self._metrics = {}
        self._broken = []
        self._device = pl_module.device

    def _set_metrics(self, set_name: str) -> dict[str, VideoMetric]:
        if set_name not in self._metrics:
            metrics = self.protocol.set_metrics(self.protocol.set_spec(set_name))
            self._metrics[set_name] = {k: m.to(self._device) for k, m in metrics.items()}
        return self._metrics[set_name]

    def _collect(self, outputs: Any) -> None:
        video = video_record(outputs)
        if video is None:
            return
        if video.broken:
            if video.key not in self._warned:
                self._warned.add(video.key)
                warnings.warn(
                    f"evaluation video {video.set_name}/{video.split}/{video.video_id} failed "
                    f"to decode and is left out of every metric: {video.error}",
                    stacklevel=2,
                )
            self._broken.append(video)
            return
        embeddings = torch.as_tensor(video.embeddings, device=self._device)
        labels = torch.as_tensor(video.known_labels(), device=self._device)
        for metric in self._set_metrics(video.set_name).values():
            metric.update(embeddings, labels, video_id=video.video_id,
                          train=video.split == "train")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._collect(outputs)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                          dataloader_idx=0) -> None:
        self._collect(outputs)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._start(trainer, pl_module)

    on_test_epoch_start = on_validation_epoch_start

    # ---------------------------------------------------------------- scoring
    def _name(self, trainer: pl.Trainer) -> str:
        if self.dataset_name:
            return self.dataset_name
        data = evaluation_data(trainer)
        return (data.eval_name if data is not None else None) or "eval"

    def evaluate(self, trainer: pl.Trainer, stage: str) -> dict[str, dict[str, float]]:
        """Score the collected videos on every rank (the metrics synchronise their videos);
        returns (and keeps) ``{set: metrics, "mean": ...}``."""
        world, rank = trainer.world_size, trainer.global_rank
        names = [s.name for s in self.protocol.sets]
        if not names:  # sets not known up front: those any rank saw, in one order
            names = sorted(set(gather_videos(sorted(self._metrics), world, rank)))
        sets = {}
        wanted = self.protocol.metric_names()
        for name in names:
            values = computed_values(self._set_metrics(name))
            scores = {k: values[k] for k in wanted if k in values}
            if scores:
                sets[name] = scores
        broken = unique_videos(gather_videos(self._broken, world, rank))
        self._scored = EvalResults(sets=sets, mean=mean_over_sets(sets),
                                   broken=sorted(broken, key=lambda v: v.key))
        self.results = self._scored.table()
        self.broken = self._scored.broken
        self.last_stage = stage
        return self.results

    def _log(self, pl_module: pl.LightningModule, trainer: pl.Trainer, stage: str) -> None:
        name = self._name(trainer)
        for set_name, r in self.results.items():
            for metric, value in r.items():
                pl_module.log(f"{stage}/{name}/{set_name}/{metric}", float(value),
                              sync_dist=False, rank_zero_only=False)
        pl_module.log(f"{stage}/{name}/broken_videos", float(len(self.broken)),
                      sync_dist=False, rank_zero_only=False)

    def _save(self, trainer: pl.Trainer, stage: str) -> None:
        folder = trainer.log_dir or trainer.default_root_dir  # a collective: every rank
        if not (self.save_json and trainer.is_global_zero):
            return
        payload = results_payload(
            self._scored, self.protocol, stage=stage, dataset=self._name(trainer),
            epoch=trainer.current_epoch, global_step=trainer.global_step,
            command=str(getattr(trainer.state.fn, "value", trainer.state.fn)),
        )
        write_results(results_path(folder, stage, trainer.current_epoch), payload)

    def _finish(self, trainer, pl_module, stage: str) -> None:
        self.evaluate(trainer, stage)
        self._log(pl_module, trainer, stage)
        if self.save_json:
            self._save(trainer, stage)
        self._metrics, self._broken = {}, []

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        self._finish(trainer, pl_module, "val")
        if trainer.state.fn == "fit":
            self.evaluated_at = (trainer.current_epoch, trainer.global_step)
        if self.print_table and not trainer.training and trainer.state.fn == "validate":
            self._print(trainer, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._finish(trainer, pl_module, "test")
        if self.print_table:
            self._print(trainer, "test")

    def evaluated_last(self, trainer: pl.Trainer) -> bool:
        """Whether the model as ``fit`` left it was evaluated (the last validation ran after
        the last training step)."""
        return self.evaluated_at is not None and self.evaluated_at[1] == trainer.global_step

    def on_fit_end(self, trainer, pl_module) -> None:
        # A table of an earlier model is not shown at the end: `fit` through the CLI evaluates
        # the final model next (final_evaluation_needed), and prints that table.
        if self.print_table and self.results and self.evaluated_last(trainer):
            self._print(trainer, self.last_stage, f" after epoch {self.evaluated_at[0] + 1}")

    def _print(self, trainer: pl.Trainer, stage: str, when: str = "") -> None:
        if trainer.is_global_zero and (self.results or self.broken):
            title = f"{stage} metrics ({self._name(trainer)}){when}"
            table = format_table(self.results, title, self.broken)
            print("\n" + table + "\n", file=sys.stdout, flush=True)


def final_evaluation_needed(trainer: pl.Trainer) -> bool:
    """Whether a finished ``fit`` left a model the alignment metrics have not seen: it has an
    :class:`AlignmentEvaluation`, evaluation is on, training was not interrupted, and its last
    validation (``check_val_every_n_epoch``) came before the last training step."""
    callbacks = [c for c in trainer.callbacks if isinstance(c, AlignmentEvaluation)]
    if not callbacks or trainer.interrupted or trainer.global_step == 0:
        return False
    if trainer.limit_val_batches == 0 or evaluation_data(trainer) is None:
        return False
    if not trainer.datamodule.eval_sets():
        return False
    return not all(c.evaluated_last(trainer) for c in callbacks)

"""Lightning callback that chooses what to show after an evaluation and when.

After a validation (and test) loop, rank 0 logs through every logger's sink
(:mod:`~mvf_lightning.evaluation.sinks`):

* ``<stage>/metrics_table``: every metric per evaluation set, from ``trainer.callback_metrics``
  (``<stage>/<dataset>/<set>/<metric>``, logged by ``AlignmentEvaluation``); in W&B each set's
  row carries a thumbnail of its similarity matrix;
* ``<stage>/media/similarity``: cosine similarity of two val videos of one set, frame by
  frame, with phase boundaries and the DTW path;
* ``<stage>/media/attention``: LSTP attention of the entity tokens over a few frames;
* ``<stage>/media/alignment``: a video of the first video beside the DTW-matched frames of
  the second.

The callback only chooses: the embeddings are the evaluation loop's own outputs (the first
``num_videos`` val videos of each set by id, gathered from every rank), the frames of the two
chosen videos come from the DataModule (``EvaluationData.eval_frames``), their attention from
the model (``EvaluationModel.video_attention``); :mod:`~mvf_lightning.evaluation.media`
renders and :mod:`~mvf_lightning.evaluation.sinks` logs. A video that fails to decode is
skipped with one warning. Errors while rendering or logging a medium become one warning per
medium (``strict=True`` re-raises them), so a long run never dies for a picture.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import numpy as np

from ..data.contract import evaluation_data, evaluation_model
from ..errors import ConfigError
from .media import alignment_clip, attention_picture, similarity_picture
from .protocol import results_from_metrics
from .records import VideoEmbedding, gather_videos, unique_videos, video_record
from .sinks import MediaSink, sink_for

__all__ = ["EvaluationMedia"]

log = logging.getLogger(__name__)

MEDIA = ("table", "similarity", "attention", "alignment")


class EvaluationMedia(pl.Callback):
    """Similarity matrices, LSTP attention maps, an alignment video and a metrics table,
    logged after validation and test (rank 0 only).

    Args:
        every_n_epochs: during ``fit``, log after the validation of epochs ``E`` with
            ``(E + 1) % every_n_epochs == 0`` (as ModelCheckpoint counts); ``validate`` and
            ``test`` always log.
        num_videos: val videos kept per set (2: similarity between different videos).
        num_attention_frames: evenly spaced frames of the first video in the attention image.
        video_fps: frame rate of the alignment video.
        max_video_frames: the alignment video shows at most this many (evenly spaced) frames.
        set_name: evaluation set of the similarity, attention and alignment media (default:
            the first set with two val videos).
        media: which of ``table``, ``similarity``, ``attention``, ``alignment`` to log.
        max_thumbnails: sets whose table row gets a similarity thumbnail (W&B).
        strict: re-raise errors from rendering and logging instead of warning once.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_videos: int = 2,
        num_attention_frames: int = 4,
        video_fps: float = 8.0,
        max_video_frames: int = 200,
        set_name: str | None = None,
        media: list[str] | None = None,
        max_thumbnails: int = 32,
        strict: bool = False,
    ) -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise ConfigError(f"EvaluationMedia.every_n_epochs must be >= 1, got {every_n_epochs}")
        if num_videos < 1:
            raise ConfigError(f"EvaluationMedia.num_videos must be >= 1, got {num_videos}")
        if num_attention_frames < 1:
            raise ConfigError(
                f"EvaluationMedia.num_attention_frames must be >= 1, got {num_attention_frames}"
            )
        if not video_fps or video_fps <= 0:
            raise ConfigError(f"EvaluationMedia.video_fps must be > 0, got {video_fps}")
        if max_video_frames < 1:
            raise ConfigError(
                f"EvaluationMedia.max_video_frames must be >= 1, got {max_video_frames}"
            )
        self.every_n_epochs = int(every_n_epochs)
        self.num_videos = int(num_videos)
        self.num_attention_frames = int(num_attention_frames)
        self.video_fps = float(video_fps)
        self.max_video_frames = int(max_video_frames)
        self.set_name = set_name
        self.media = list(media) if media is not None else list(MEDIA)
        unknown = sorted(set(self.media) - set(MEDIA))
        if unknown:
            raise ConfigError(f"EvaluationMedia.media: unknown {unknown}; valid: {list(MEDIA)}")
        self.max_thumbnails = int(max_thumbnails)
        self.strict = bool(strict)
        self._noted: set[tuple[str, ...]] = set()
        self._kept: list[VideoEmbedding] = []
        self._videos: dict[str, list[VideoEmbedding]] = {}
        self.logged: list[tuple[str, int]] = []
        """``(stage, epoch)`` of every logging round (rank 0), for inspection and tests."""

    # ------------------------------------------------------------------ hooks
    def _due(self, trainer: pl.Trainer) -> bool:
        if trainer.sanity_checking:
            return False
        if trainer.state.fn == "fit":
            return (trainer.current_epoch + 1) % self.every_n_epochs == 0
        return True

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule):
        self._kept, self._videos = [], {}

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:
        if self._due(trainer):
            self._keep(outputs)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                          dataloader_idx=0) -> None:
        self._keep(outputs)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # on_validation_end: every callback's epoch-end hook (the metrics) has run by now.
        if self._due(trainer):
            self._choose(trainer)
            self.log_media(trainer, pl_module, "val")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._choose(trainer)
        self.log_media(trainer, pl_module, "test")

    def _keep(self, outputs: Any) -> None:
        """Keep this rank's first ``num_videos`` val videos of each set."""
        video = video_record(outputs)
        if video is None or video.broken or video.split != "val":
            return
        if sum(v.set_name == video.set_name for v in self._kept) < self.num_videos:
            self._kept.append(video)

    def _choose(self, trainer: pl.Trainer) -> None:
        """On rank 0: the first ``num_videos`` val videos of each set by id, from every rank
        (every rank takes part in the gather)."""
        kept = gather_videos(self._kept, trainer.world_size, trainer.global_rank, to=0)
        self._kept = []
        self._videos = {}
        for video in sorted(unique_videos(kept or []), key=lambda v: v.key):
            chosen = self._videos.setdefault(video.set_name, [])
            if len(chosen) < self.num_videos:
                chosen.append(video)

    # ------------------------------------------------------------------ messages
    def _note(self, *key: str, message: str) -> None:
        """Info message, once per key."""
        if key not in self._noted:
            self._noted.add(key)
            log.info("EvaluationMedia: %s", message)

    def _guard(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - media must never stop training
            if self.strict:
                raise
            if ("error", what) not in self._noted:
                self._noted.add(("error", what))
                warnings.warn(
                    f"EvaluationMedia: {what} failed and is skipped: {type(e).__name__}: {e}",
                    RuntimeWarning, stacklevel=2,
                )
            return None

    # ------------------------------------------------------------------ main
    def _sinks(self, trainer: pl.Trainer) -> list[MediaSink]:
        sinks = []
        for logger in trainer.loggers:
            sink = sink_for(logger)
            if sink is None:
                name = type(logger).__name__
                self._note(name, message=f"{name} has no media sink: its media are skipped")
            else:
                sinks.append(sink)
        return sinks

    def log_media(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Render and log everything for ``stage`` (``"val"`` / ``"test"``); rank 0 only."""
        if not trainer.is_global_zero:
            return
        sinks = self._sinks(trainer)
        if not sinks:
            return
        step, epoch = int(trainer.global_step), int(trainer.current_epoch)
        folder = f"{stage}_epoch{epoch}"
        self.logged.append((stage, epoch))
        pictures: dict[str, list[tuple[np.ndarray, str]]] = {}
        clip = None
        pair = self._pair()
        if "table" in self.media:
            table = self._table(trainer, stage)
            if table is not None:
                thumbs = self._guard("similarity thumbnails", self._thumbnails) or {}
                for sink in sinks:
                    self._guard("metrics table", lambda s=sink: s.table(
                        f"{stage}/metrics_table", *table, step, folder, thumbs))
        if pair and "similarity" in self.media:
            image = self._guard("similarity image", lambda: similarity_picture(*pair))
            if image is not None:
                pictures[f"{stage}/media/similarity"] = [
                    (image, f"{pair[0].video_id} (rows) vs {pair[-1].video_id} (columns)")]
        if pair and "attention" in self.media:
            att = self._guard("attention image", lambda: self._attention(trainer, pl_module,
                                                                         pair[0]))
            if att is not None:
                pictures[f"{stage}/media/attention"] = [att]
        if pair and "alignment" in self.media:
            clip = self._guard("alignment video", lambda: self._alignment(trainer, pair))
        for sink in sinks:
            for key, images in pictures.items():
                self._guard(key, lambda s=sink, k=key, i=images: s.images(k, i, step, folder))
            if clip is not None:
                key = f"{stage}/media/alignment"
                self._guard(key, lambda s=sink, k=key: s.video(k, clip[0], self.video_fps,
                                                               clip[1], step, folder))

    # ------------------------------------------------------------------ choices
    def _table(self, trainer: pl.Trainer, stage: str) -> tuple[list[str], list[list]] | None:
        data = evaluation_data(trainer)
        results = results_from_metrics(
            dict(trainer.callback_metrics), stage, (data.eval_name if data else None) or "eval"
        )
        if not results:
            self._note("table", message="no <stage>/<dataset>/<set>/<metric> metrics logged "
                       "(is AlignmentEvaluation among the callbacks?): no metrics table")
            return None
        names = list(dict.fromkeys(k for r in results.values() for k in r))
        rows = [[s, *(r.get(n) for n in names)] for s, r in results.items()]
        rows = [[r[0], *(None if v is None or math.isnan(v) else v for v in r[1:])] for r in rows]
        return ["set", *names], rows

    def _thumbnails(self) -> dict[str, np.ndarray]:
        out = {}
        for set_name, videos in list(self._videos.items())[: self.max_thumbnails]:
            out[set_name] = similarity_picture(videos[0], videos[-1], thumbnail=True)
        return out

    def _pair(self) -> list[VideoEmbedding] | None:
        """The two videos of the similarity, attention and alignment media."""
        if not self._videos:
            return None
        if self.set_name is not None:
            if self.set_name in self._videos:
                chosen = self._videos[self.set_name]
                return [chosen[0], chosen[-1]]
            self._note("set", message=f"set_name={self.set_name!r} has no val videos (sets: "
                       f"{sorted(self._videos)}); using the default choice")
        multi = [v for v in self._videos.values() if len(v) >= 2]
        chosen = multi[0] if multi else next(iter(self._videos.values()))
        return [chosen[0], chosen[-1]]

    def _frames(self, trainer: pl.Trainer, video: VideoEmbedding):
        """The video's frames from the DataModule (None, with one note or warning, if it
        cannot give them)."""
        data = evaluation_data(trainer)
        if data is None:
            self._note("data", message="the DataModule does not provide EvaluationData "
                       "(mvf_lightning.data.contract): no attention or alignment media")
            return None
        frames = data.eval_frames(video.set_name, video.video_id)
        if frames is None:
            warnings.warn(f"EvaluationMedia: skipping {video.set_name}/{video.video_id}: its "
                          "frames could not be decoded", RuntimeWarning, stacklevel=2)
        return frames

    # ------------------------------------------------------------------ media needing frames
    def _attention(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                   video: VideoEmbedding) -> tuple[np.ndarray, str] | None:
        model = evaluation_model(pl_module)
        if model is None:
            self._note("embed", message=f"{type(pl_module).__name__} has no video_attention() "
                       "(mvf_lightning.data.contract.EvaluationModel): no attention maps")
            return None
        frames = self._frames(trainer, video)
        if frames is None:
            return None
        out = model.video_attention(frames.model_input)
        if out is None:
            self._note("attention", message="the model returns no LSTP attention "
                       "(late-fusion embedder?): no attention maps")
            return None
        attention, grid = out
        return attention_picture(frames.display, attention, grid, self.num_attention_frames,
                                 video.video_id)

    def _alignment(self, trainer: pl.Trainer, pair: list[VideoEmbedding]):
        frames = [self._frames(trainer, v) for v in pair]
        if any(f is None for f in frames):
            return None
        return alignment_clip(pair[0], pair[1], frames[0].display, frames[1].display,
                              self.max_video_frames)

"""Lightning callback that logs pictures, a video and a metrics table after evaluation.

After a validation (and test) loop, rank 0 embeds a few val videos of the DataModule's
evaluation dataset again (whole videos, as ``validation_step`` does; cheap for a handful of
videos, and it keeps this callback independent of :class:`AlignmentEvaluation`) and logs,
through every logger the Trainer has:

* ``<stage>/metrics_table``: every metric per evaluation set, read from the
  :class:`~mvf_lightning.evaluation.callback.AlignmentEvaluation` callback's ``results``;
* ``<stage>/media/similarity``: frame-by-frame cosine similarity between pairs of val videos;
* ``<stage>/media/attention``: LSTP attention maps over a few frames of the first video;
* ``<stage>/media/alignment``: the first video beside the nearest-neighbour frames of the
  second one.

What each logger gets:

=============  ===================  ==========================  ===========================
logger         table                images                      video
=============  ===================  ==========================  ===========================
W&B            ``wandb.Table``      ``log_image`` (captions)    ``wandb.Video`` (mp4)
TensorBoard    markdown text        ``add_image`` (one tag      ``add_video`` (needs
                                    per image: ``key/i``)       ``moviepy.editor``), else
                                                                an animated GIF image
CSV            ``metrics_table_     PNG files under             mp4 under ``<log_dir>/
               <stage>_epoch<E>     ``<log_dir>/media/          media/...``
               .csv``               <stage>_epoch<E>/``
other          skipped              skipped                     skipped
=============  ===================  ==========================  ===========================

A logger that cannot take a medium skips it with one info message (per logger kind and
medium). Errors while rendering or logging media are turned into one warning per medium
(``strict=True`` re-raises them instead), so a long run never dies for a picture.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import logging
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger

from .callback import AlignmentEvaluation
from .media import alignment_video, attention_overlay, similarity_matrix_image

__all__ = ["EvaluationMedia"]

log = logging.getLogger(__name__)

MEDIA = ("table", "similarity", "attention", "alignment")


@dataclass
class _Video:
    """One chosen val video: raw frames, the frames the model saw, and its outputs."""

    set_name: str
    video_id: str
    frames: torch.Tensor  # uint8 [N, 3, H, W], as decoded
    seen: np.ndarray | None = None  # uint8 [N, S, S, 3]: the transformed frames, denormalised
    embeddings: np.ndarray | None = None  # [N, E]
    attention: np.ndarray | None = None  # [N, K, S]


def _logger_kind(logger: Logger) -> str | None:
    if isinstance(logger, WandbLogger):
        return "wandb"
    if isinstance(logger, TensorBoardLogger):
        return "tensorboard"
    if isinstance(logger, CSVLogger):
        return "csv"
    return None


def _even_size(h: int, w: int, max_side: int | None) -> tuple[int, int]:
    """``(h, w)`` scaled so the longer side is <= ``max_side``, rounded to even numbers (video
    encoders with 4:2:0 chroma need even sizes)."""
    scale = 1.0 if not max_side or max(h, w) <= max_side else max_side / max(h, w)
    return max(2, int(h * scale / 2 + 0.5) * 2), max(2, int(w * scale / 2 + 0.5) * 2)


def _to_hwc(frames: torch.Tensor, max_side: int | None) -> np.ndarray:
    """uint8 ``[N, 3, H, W]`` -> uint8 ``[N, H', W', 3]`` with even sides <= ``max_side``."""
    h, w = frames.shape[-2:]
    size = _even_size(int(h), int(w), max_side)
    x = frames
    if tuple(x.shape[-2:]) != size:
        x = torch.nn.functional.interpolate(
            x.float(), size=size, mode="bilinear", antialias=True, align_corners=False
        )
        x = x.round().clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def _evenly(n: int, k: int) -> np.ndarray:
    """``min(n, k)`` evenly spaced indices in ``[0, n)``."""
    if k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max(k, 1)).round().astype(np.int64))


def _format_value(value: float) -> str:
    return f"{value:.4f}"


class EvaluationMedia(pl.Callback):
    """Similarity matrices, LSTP attention maps, an alignment video and a metrics table,
    logged after validation and test (rank 0 only).

    Args:
        every_n_epochs: during ``fit``, log after the validation of epochs ``E`` with
            ``(E + 1) % every_n_epochs == 0`` (as ModelCheckpoint counts); ``validate`` and
            ``test`` always log.
        num_videos: val videos to use (>= 1; 2 or more for similarity between different
            videos): the first ones of ``set_name``, else of the first evaluation set with at
            least two val videos. The same videos every time, so epochs compare.
        num_attention_frames: evenly spaced frames of the first video in the attention image.
        video_fps: frame rate of the alignment video.
        max_video_frames: the alignment video shows at most this many (evenly spaced) frames
            of the query video.
        frame_size: longer side (pixels) of the frames in the alignment video.
        set_name: evaluation set to take the videos from (default: see ``num_videos``).
        media: which of ``table``, ``similarity``, ``attention``, ``alignment`` to log.
        strict: re-raise errors from rendering and logging instead of warning once.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_videos: int = 2,
        num_attention_frames: int = 4,
        video_fps: float = 8.0,
        max_video_frames: int = 200,
        frame_size: int = 160,
        set_name: str | None = None,
        media: list[str] | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"EvaluationMedia.every_n_epochs must be >= 1, got {every_n_epochs}")
        if num_videos < 1:
            raise ValueError(f"EvaluationMedia.num_videos must be >= 1, got {num_videos}")
        if num_attention_frames < 1:
            raise ValueError(
                f"EvaluationMedia.num_attention_frames must be >= 1, got {num_attention_frames}"
            )
        if not video_fps or video_fps <= 0:
            raise ValueError(f"EvaluationMedia.video_fps must be > 0, got {video_fps}")
        if max_video_frames < 1 or frame_size < 2:
            raise ValueError("EvaluationMedia: max_video_frames must be >= 1, frame_size >= 2")
        self.every_n_epochs = int(every_n_epochs)
        self.num_videos = int(num_videos)
        self.num_attention_frames = int(num_attention_frames)
        self.video_fps = float(video_fps)
        self.max_video_frames = int(max_video_frames)
        self.frame_size = int(frame_size)
        self.set_name = set_name
        self.media = list(MEDIA if media is None else media)
        unknown = sorted(set(self.media) - set(MEDIA))
        if unknown:
            raise ValueError(f"EvaluationMedia.media: unknown {unknown}; valid: {list(MEDIA)}")
        self.strict = bool(strict)
        self._noted: set[tuple[str, ...]] = set()
        self.logged: list[tuple[str, int]] = []
        """``(stage, epoch)`` of every logging round (rank 0), for inspection and tests."""

    # ------------------------------------------------------------------ hooks
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # on_validation_end, not on_validation_epoch_end: every callback's epoch-end hook
        # (AlignmentEvaluation's metrics included) has run by now, whatever the order.
        if trainer.sanity_checking:
            return
        fitting = trainer.state.fn == "fit"
        if fitting and (trainer.current_epoch + 1) % self.every_n_epochs != 0:
            return
        self.log_media(trainer, pl_module, "val")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.log_media(trainer, pl_module, "test")

    # ------------------------------------------------------------------ messages
    def _note(self, *key: str, message: str) -> None:
        """Info message, once per key."""
        if key not in self._noted:
            self._noted.add(key)
            log.info("EvaluationMedia: %s", message)

    def _failed(self, what: str, error: Exception) -> None:
        if self.strict:
            raise error
        if ("error", what) not in self._noted:
            self._noted.add(("error", what))
            warnings.warn(
                f"EvaluationMedia: {what} failed and is skipped: {type(error).__name__}: {error}",
                RuntimeWarning,
                stacklevel=2,
            )

    def _guard(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - media must never stop training
            self._failed(what, e)
            return None

    # ------------------------------------------------------------------ main
    def log_media(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Render and log everything for ``stage`` (``"val"`` / ``"test"``); rank 0 only."""
        if not trainer.is_global_zero:
            return
        loggers = [lg for lg in trainer.loggers if lg is not None]
        if not loggers:
            return
        step, epoch = int(trainer.global_step), int(trainer.current_epoch)
        self.logged.append((stage, epoch))
        if "table" in self.media:
            table = self._table(trainer, stage)
            if table is not None:
                for lg in loggers:
                    self._guard(
                        "metrics table",
                        lambda lg=lg: self._log_table(lg, stage, epoch, step, *table),
                    )
        if not set(self.media) & {"similarity", "attention", "alignment"}:
            return
        videos = self._guard(
            "embedding the media videos", lambda: self._prepare_videos(trainer, pl_module)
        )
        if not videos:
            return
        images: dict[str, list[tuple[np.ndarray, str]]] = {}
        if "similarity" in self.media:
            sims = self._guard("similarity images", lambda: self._similarity(videos))
            if sims:
                images[f"{stage}/media/similarity"] = sims
        if "attention" in self.media:
            att = self._guard("attention image", lambda: self._attention(pl_module, videos[0]))
            if att is not None:
                images[f"{stage}/media/attention"] = [att]
        video = None
        if "alignment" in self.media:
            video = self._guard("alignment video", lambda: self._alignment(videos))
        folder = f"{stage}_epoch{epoch}"
        for lg in loggers:
            for key, imgs in images.items():
                self._guard(
                    key,
                    lambda lg=lg, key=key, imgs=imgs: self._log_images(lg, key, imgs, step, folder),
                )
            if video is not None:
                key = f"{stage}/media/alignment"
                self._guard(
                    key, lambda lg=lg, key=key: self._log_video(lg, key, *video, step, folder)
                )

    # ------------------------------------------------------------------ table
    def _table(self, trainer: pl.Trainer, stage: str) -> tuple[list[str], list[list]] | None:
        evals = [cb for cb in trainer.callbacks if isinstance(cb, AlignmentEvaluation)]
        if not evals:
            self._note(
                "table", "no-callback", message="no AlignmentEvaluation callback: no metrics table"
            )
            return None
        results = evals[0].results if evals[0].last_stage == stage else {}
        if not results:
            return None
        names = list(dict.fromkeys(k for r in results.values() for k in r))
        rows = [[s, *(float(r[n]) if n in r else None for n in names)] for s, r in results.items()]
        return ["set", *names], rows

    def _log_table(
        self,
        logger: Logger,
        stage: str,
        epoch: int,
        step: int,
        columns: list[str],
        rows: list[list],
    ) -> None:
        key = f"{stage}/metrics_table"
        kind = _logger_kind(logger)
        if kind == "wandb":
            logger.log_table(key=key, columns=columns, data=rows, step=step)
        elif kind == "tensorboard":
            lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            for row in rows:
                cells = [row[0], *("-" if v is None else _format_value(v) for v in row[1:])]
                lines.append("| " + " | ".join(cells) + " |")
            logger.experiment.add_text(key, "\n".join(lines), global_step=step)
        elif kind == "csv":
            path = Path(logger.log_dir) / f"metrics_table_{stage}_epoch{epoch}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(columns)
                writer.writerows(
                    [[row[0], *("" if v is None else v for v in row[1:])] for row in rows]
                )
        else:
            self._skip(logger, "table")

    def _skip(self, logger: Logger, medium: str) -> None:
        name = type(logger).__name__
        self._note(name, medium, message=f"{name} cannot take the {medium}: skipped")

    # ------------------------------------------------------------------ videos
    def _choose(self, trainer: pl.Trainer) -> list[tuple[str, Any, int]]:
        dm = trainer.datamodule
        dataset = getattr(dm, "eval_dataset", None) if dm is not None else None
        if dataset is None:
            self._note(
                "videos",
                "no-dataset",
                message="the DataModule has no eval_dataset: no similarity, attention or "
                "alignment media",
            )
            return []
        parts = getattr(dataset, "datasets", [dataset])
        by_set: dict[str, list[tuple[str, Any, int]]] = {}
        for part in parts:
            if getattr(part, "split", "val") != "val":
                continue
            for i in range(len(part)):
                name = getattr(part, "set_name", None)
                if name is None and hasattr(part, "record"):
                    name = part.record(i).group
                by_set.setdefault(str(name), []).append((str(name), part, i))
        if not by_set:
            self._note("videos", "no-val", message="no val videos in the evaluation dataset")
            return []
        if self.set_name is not None:
            if self.set_name not in by_set:
                self._note(
                    "videos",
                    "set",
                    message=f"set_name={self.set_name!r} has no val "
                    f"videos (sets: {sorted(by_set)}); using the default choice",
                )
            else:
                return by_set[self.set_name][: self.num_videos]
        multi = [v for v in by_set.values() if len(v) >= 2]
        chosen = multi[0] if multi and self.num_videos >= 2 else next(iter(by_set.values()))
        return chosen[: self.num_videos]

    def _prepare_videos(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[_Video]:
        embed = getattr(pl_module, "embed_video", None)
        if embed is None:
            self._note(
                "videos",
                "embed",
                message=f"{type(pl_module).__name__} has no "
                "embed_video(): no similarity, attention or alignment media",
            )
            return []
        chosen = self._choose(trainer)
        if not chosen:
            return []
        transform = getattr(trainer.datamodule, "eval_transform", None)
        plugin = getattr(trainer, "precision_plugin", None)
        want_attention = "attention" in self.media
        was_training = pl_module.training
        pl_module.eval()
        videos = []
        try:
            for k, (set_name, part, i) in enumerate(chosen):
                item = part[i]
                video = _Video(set_name, str(item.get("video_id", i)), item["frames"])
                x = video.frames.to(pl_module.device)
                x = transform(x) if transform is not None else x.float() / 255.0
                if k == 0 and want_attention:
                    video.seen = self._denormalise(x, transform)
                if plugin is not None:
                    x = plugin.convert_input(x)
                ctx = plugin.forward_context() if plugin is not None else nullcontext()
                with torch.no_grad(), ctx:
                    out = embed(x, return_attention=k == 0 and want_attention)
                video.embeddings = out["embeddings"].float().cpu().numpy()
                if out.get("attention") is not None:
                    video.attention = out["attention"].float().cpu().numpy()
                videos.append(video)
        finally:
            pl_module.train(was_training)
        return videos

    @staticmethod
    def _denormalise(x: torch.Tensor, transform: Any) -> np.ndarray:
        """Model-input frames ``[N, 3, S, S]`` back to uint8 ``[N, S, S, 3]``."""
        x = x.detach().float()
        mean, std = getattr(transform, "mean", None), getattr(transform, "std", None)
        if isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor):
            x = x * std.to(x.device).view(1, 3, 1, 1) + mean.to(x.device).view(1, 3, 1, 1)
        else:  # unknown normalisation: stretch to [0, 1]
            x = (x - x.amin()) / (x.amax() - x.amin()).clamp_min(1e-12)
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        return x.permute(0, 2, 3, 1).cpu().numpy()

    # ------------------------------------------------------------------ rendering
    def _similarity(self, videos: Sequence[_Video]) -> list[tuple[np.ndarray, str]]:
        pairs = [(i, i + 1) for i in range(len(videos) - 1)] or [(0, 0)]
        out = []
        for i, j in pairs:
            a, b = videos[i], videos[j]
            img = similarity_matrix_image(a.embeddings, b.embeddings)
            out.append((img, f"{a.video_id} (rows) vs {b.video_id} (columns)"))
        return out

    def _attention(
        self, pl_module: pl.LightningModule, video: _Video
    ) -> tuple[np.ndarray, str] | None:
        if video.attention is None or video.seen is None:
            self._note(
                "attention",
                "none",
                message="the model returns no LSTP attention "
                "(late-fusion embedder?): no attention maps",
            )
            return None
        att = video.attention  # [N, K, S]
        n, k, s = att.shape
        h, w = video.seen.shape[1:3]
        backbone = getattr(getattr(pl_module, "model", None), "backbone", None)
        grid = backbone.feature_grid(h, w) if hasattr(backbone, "feature_grid") else None
        if grid is not None and int(grid[0]) * int(grid[1]) == s:
            att = att.reshape(n, k, int(grid[0]), int(grid[1]))
        elif int(round(s**0.5)) ** 2 != s:
            self._note(
                "attention",
                "grid",
                message=f"cannot lay {s} attention tokens out on "
                f"the feature grid {grid}: no attention maps",
            )
            return None
        idx = _evenly(n, self.num_attention_frames)
        panels = attention_overlay(video.seen[idx], att[idx])  # [n, H, W*(K+1), 3]
        image = panels.reshape(-1, *panels.shape[2:])  # frames stacked vertically
        frames = ", ".join(str(int(i)) for i in idx)
        return image, (
            f"{video.video_id}: frames {frames}; each row: frame, then one map per "
            f"entity token ({k})"
        )

    def _alignment(self, videos: Sequence[_Video]) -> tuple[np.ndarray, str]:
        query = videos[0]
        cand = videos[1] if len(videos) > 1 else videos[0]
        idx = _evenly(len(query.frames), self.max_video_frames)
        qf = _to_hwc(query.frames[torch.from_numpy(idx)], self.frame_size)
        cf = _to_hwc(cand.frames, self.frame_size)
        video = alignment_video(qf, cf, query.embeddings[idx], cand.embeddings)
        return video, f"{query.video_id} (left) aligned to {cand.video_id} (right)"

    # ------------------------------------------------------------------ logging media
    def _log_images(
        self, logger: Logger, key: str, images: list[tuple[np.ndarray, str]], step: int, folder: str
    ) -> None:
        kind = _logger_kind(logger)
        if kind == "wandb":
            logger.log_image(
                key=key,
                images=[img for img, _ in images],
                step=step,
                caption=[c for _, c in images],
            )
        elif kind == "tensorboard":
            for i, (img, _) in enumerate(images):
                tag = key if len(images) == 1 else f"{key}/{i}"
                logger.experiment.add_image(tag, img, global_step=step, dataformats="HWC")
        elif kind == "csv":
            if importlib.util.find_spec("PIL") is None:
                self._skip(logger, "images (PIL is not installed)")
                return
            from PIL import Image

            out = Path(logger.log_dir) / "media" / folder
            out.mkdir(parents=True, exist_ok=True)
            name = key.rsplit("/", 1)[-1]
            for i, (img, _) in enumerate(images):
                suffix = "" if len(images) == 1 else f"_{i}"
                Image.fromarray(img).save(out / f"{name}{suffix}.png")
        else:
            self._skip(logger, "images")

    def _log_video(
        self, logger: Logger, key: str, video: np.ndarray, caption: str, step: int, folder: str
    ) -> None:
        kind = _logger_kind(logger)
        tchw = np.ascontiguousarray(video.transpose(0, 3, 1, 2))
        if kind == "wandb":
            import wandb

            clip = wandb.Video(tchw, fps=self.video_fps, format="mp4", caption=caption)
            logger.log_metrics({key: clip}, step=step)
        elif kind == "tensorboard":
            self._tensorboard_video(logger, key, video, tchw, step)
        elif kind == "csv":
            from mvf_lightning.data.video_writer import write_video

            out = Path(logger.log_dir) / "media" / folder / f"{key.rsplit('/', 1)[-1]}.mp4"
            write_video(out, video, self.video_fps, codec="mpeg4")
        else:
            self._skip(logger, "video")

    def _tensorboard_video(
        self, logger: Logger, key: str, video: np.ndarray, tchw: np.ndarray, step: int
    ) -> None:
        writer = logger.experiment
        if importlib.util.find_spec("moviepy") is not None and _has_moviepy_editor():
            writer.add_video(
                key, torch.from_numpy(tchw)[None], global_step=step, fps=self.video_fps
            )
            return
        # torch's add_video needs moviepy.editor (gone in moviepy 2): write the animated GIF
        # it would have written, with PIL, as an image summary.
        get_writer = getattr(writer, "_get_file_writer", None)
        if get_writer is None or importlib.util.find_spec("PIL") is None:
            self._skip(logger, "video (no moviepy.editor)")
            return
        from PIL import Image
        from tensorboard.compat.proto.summary_pb2 import Summary

        buf = io.BytesIO()
        frames = [Image.fromarray(f) for f in video]
        frames[0].save(
            buf,
            format="GIF",
            save_all=True,
            append_images=frames[1:],
            duration=int(round(1000 / self.video_fps)),
            loop=0,
        )
        h, w = video.shape[1:3]
        image = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=buf.getvalue())
        get_writer().add_summary(Summary(value=[Summary.Value(tag=key, image=image)]), step)


def _has_moviepy_editor() -> bool:
    try:
        return importlib.util.find_spec("moviepy.editor") is not None
    except (ImportError, ValueError):
        return False

"""Where evaluation media go: one small sink per logger, all with the same three methods.

=============  =======================  ===================  ==============================
sink           ``table``                ``images``           ``video`` (H.264 mp4)
=============  =======================  ===================  ==============================
W&B            ``wandb.Table``, one     ``log_image`` with   ``log_video`` of the mp4 file
               thumbnail per set        captions
TensorBoard    markdown text            ``add_image``        mp4 under ``<log_dir>/media/``
                                                             + a strip of frames as image
files (CSV)    ``metrics_table_<stage>  PNG under            mp4 under ``<log_dir>/media/
               _epoch<E>.csv``          ``<log_dir>/media/`` <stage>_epoch<E>/``
=============  =======================  ===================  ==============================

Only the loggers' public APIs are used. ``sinks_for`` picks the sink of each logger; other
loggers get none (the callback says so once).
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FilesSink", "MediaSink", "TensorBoardSink", "WandbSink", "sink_for"]

Rows = list[list[Any]]


def _write_mp4(path: Path, frames: np.ndarray, fps: float) -> Path:
    from ..data.video_writer import write_video

    return write_video(path, frames, fps, codec="libx264")


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


class MediaSink:
    """What every sink offers. ``key`` is ``<stage>/...``; ``folder`` names the evaluation
    (``<stage>_epoch<E>``) for sinks that write files."""

    def table(self, key: str, columns: list[str], rows: Rows, step: int, folder: str,
              thumbnails: dict[str, np.ndarray] | None = None) -> None:
        raise NotImplementedError

    def images(self, key: str, images: list[tuple[np.ndarray, str]], step: int,
               folder: str) -> None:
        raise NotImplementedError

    def video(self, key: str, frames: np.ndarray, fps: float, caption: str, step: int,
              folder: str) -> None:
        raise NotImplementedError


class WandbSink(MediaSink):
    """W&B: a table with a similarity thumbnail per set, captioned images, an mp4."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def table(self, key, columns, rows, step, folder, thumbnails=None):
        import wandb

        data = [list(r) for r in rows]
        if thumbnails:
            columns = [*columns, "similarity"]
            data = [[*r, wandb.Image(thumbnails[r[0]]) if r[0] in thumbnails else None]
                    for r in data]
        self.logger.log_table(key=key, columns=columns, data=data, step=step)

    def images(self, key, images, step, folder):
        self.logger.log_image(key=key, images=[i for i, _ in images], step=step,
                              caption=[c for _, c in images])

    def video(self, key, frames, fps, caption, step, folder):
        with tempfile.TemporaryDirectory() as tmp:
            path = _write_mp4(Path(tmp) / f"{key.rsplit('/', 1)[-1]}.mp4", frames, fps)
            self.logger.log_video(key=key, videos=[str(path)], step=step, caption=[caption],
                                  format=["mp4"])


class FilesSink(MediaSink):
    """Files in the logger's ``log_dir``: CSV tables, PNG images, mp4 videos."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    @property
    def root(self) -> Path:
        return Path(self.logger.log_dir)

    def table(self, key, columns, rows, step, folder, thumbnails=None):
        stage = key.split("/", 1)[0]
        epoch = folder.rsplit("epoch", 1)[-1]
        path = self.root / f"metrics_table_{stage}_epoch{epoch}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows([[r[0], *("" if v is None else v for v in r[1:])] for r in rows])

    def images(self, key, images, step, folder):
        name = key.rsplit("/", 1)[-1]
        for i, (img, _) in enumerate(images):
            suffix = "" if len(images) == 1 else f"_{i}"
            _write_png(self.root / "media" / folder / f"{name}{suffix}.png", img)

    def video(self, key, frames, fps, caption, step, folder):
        _write_mp4(self.root / "media" / folder / f"{key.rsplit('/', 1)[-1]}.mp4", frames, fps)


class TensorBoardSink(FilesSink):
    """TensorBoard: markdown tables and images in the event file. Its video summary needs
    ``moviepy.editor`` (gone in moviepy 2), so the video is an mp4 beside the event files
    and a strip of evenly spaced frames is logged as an image under the video's key."""

    def table(self, key, columns, rows, step, folder, thumbnails=None):
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for r in rows:
            cells = [str(r[0]), *("-" if v is None else f"{v:.4f}" for v in r[1:])]
            lines.append("| " + " | ".join(cells) + " |")
        self.logger.experiment.add_text(key, "\n".join(lines), global_step=step)

    def images(self, key, images, step, folder):
        for i, (img, _) in enumerate(images):
            tag = key if len(images) == 1 else f"{key}/{i}"
            self.logger.experiment.add_image(tag, img, global_step=step, dataformats="HWC")

    def video(self, key, frames, fps, caption, step, folder):
        super().video(key, frames, fps, caption, step, folder)
        pick = np.unique(np.linspace(0, len(frames) - 1, min(4, len(frames))).round().astype(int))
        strip = np.concatenate(list(frames[pick]), axis=1)
        self.logger.experiment.add_image(key, strip, global_step=step, dataformats="HWC")


def sink_for(logger: Any) -> MediaSink | None:
    """The sink of a Lightning logger (None for a logger kind without one)."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

    if isinstance(logger, WandbLogger):
        return WandbSink(logger)
    if isinstance(logger, TensorBoardLogger):
        return TensorBoardSink(logger)
    if isinstance(logger, CSVLogger):
        return FilesSink(logger)
    return None

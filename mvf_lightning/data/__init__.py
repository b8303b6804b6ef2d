"""Data: index format, decoding, frame sampling, augmentation, datasets and DataModules.

Names are imported lazily so that ``import mvf_lightning.data.index`` (used by ``prepare``)
does not pull in torch, Kornia or Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "VideoIndex": "index",
    "VideoRecord": "index",
    "load_split": "index",
    "VideoDecodeError": "decode",
    "VideoFile": "decode",
    "VideoInfo": "decode",
    "probe_video": "decode",
    "read_frames": "decode",
    "write_video": "video_writer",
    "StrideSampler": "sampling",
    "TimeAugmentSampler": "sampling",
    "ViewSample": "sampling",
    "EvalTransform": "augment",
    "TrainAugmentation": "augment",
    "TrainAugmentationConfig": "augment",
    "TooManyBrokenVideosError": "datasets",
    "BrokenVideoTracker": "datasets",
    "EpochSeededSampler": "datasets",
    "EvalVideoDataset": "datasets",
    "TrainClipDataset": "datasets",
    "ensure_demo_dataset": "demo",
    "DemoDataModule": "dataset_datamodules",
    "EvalSet": "datamodules",
    "FineGymDataModule": "dataset_datamodules",
    "Kinetics400DataModule": "dataset_datamodules",
    "PennActionDataModule": "dataset_datamodules",
    "PouringDataModule": "dataset_datamodules",
    "VideoDataModule": "datamodules",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

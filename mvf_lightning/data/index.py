"""The project's own dataset index: one JSON file per dataset split, no pickle.

Layout: ``<root>/index/<split>.json`` (see ``docs/architecture.md``). Each video
has an id, a path relative to the dataset root, a frame count, fps, a group
(action or event) and optional per-frame labels stored run-length encoded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, ExistingFileError, MissingFileError
from ..utils.atomic import atomic_path

INDEX_FORMAT = "mvf_lightning.video_index"
INDEX_VERSION = 1
INDEX_DIRNAME = "index"


class DatasetIndexError(DataError):
    """An index file is malformed; the message names the file and the problem."""


def encode_label_runs(labels: Sequence[int] | np.ndarray) -> list[list[int]]:
    """Run-length encode per-frame integer labels as ``[[label, length], ...]``."""
    arr = np.asarray(labels, dtype=np.int64).reshape(-1)
    if arr.size == 0:
        return []
    change = np.flatnonzero(np.diff(arr)) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [arr.size]]))
    return [[int(arr[s]), int(n)] for s, n in zip(starts, lengths)]


def decode_label_runs(runs: Iterable[Sequence[int]]) -> np.ndarray:
    """Inverse of :func:`encode_label_runs`: an int64 array of per-frame labels."""
    runs = list(runs)
    if not runs:
        return np.zeros(0, dtype=np.int64)
    values = np.asarray([r[0] for r in runs], dtype=np.int64)
    lengths = np.asarray([r[1] for r in runs], dtype=np.int64)
    return np.repeat(values, lengths)


def resample_labels(labels: np.ndarray, length: int) -> np.ndarray:
    """Resample labels to ``length`` entries the way CARL does: index ``floor(j * n / length)``."""
    labels = np.asarray(labels)
    n = labels.shape[0]
    if n == length:
        return labels
    if n == 0 or length == 0:
        raise ValueError(f"cannot resample {n} labels to {length} frames")
    idx = (np.arange(length, dtype=np.int64) * n) // length
    return labels[idx]


@dataclass
class VideoRecord:
    """One video of an index. ``path`` is relative to the dataset root."""

    id: str
    path: str
    num_frames: int
    fps: float = 0.0
    group: str = ""
    label_runs: list[list[int]] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray | None:
        """Per-frame int64 labels (``-1`` = unlabelled), or None for unlabelled videos."""
        if self.label_runs is None:
            return None
        return decode_label_runs(self.label_runs)

    def to_json(self) -> dict:
        out = {
            "id": self.id,
            "path": self.path,
            "num_frames": int(self.num_frames),
            "fps": float(self.fps),
            "group": self.group,
        }
        if self.label_runs is not None:
            out["label_runs"] = self.label_runs
        if self.extra:
            out["extra"] = self.extra
        return out

    @classmethod
    def from_labels(
        cls,
        id: str,
        path: str,
        labels: Sequence[int] | np.ndarray | None,
        num_frames: int | None = None,
        fps: float = 0.0,
        group: str = "",
        extra: dict | None = None,
    ) -> VideoRecord:
        runs = None if labels is None else encode_label_runs(labels)
        if num_frames is None:
            if labels is None:
                raise ValueError(f"video {id!r}: num_frames is needed when there are no labels")
            num_frames = len(labels)
        return cls(id, path, int(num_frames), float(fps), group, runs, dict(extra or {}))


_REQUIRED = {"id": str, "path": str, "num_frames": int}


def _record_from_json(item: object, where: str) -> VideoRecord:
    if not isinstance(item, dict):
        raise DatasetIndexError(f"{where}: expected an object, got {type(item).__name__}")
    for key, typ in _REQUIRED.items():
        if key not in item:
            raise DatasetIndexError(f"{where}: missing key {key!r}")
        if not isinstance(item[key], typ) or isinstance(item[key], bool):
            raise DatasetIndexError(
                f"{where}: key {key!r} must be {typ.__name__}, got {item[key]!r}"
            )
    if item["num_frames"] < 0:
        raise DatasetIndexError(f"{where}: num_frames must be >= 0, got {item['num_frames']}")
    runs = item.get("label_runs")
    if runs is not None:
        if not isinstance(runs, list) or not all(
            isinstance(r, list) and len(r) == 2 and all(isinstance(v, int) for v in r) for r in runs
        ):
            raise DatasetIndexError(f"{where}: label_runs must be a list of [label, length] pairs")
        total = sum(r[1] for r in runs)
        if total != item["num_frames"]:
            raise DatasetIndexError(
                f"{where}: label_runs cover {total} frames but num_frames is {item['num_frames']}"
            )
    return VideoRecord(
        id=item["id"],
        path=item["path"],
        num_frames=item["num_frames"],
        fps=float(item.get("fps", 0.0)),
        group=str(item.get("group", "")),
        label_runs=runs,
        extra=dict(item.get("extra", {})),
    )


@dataclass
class VideoIndex:
    """All videos of one dataset split, plus where the dataset root is."""

    dataset: str
    split: str
    videos: list[VideoRecord]
    root: Path | None = None

    def __len__(self) -> int:
        return len(self.videos)

    def __iter__(self):
        return iter(self.videos)

    def __getitem__(self, i: int) -> VideoRecord:
        return self.videos[i]

    @property
    def groups(self) -> list[str]:
        """Distinct groups in first-seen order."""
        return list(dict.fromkeys(v.group for v in self.videos))

    def by_group(self, group: str) -> VideoIndex:
        return VideoIndex(
            self.dataset, self.split, [v for v in self.videos if v.group == group], self.root
        )

    def video_path(self, video: VideoRecord) -> Path:
        if self.root is None:
            return Path(video.path)
        return self.root / video.path

    def to_json(self) -> dict:
        return {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "dataset": self.dataset,
            "split": self.split,
            "videos": [v.to_json() for v in self.videos],
        }

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write atomically; refuse to replace an existing index unless ``overwrite``."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise ExistingFileError(
                f"index {path} already exists; pass --overwrite (overwrite=True) to replace it"
            )
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), separators=(",", ":")))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, root: str | os.PathLike | None = None) -> VideoIndex:
        """Read and validate an index file. ``root`` defaults to the folder above ``index/``."""
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"dataset index not found: {path}")
        try:
            with open(path) as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise DatasetIndexError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
            raise DatasetIndexError(
                f"{path}: not an mvf_lightning index (expected \"format\": \"{INDEX_FORMAT}\")"
            )
        if data.get("version") != INDEX_VERSION:
            raise DatasetIndexError(
                f"{path}: index version {data.get('version')!r}, this code reads {INDEX_VERSION}"
            )
        videos_json = data.get("videos")
        if not isinstance(videos_json, list):
            raise DatasetIndexError(f"{path}: key 'videos' must be a list")
        videos = [_record_from_json(v, f"{path}: videos[{i}]") for i, v in enumerate(videos_json)]
        ids = [v.id for v in videos]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise DatasetIndexError(f"{path}: duplicate video id {dup!r}")
        if root is None:
            root = path.parent.parent if path.parent.name == INDEX_DIRNAME else path.parent
        return cls(
            dataset=str(data.get("dataset", "")),
            split=str(data.get("split", path.stem)),
            videos=videos,
            root=Path(root),
        )


def index_path(root: str | os.PathLike, split: str) -> Path:
    """Where the index of ``split`` lives under a dataset root."""
    return Path(root) / INDEX_DIRNAME / f"{split}.json"


def require_dataset_root(root: str | os.PathLike, prepare_hint: str | None = None) -> None:
    """Fail with one line (and how to create it) unless ``root`` holds an ``index/`` folder:
    a cheap check that can run before anything slow (weights, decoding)."""
    root = Path(root)
    hint = f"; create it with: {prepare_hint}" if prepare_hint else ""
    if not root.is_dir():
        raise MissingFileError(f"dataset root {root} does not exist{hint}")
    if not (root / INDEX_DIRNAME).is_dir():
        raise MissingFileError(f"dataset root {root} holds no {INDEX_DIRNAME}/ folder{hint}")


def load_split(root: str | os.PathLike, split: str, prepare_hint: str | None = None) -> VideoIndex:
    """Load ``<root>/index/<split>.json`` with an error that says how to create it."""
    root = Path(root)
    path = index_path(root, split)
    hint = f"; create it with: {prepare_hint}" if prepare_hint else ""
    require_dataset_root(root, prepare_hint)
    if not path.is_file():
        raise MissingFileError(f"dataset index {path} not found{hint}")
    return VideoIndex.load(path, root=root)

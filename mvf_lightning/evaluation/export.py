"""A safe on-disk format for per-video frame embeddings (no pickle), read by ``evaluate``.

Layout of an export directory::

    index.json                 format name + version, embedding dim, one entry per video
    <stem>.npy                 float32 [N, E] embeddings of one video
    <stem>.labels.npy          int64 [N] per-frame labels (-1 = unknown), if known
    <stem>.frames.npy          int64 [N] source frame indices, if given

``index.json``::

    {"format": "mvf_lightning.embeddings", "version": 1, "embedding_dim": 128,
     "videos": [{"id": "0001", "set_name": "baseball_pitch", "split": "val",
                 "group": "baseball_pitch", "file": "0001.npy", "num_frames": 151,
                 "has_labels": true, "labels_file": "0001.labels.npy",
                 "frame_indices_file": null}],
     "dataset": "penn",
     "protocol": {"stride": 2, "probe": "logreg", "fractions": [1.0], ...},
     "broken_videos": [{"set_name": "golf", "split": "val", "video_id": "0042",
                        "error": "..."}]}

``dataset``, ``protocol`` (:meth:`EvalProtocol.to_json`: how training evaluated these
videos, so ``evaluate`` scores the export the same way without flags) and
``broken_videos`` (videos that failed to decode and were not exported) are optional.

``set_name`` is the unit metrics are computed over (Penn Action: the action;
FineGym: the dataset). File stems come from the video id (characters outside
``[A-Za-z0-9_-]`` replaced, de-duplicated); readers must use the names in the index.
A whole export is written into a temporary sibling directory and renamed into place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError, ExistingFileError
from ..utils.npy import load_npy
from .protocol import EvalProtocol, VideoEmbedding

EXPORT_FORMAT = "mvf_lightning.embeddings"
EXPORT_VERSION = 1
INDEX_NAME = "index.json"
SPLITS = ("train", "val")

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "EmbeddingExportError",
    "VideoEmbedding",
    "read_embeddings",
    "read_export_info",
    "write_embeddings",
]


class EmbeddingExportError(DataError):
    """An embedding export is malformed; the message names the file and the problem."""


def _to_numpy(x: object) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _safe_stem(video_id: str, used: set[str]) -> str:
    # No dots: a stem can never look like another video's "<stem>.labels".
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", video_id) or "video"
    stem = stem[:100]
    candidate, n = stem, 1
    while candidate.lower() in used:
        n += 1
        candidate = f"{stem}__{n}"
    used.add(candidate.lower())
    return candidate


def _check_record(i: int, rec: VideoEmbedding) -> tuple[np.ndarray, np.ndarray | None,
                                                           np.ndarray | None]:
    """Validated float32 embeddings, int64 labels and frame indices of record ``i``."""
    where = f"record {i} (id {rec.video_id!r})"
    if rec.broken:
        raise ValueError(f"{where}: broken video ({rec.error}); pass it as broken=, not a record")
    for name in ("video_id", "set_name", "split", "group"):
        if not isinstance(getattr(rec, name), str):
            raise ValueError(f"{where}: {name} must be a string")
    if not rec.video_id or not rec.set_name:
        raise ValueError(f"{where}: video_id and set_name must be non-empty")
    if rec.split not in SPLITS:
        raise ValueError(f"{where}: split must be one of {SPLITS}, got {rec.split!r}")
    emb = _to_numpy(rec.embeddings)
    if emb.ndim != 2:
        raise ValueError(f"{where}: embeddings must be 2-D [frames, dim], got {emb.shape}")
    if not np.issubdtype(emb.dtype, np.floating):
        raise ValueError(f"{where}: embeddings must be floating point, got {emb.dtype}")
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    if not np.all(np.isfinite(emb)):
        raise ValueError(f"{where}: embeddings contain NaN or infinity")
    extras = []
    for name in ("labels", "frame_indices"):
        value = getattr(rec, name)
        if value is None:
            extras.append(None)
            continue
        arr = _to_numpy(value)
        if arr.ndim != 1 or arr.shape[0] != emb.shape[0]:
            raise ValueError(
                f"{where}: {name} must be 1-D with {emb.shape[0]} entries (one per "
                f"embedded frame), got shape {arr.shape}"
            )
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{where}: {name} must be integers, got {arr.dtype}")
        extras.append(np.ascontiguousarray(arr, dtype=np.int64))
    return emb, extras[0], extras[1]


def is_export(path: Path) -> bool:
    """Whether ``path`` holds an embedding export (its index.json names the format)."""
    try:
        with open(path / INDEX_NAME, encoding="utf-8") as f:
            return json.load(f).get("format") == EXPORT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def write_embeddings(
    out_dir: str | os.PathLike,
    records: Iterable[VideoEmbedding],
    overwrite: bool = False,
    *,
    protocol: EvalProtocol | None = None,
    dataset: str | None = None,
    broken: Iterable[VideoEmbedding] = (),
) -> Path:
    """Write ``records`` as an export at ``out_dir``, atomically; returns the directory.

    ``protocol`` and ``dataset`` record how the videos are to be scored; ``broken`` lists
    videos that failed to decode (their ``error``), which are not exported.

    Refuses an existing non-empty ``out_dir`` unless ``overwrite`` is set, and even then
    replaces only a directory that is itself an embedding export (never arbitrary data).
    """
    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise ExistingFileError(f"{out} exists and is not a directory")
        if any(out.iterdir()):
            if not overwrite:
                raise ExistingFileError(
                    f"{out} already exists and is not empty; pass overwrite=True to replace "
                    "an earlier export"
                )
            if not is_export(out):
                raise ExistingFileError(
                    f"{out} is not an embedding export (no {INDEX_NAME} of format "
                    f"{EXPORT_FORMAT!r}); refusing to replace it"
                )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        videos = []
        used: set[str] = set()
        seen: set[tuple[str, str, str]] = set()
        dim = None
        for i, rec in enumerate(records):
            emb, labels, frames = _check_record(i, rec)
            key = (rec.set_name, rec.split, rec.video_id)
            if key in seen:
                raise ValueError(f"record {i}: duplicate video {key}")
            seen.add(key)
            if dim is None:
                dim = int(emb.shape[1])
            elif emb.shape[1] != dim:
                raise ValueError(
                    f"record {i} (id {rec.video_id!r}): embedding dim {emb.shape[1]}, "
                    f"expected {dim} as in record 0"
                )
            stem = _safe_stem(rec.video_id, used)
            entry = {
                "id": rec.video_id,
                "set_name": rec.set_name,
                "split": rec.split,
                "group": rec.group,
                "file": f"{stem}.npy",
                "num_frames": int(emb.shape[0]),
                "has_labels": labels is not None,
                "labels_file": None,
                "frame_indices_file": None,
            }
            np.save(tmp / entry["file"], emb, allow_pickle=False)
            if labels is not None:
                entry["labels_file"] = f"{stem}.labels.npy"
                np.save(tmp / entry["labels_file"], labels, allow_pickle=False)
            if frames is not None:
                entry["frame_indices_file"] = f"{stem}.frames.npy"
                np.save(tmp / entry["frame_indices_file"], frames, allow_pickle=False)
            videos.append(entry)
        if not videos:
            raise ValueError("no records to write")
        index = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "embedding_dim": dim,
            "videos": videos,
        }
        if dataset is not None:
            index["dataset"] = str(dataset)
        if protocol is not None:
            index["protocol"] = protocol.to_json()
        index["broken_videos"] = [
            {"set_name": b.set_name, "split": b.split, "video_id": b.video_id,
             "error": str(b.error)}
            for b in broken
        ]
        with open(tmp / INDEX_NAME, "w", encoding="utf-8") as f:
            json.dump(index, f, indent=1)
            f.write("\n")
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, trash / "old")
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _member(root: Path, name: object, index_path: Path, where: str) -> Path:
    """A file named by the index: a plain name inside the export, existing."""
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise EmbeddingExportError(f"{index_path}: {where}: invalid file name {name!r}")
    path = root / name
    if not path.is_file():
        raise EmbeddingExportError(f"{index_path}: {where}: missing file {path}")
    return path


def _load(path: Path) -> np.ndarray:
    try:
        return load_npy(path, "embedding array")
    except (OSError, ValueError) as e:
        detail = str(e).removeprefix(f"{path}: ")
        raise EmbeddingExportError(f"{path}: cannot read as a .npy array: {detail}") from e


def _read_index(root: Path) -> tuple[Path, dict[str, Any]]:
    """The parsed ``index.json`` of an export, format and version checked."""
    index_path = root / INDEX_NAME
    if not index_path.is_file():
        raise EmbeddingExportError(f"{index_path}: not found (is {root} an embedding export?)")
    try:
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        raise EmbeddingExportError(f"{index_path}: cannot parse JSON: {e}") from e
    if not isinstance(index, dict) or index.get("format") != EXPORT_FORMAT:
        raise EmbeddingExportError(f"{index_path}: format is not {EXPORT_FORMAT!r}")
    if index.get("version") != EXPORT_VERSION:
        raise EmbeddingExportError(
            f"{index_path}: unsupported version {index.get('version')!r} "
            f"(this reader knows {EXPORT_VERSION})"
        )
    return index_path, index


def read_export_info(export_dir: str | os.PathLike) -> dict[str, Any]:
    """What an export records besides its videos: ``dataset`` (str or None), ``protocol``
    (:class:`EvalProtocol` or None for exports made before it was recorded) and
    ``broken_videos`` (list of :class:`VideoEmbedding` with ``error`` set)."""
    index_path, index = _read_index(Path(export_dir))
    protocol = index.get("protocol")
    if protocol is not None:
        try:
            protocol = EvalProtocol.from_json(protocol, where=f"{index_path}: protocol")
        except ValueError as e:
            raise EmbeddingExportError(str(e)) from e
    broken = []
    for i, b in enumerate(index.get("broken_videos") or []):
        try:
            broken.append(VideoEmbedding(video_id=str(b["video_id"]), set_name=str(b["set_name"]),
                                         split=str(b["split"]), embeddings=None,
                                         error=str(b.get("error", ""))))
        except (KeyError, TypeError) as e:
            raise EmbeddingExportError(f"{index_path}: broken_videos[{i}]: {e!r}") from e
    dataset = index.get("dataset")
    return {"dataset": None if dataset is None else str(dataset), "protocol": protocol,
            "broken_videos": broken}


def read_embeddings(
    export_dir: str | os.PathLike,
) -> dict[str, dict[str, list[VideoEmbedding]]]:
    """Read an export as ``{set_name: {split: [VideoEmbedding, ...]}}`` in index order.

    Every split key (``"train"``, ``"val"``) is present for every set, possibly empty.
    Raises :class:`EmbeddingExportError` naming the file and the problem.
    """
    root = Path(export_dir)
    index_path, index = _read_index(root)
    dim = index.get("embedding_dim")
    videos = index.get("videos")
    if not isinstance(dim, int) or dim < 1:
        raise EmbeddingExportError(f"{index_path}: embedding_dim must be a positive integer")
    if not isinstance(videos, list) or not videos:
        raise EmbeddingExportError(f"{index_path}: 'videos' must be a non-empty list")

    out: dict[str, dict[str, list[VideoEmbedding]]] = {}
    for i, v in enumerate(videos):
        where = f"videos[{i}]"
        if not isinstance(v, dict):
            raise EmbeddingExportError(f"{index_path}: {where} is not an object")
        for key in ("id", "set_name", "split", "file", "num_frames"):
            if key not in v:
                raise EmbeddingExportError(f"{index_path}: {where}: missing key {key!r}")
        where = f"{where} (id {v['id']!r})"
        if v["split"] not in SPLITS:
            raise EmbeddingExportError(
                f"{index_path}: {where}: split must be one of {SPLITS}, got {v['split']!r}"
            )
        n = v["num_frames"]
        if not isinstance(n, int) or n < 0:
            raise EmbeddingExportError(f"{index_path}: {where}: bad num_frames {n!r}")
        emb_path = _member(root, v["file"], index_path, where)
        emb = _load(emb_path)
        if emb.dtype != np.float32 or emb.shape != (n, dim):
            raise EmbeddingExportError(
                f"{emb_path}: expected float32 [{n}, {dim}], got {emb.dtype} {list(emb.shape)}"
            )
        extras = {}
        for key, flag in (("labels_file", "has_labels"), ("frame_indices_file", None)):
            name = v.get(key)
            if flag is not None and bool(v.get(flag)) != (name is not None):
                raise EmbeddingExportError(
                    f"{index_path}: {where}: has_labels={v.get(flag)!r} but labels_file={name!r}"
                )
            if name is None:
                extras[key] = None
                continue
            path = _member(root, name, index_path, where)
            arr = _load(path)
            if arr.dtype != np.int64 or arr.shape != (n,):
                raise EmbeddingExportError(
                    f"{path}: expected int64 [{n}], got {arr.dtype} {list(arr.shape)}"
                )
            extras[key] = arr
        rec = VideoEmbedding(
            video_id=str(v["id"]),
            set_name=str(v["set_name"]),
            split=v["split"],
            embeddings=emb,
            labels=extras["labels_file"],
            frame_indices=extras["frame_indices_file"],
            group=str(v.get("group", "")),
        )
        out.setdefault(rec.set_name, {s: [] for s in SPLITS})[rec.split].append(rec)
    return out

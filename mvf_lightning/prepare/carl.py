"""Turn entries of CARL's pickled dataset lists into index records.

CARL's releases (Penn Action, FineGym, Pouring) store, per video, a dict with at least
``name``, ``video_file`` (mp4 path relative to the release root), ``frame_label`` (torch
tensor, one label per frame) and ``seq_len``. The mp4 files stay where they are: the
index stores their path relative to the output root (``videos/x.mp4`` when the output
root *is* the release root, ``../penn_action/videos/x.mp4`` otherwise). No copies, no
symlinks, so nothing breaks on file systems without links and nothing is duplicated.

Every referenced file is probed: missing or undecodable ones are left out and reported,
and when the decoded frame count differs from the label count the labels are resampled
to the frames the CARL way (``resample_labels``) and the case is counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mvf_lightning.data.index import VideoRecord, resample_labels
from mvf_lightning.prepare.common import PrepareError, parallel_map, relative_to_root
from mvf_lightning.prepare.media import ProbeCache, probe


@dataclass
class CarlItem:
    """One video entry of a CARL pickle, checked and with its file resolved."""

    id: str
    group: str
    video: Path
    labels: np.ndarray | None
    seq_len: int | None
    extra: dict = field(default_factory=dict)


def as_int_labels(value: object, where: str) -> np.ndarray:
    """A 1-D int64 array from a torch tensor, numpy array or list; clear error otherwise."""
    if hasattr(value, "detach"):  # torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.ndim == 1 and (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
        return arr.astype(np.int64)
    if arr.ndim == 1 and np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    raise PrepareError(
        f"{where}: expected a 1-D integer label sequence, got dtype {arr.dtype} "
        f"shape {list(arr.shape)}"
    )


def entries_of(obj: object, where: str) -> list[dict]:
    """The list of video dicts in a CARL pickle: a list, or the first item of a tuple."""
    if isinstance(obj, tuple) and obj and isinstance(obj[0], list):
        obj = obj[0]
    if not isinstance(obj, list):
        raise PrepareError(
            f"{where}: expected a list of video dicts (or a (videos, action_to_indices) "
            f"tuple), got {type(obj).__name__}"
        )
    for i, item in enumerate(obj):
        if not isinstance(item, dict):
            raise PrepareError(f"{where}: entry {i} must be a dict, got {type(item).__name__}")
    return obj


def carl_pickles(carl_root: Path, names: dict[str, str], dataset: str) -> dict[str, Path]:
    """Paths of a CARL release's pickles by split; an error names the first one missing."""
    files = {split: carl_root / name for split, name in names.items()}
    for path in files.values():
        if not path.is_file():
            raise PrepareError(f"CARL {dataset} pickle not found: {path}")
    return files


def require(item: dict, key: str, where: str) -> object:
    """``item[key]`` or an error naming the file, the entry and the missing key."""
    if key not in item:
        raise PrepareError(f"{where}: missing key {key!r} (keys present: {sorted(item)})")
    return item[key]


def make_item(
    entry: dict,
    where: str,
    carl_root: Path,
    id: str,
    group: str,
    extra: dict | None = None,
) -> CarlItem:
    """Check the common fields of one entry and resolve its video file under ``carl_root``."""
    video_file = require(entry, "video_file", where)
    if not isinstance(video_file, str) or not video_file:
        raise PrepareError(f"{where}: 'video_file' must be a non-empty string, got {video_file!r}")
    labels = None
    if "frame_label" in entry and entry["frame_label"] is not None:
        labels = as_int_labels(entry["frame_label"], f"{where}: 'frame_label'")
    seq_len = entry.get("seq_len")
    if seq_len is not None:
        try:
            seq_len = int(seq_len)
        except (TypeError, ValueError):
            raise PrepareError(f"{where}: 'seq_len' must be an integer, got {seq_len!r}") from None
    path = Path(video_file)
    return CarlItem(
        id=id,
        group=group,
        video=path if path.is_absolute() else carl_root / path,
        labels=labels,
        seq_len=seq_len,
        extra=dict(extra or {}),
    )


def _probe_path(path: Path):
    return probe(path)


def convert_items(
    split_items: dict[str, list[CarlItem]],
    out_root: Path,
    workers: int,
    cache_path: Path,
) -> tuple[dict[str, list[VideoRecord]], dict]:
    """Probe every item's video and build records; returns (split -> records, report part)."""
    report: dict = {
        "videos": {},
        "skipped": [],
        "labels_resampled": 0,
        "seq_len_mismatch": 0,
        "duplicate_ids": [],
    }
    records: dict[str, list[VideoRecord]] = {}
    with ProbeCache(cache_path) as cache:
        unique = list(dict.fromkeys(it.video for items in split_items.values() for it in items))
        todo = [p for p in unique if cache.get(p) is None]
        probed = dict(zip(todo, parallel_map(_probe_path, todo, workers, "probe", chunksize=8)))
        for p, r in probed.items():
            cache.put(p, r)
        results = {p: probed[p] if p in probed else cache.get(p) for p in unique}
    for split, items in split_items.items():
        out: list[VideoRecord] = []
        seen: set[str] = set()
        for it in items:
            if it.id in seen:
                report["duplicate_ids"].append({"split": split, "id": it.id})
                continue
            info = results[it.video]
            if isinstance(info, str):
                report["skipped"].append(
                    {"split": split, "id": it.id, "path": str(it.video), "reason": info}
                )
                continue
            seen.add(it.id)
            n = info.num_frames
            labels = it.labels
            if it.seq_len is not None and it.seq_len != n:
                report["seq_len_mismatch"] += 1
            if labels is not None and len(labels) != n:
                if len(labels) == 0:
                    report["skipped"].append(
                        {
                            "split": split,
                            "id": it.id,
                            "path": str(it.video),
                            "reason": "frame_label is empty",
                        }
                    )
                    seen.discard(it.id)
                    continue
                labels = resample_labels(labels, n)
                report["labels_resampled"] += 1
            out.append(
                VideoRecord.from_labels(
                    id=it.id,
                    path=relative_to_root(it.video, out_root),
                    labels=labels,
                    num_frames=n,
                    fps=info.fps,
                    group=it.group,
                    extra=it.extra,
                )
            )
        records[split] = out
        report["videos"][split] = len(out)
    return records, report

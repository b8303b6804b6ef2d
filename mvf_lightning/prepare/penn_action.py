"""Penn Action -> index, from the public release or from CARL's pickled release.

Public release: ``Penn_Action/frames/<vid>/*.jpg`` and ``labels/<vid>.mat``, plus the
TCC phase labels ``penn_action_labels/{train,val}/<action>/<vid>.npy`` (the folder is the
split). Only the 13 actions of the alignment benchmarks are converted. Each video's JPEG
frames are encoded to ``videos/<vid>.mp4`` at 30 fps (Penn Action was filmed at 30 fps;
the release has no per-video rate), resized to 224x224 ignoring the aspect ratio as CARL
and the reference's converter did (the size the paper configs expect; ``--size`` chooses
another, ``--size 0`` keeps the source size, odd sizes losing their last row/column since
H.264 needs even sizes).

When the label count differs from the frame count, the longer of the two is resampled to
the shorter with index ``floor(j * long / short)`` as CARL does: extra labels are
dropped from the labels, extra frames are dropped from the encoded video. Both cases are
counted in the report.

Ids are the 4-digit video numbers (``0001``); groups are action names.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from mvf_lightning.data.index import VideoRecord, resample_labels
from mvf_lightning.data.video_writer import CODECS
from mvf_lightning.prepare.carl import (
    CarlItem,
    carl_pickles,
    convert_items,
    entries_of,
    make_item,
    require,
)
from mvf_lightning.prepare.common import (
    Converter,
    PrepareError,
    add_trust_argument,
    count_by,
    ensure_indexes_writable,
    need,
    parallel_map,
    report_path,
    write_indexes,
    write_report,
)
from mvf_lightning.prepare.media import reusable_output
from mvf_lightning.prepare.safe_pickle import load_trusted_pickle

from ..utils.npy import load_npy

DATASET = "penn_action"
FPS = 30.0
SPLITS = ("train", "val")
STORED_SIZE = 224
"""Frames are stored at this square size by default, as CARL's release and the reference's
converter (cv2 resize) did: the paper configs' evaluation crop assumes it."""

#: The 13 benchmark actions in the order of CARL's ``action_to_indices``, with phase counts.
ACTION_PHASES: dict[str, int] = {
    "baseball_pitch": 4,
    "baseball_swing": 3,
    "bench_press": 2,
    "bowl": 3,
    "clean_and_jerk": 6,
    "golf_swing": 3,
    "jumping_jacks": 4,
    "pushup": 2,
    "pullup": 2,
    "situp": 2,
    "squat": 4,
    "tennis_forehand": 3,
    "tennis_serve": 4,
}
ACTIONS: tuple[str, ...] = tuple(ACTION_PHASES)


# ---------------------------------------------------------------- public release


def _mat_facts(mat_path: Path) -> tuple[str, int | None]:
    """``action`` and ``nframes`` of a Penn Action ``.mat`` file (``nframes`` None if absent)."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(mat_path))
    except Exception as e:
        raise PrepareError(f"{mat_path}: not a readable MATLAB file ({e})") from e
    if "action" not in mat:
        raise PrepareError(f"{mat_path}: no 'action' field (fields: {sorted(mat)})")
    action = str(np.asarray(mat["action"]).reshape(-1)[0]).strip()
    nframes = np.asarray(mat.get("nframes", [])).reshape(-1)
    return action, int(nframes[0]) if nframes.size else None


def _read_labels(npy: Path) -> np.ndarray:
    try:
        arr = load_npy(npy, "label array")
    except (OSError, ValueError) as e:
        raise PrepareError(f"{npy}: not a readable .npy label file ({e})") from e
    arr = np.asarray(arr).reshape(-1) if arr.ndim == 2 and 1 in arr.shape else np.asarray(arr)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.number):
        raise PrepareError(
            f"{npy}: expected a 1-D array of integer phase ids, got {arr.dtype} {list(arr.shape)}"
        )
    return arr.astype(np.int64)


def _encode_video(task: dict) -> dict:
    """Worker: encode the selected JPEG frames of one video to mp4 (or reuse a finished one)."""
    from PIL import Image

    from mvf_lightning.data.video_writer import write_video

    out = Path(task["out"])
    jpgs = task["jpgs"]
    size = task["size"]
    with Image.open(jpgs[0]) as im:
        src_w, src_h = im.size
    w, h = (size, size) if size else (src_w - src_w % 2, src_h - src_h % 2)
    if reusable_output(out, len(jpgs), (h, w), FPS) is not None:
        return {"id": task["id"], "status": "reused", "height": h, "width": w}

    def frames():
        for p in jpgs:
            with Image.open(p) as im:
                im = im.convert("RGB")
                if size or im.size != (src_w, src_h):
                    im = im.resize((w, h) if size else (src_w, src_h), Image.BILINEAR)
                arr = np.asarray(im)
            yield arr[:h, :w]

    try:
        write_video(out, frames(), FPS, codec=task["codec"])
    except (OSError, ValueError) as e:
        return {"id": task["id"], "status": "failed", "reason": f"{type(e).__name__}: {e}"}
    return {"id": task["id"], "status": "encoded", "height": h, "width": w}


def convert_public(
    source: Path,
    labels_dir: Path,
    out_root: Path,
    size: int | None,
    workers: int,
    overwrite: bool,
    codec: str = "libx264",
) -> dict:
    """Convert the public release + phase labels; returns the report (also written to disk)."""
    for p, what in ((source / "frames", "frames folder"), (labels_dir, "phase-label folder")):
        if not p.is_dir():
            raise PrepareError(f"Penn Action {what} not found: {p}")
    split_dirs = {s: labels_dir / s for s in SPLITS}
    if not any(d.is_dir() for d in split_dirs.values()):
        raise PrepareError(
            f"{labels_dir}: expected subfolders train/ and val/ with <action>/<vid>.npy files"
        )
    if size is not None and (size <= 0 or size % 2):
        raise PrepareError(f"--size must be a positive even number, got {size}")
    ensure_indexes_writable(out_root, SPLITS, overwrite)

    report: dict = {
        "dataset": DATASET,
        "source": str(source),
        "labels": str(labels_dir),
        "fps": FPS,
        "size": size,
        "excluded_actions": {},
        "missing_frames": [],
        "missing_mat": [],
        "action_mismatch": [],
        "nframes_mismatch": [],
        "duplicates": [],
        "labels_resampled": 0,
        "frames_resampled": 0,
        "resampled": [],
        "failed": [],
    }
    planned: list[dict] = []
    seen: dict[str, str] = {}
    for split, split_dir in split_dirs.items():
        if not split_dir.is_dir():
            continue
        for action_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            action = action_dir.name
            npys = sorted(action_dir.glob("*.npy"))
            if action not in ACTION_PHASES:
                report["excluded_actions"][action] = report["excluded_actions"].get(
                    action, 0
                ) + len(npys)
                continue
            for npy in npys:
                vid = npy.stem
                if vid in seen:
                    report["duplicates"].append({"id": vid, "first": seen[vid], "again": str(npy)})
                    continue
                seen[vid] = str(npy)
                frame_dir = source / "frames" / vid
                jpgs = sorted(frame_dir.glob("*.jpg")) if frame_dir.is_dir() else []
                if not jpgs:
                    report["missing_frames"].append({"id": vid, "path": str(frame_dir)})
                    continue
                mat = source / "labels" / f"{vid}.mat"
                if mat.is_file():
                    mat_action, mat_frames = _mat_facts(mat)
                    if mat_action != action:
                        report["action_mismatch"].append(
                            {"id": vid, "mat": mat_action, "label_folder": action}
                        )
                    if mat_frames is not None and mat_frames != len(jpgs):
                        report["nframes_mismatch"].append(
                            {"id": vid, "mat_nframes": mat_frames, "jpg_files": len(jpgs)}
                        )
                else:
                    report["missing_mat"].append(str(mat))
                labels = _read_labels(npy)
                if labels.size == 0:
                    raise PrepareError(f"{npy}: empty label file")
                if labels.min() < 0 or labels.max() >= ACTION_PHASES[action]:
                    raise PrepareError(
                        f"{npy}: phase ids must be in 0..{ACTION_PHASES[action] - 1} for "
                        f"{action}, got {labels.min()}..{labels.max()}"
                    )
                n_frames, n_labels = len(jpgs), len(labels)
                length = min(n_frames, n_labels)
                if n_labels > length:
                    report["labels_resampled"] += 1
                if n_frames > length:
                    report["frames_resampled"] += 1
                if n_frames != n_labels:
                    report["resampled"].append({"id": vid, "frames": n_frames, "labels": n_labels})
                keep = resample_labels(np.arange(n_frames), length)
                planned.append(
                    {
                        "id": vid,
                        "split": split,
                        "action": action,
                        "labels": resample_labels(labels, length),
                        "task": {
                            "id": vid,
                            "jpgs": [str(jpgs[i]) for i in keep],
                            "out": str(out_root / "videos" / f"{vid}.mp4"),
                            "size": size,
                            "codec": codec,
                        },
                    }
                )

    results = parallel_map(_encode_video, [p["task"] for p in planned], workers, "penn-action")
    records: dict[str, list[VideoRecord]] = {s: [] for s in SPLITS}
    statuses = []
    for plan, res in zip(planned, results):
        statuses.append(res["status"])
        if res["status"] == "failed":
            report["failed"].append({"id": plan["id"], "reason": res["reason"]})
            continue
        records[plan["split"]].append(
            VideoRecord.from_labels(
                id=plan["id"],
                path=f"videos/{plan['id']}.mp4",
                labels=plan["labels"],
                fps=FPS,
                group=plan["action"],
                extra={"name": f"{plan['id']}_{plan['action']}"},
            )
        )
    report["videos"] = {s: len(r) for s, r in records.items()}
    report["per_action"] = {s: count_by(v.group for v in r) for s, r in records.items()}
    report["work"] = count_by(statuses)
    report["indexes"] = write_indexes(out_root, DATASET, records, overwrite)
    write_report(out_root, "penn_action", report)
    return report


# ---------------------------------------------------------------- CARL release

_NAME = re.compile(r"^(\d+)_([a-z_]+)$")


def _action_of_positions(a2i: object, where: str, n: int) -> dict[int, str]:
    """Map video positions to action names using CARL's ``action_to_indices``."""
    if isinstance(a2i, dict):
        items = list(a2i.items())
    elif isinstance(a2i, list | tuple):
        items = list(enumerate(a2i))
    else:
        raise PrepareError(
            f"{where}: action_to_indices must be a list of index lists, got {type(a2i).__name__}"
        )
    out: dict[int, str] = {}
    for k, positions in items:
        if isinstance(k, str) and k in ACTION_PHASES:
            action = k
        elif isinstance(k, int) and 0 <= k < len(ACTIONS):
            action = ACTIONS[k]
        else:
            raise PrepareError(f"{where}: action_to_indices key {k!r} is not one of the 13 actions")
        for pos in positions:
            pos = int(pos)
            if not 0 <= pos < n:
                raise PrepareError(
                    f"{where}: action_to_indices[{k!r}] lists position {pos}, "
                    f"but there are {n} videos"
                )
            out[pos] = action
    return out


def convert_carl(
    carl_root: Path, out_root: Path, trust_pickle: bool, workers: int, overwrite: bool
) -> dict:
    """Convert CARL's ``train.pkl``/``val.pkl`` (mp4s referenced in place)."""
    files = carl_pickles(carl_root, {s: f"{s}.pkl" for s in SPLITS}, "Penn Action")
    ensure_indexes_writable(out_root, SPLITS, overwrite)
    report: dict = {"dataset": DATASET, "source": str(carl_root), "name_action_mismatch": []}
    split_items: dict[str, list[CarlItem]] = {}
    for split, pkl in files.items():
        obj = load_trusted_pickle(pkl, trust_pickle)
        videos = entries_of(obj, str(pkl))
        by_pos: dict[int, str] = {}
        if isinstance(obj, tuple) and len(obj) > 1:
            by_pos = _action_of_positions(obj[1], str(pkl), len(videos))
        items = []
        for i, entry in enumerate(videos):
            where = f"{pkl}: videos[{i}]"
            name = str(require(entry, "name", where))
            m = _NAME.match(name)
            vid, name_action = (m.group(1), m.group(2)) if m else (name, None)
            action = by_pos.get(i) or name_action
            if action is None:
                raise PrepareError(
                    f"{where}: cannot tell the action of {name!r} (not in action_to_indices "
                    "and the name is not <vid>_<action>)"
                )
            if name_action is not None and name_action != action:
                report["name_action_mismatch"].append(
                    {"split": split, "name": name, "action_to_indices": action}
                )
            items.append(make_item(entry, where, carl_root, vid, action, {"name": name}))
        split_items[split] = items
    records, part = convert_items(
        split_items,
        out_root,
        workers,
        report_path(out_root, "penn_action_carl_probe_cache").with_suffix(".jsonl"),
    )
    report.update(part)
    report["indexes"] = write_indexes(out_root, DATASET, records, overwrite)
    write_report(out_root, "penn_action_carl", report)
    return report


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", type=Path, help="Penn_Action folder (frames/, labels/)")
    p.add_argument("--labels", type=Path, help="penn_action_labels folder ({train,val}/<action>/)")
    p.add_argument("--carl", type=Path, help="CARL's penn_action folder with train.pkl, val.pkl")
    p.add_argument(
        "--size", type=int, default=STORED_SIZE,
        help=f"store frames at SIZE x SIZE, aspect ignored, as CARL and the reference did and "
        f"the paper configs expect (default {STORED_SIZE}; 0 keeps the source size)",
    )
    p.add_argument("--codec", choices=CODECS, default="libx264")
    add_trust_argument(p)


def _run(args: argparse.Namespace) -> dict:
    if args.carl is not None:
        if args.source or args.labels:
            raise PrepareError("penn-action: give either --carl or --source/--labels, not both")
        return convert_carl(args.carl, args.out, args.trust_pickle, args.workers, args.overwrite)
    need(args, ["source", "labels"], "(public release)")
    if args.size < 0:
        raise PrepareError(f"penn-action: --size must be >= 0 (0 keeps the source size), got "
                           f"{args.size}")
    return convert_public(args.source, args.labels, args.out, args.size or None, args.workers,
                          args.overwrite, codec=args.codec)


CONVERTER = Converter(
    name="penn-action",
    help="Penn Action (public frames + phase labels, or CARL's train.pkl/val.pkl)",
    description="Public release: --source Penn_Action --labels penn_action_labels. CARL "
    "release: --carl <dir with train.pkl, val.pkl> --trust-pickle. Videos are encoded at 30 "
    "fps (Penn Action's rate), 224 x 224 unless --size says otherwise.",
    add_arguments=_add_arguments,
    run=_run,
)

"""FineGym (v1.0) -> index, from raw videos + annotations or from CARL's pickled lists.

Raw conversion reproduces CARL's processing, which the published numbers use:

* one clip per event with at least one labelled segment in the split's element file;
* cut from the raw video ``<youtube_id>.mp4|.mkv|.webm`` at the event's timestamps,
  scaled to 640x360 (aspect ignored), resampled to 25 fps, mp4
  (``videos/<youtube_id>_<event_id>.mp4``; see :mod:`.cut_clip`);
* frame labels start at -1; for each labelled segment, frames ``int(s * fps)`` ..
  ``int(e * fps)`` inclusive (clipped to the clip) get the element label, where ``(s, e)``
  are that segment's LAST stage timestamps (seconds from the event start). Segments are
  applied in the annotation's order of the event's segments (CARL's loop over them), so the
  later one there wins where two overlap.

Splits: ``gym99_train``, ``gym99_val``, ``gym288_train``, ``gym288_val``. gym99 and gym288
share events, so each clip is cut once and referenced by both. Every video has group
``finegym`` (the benchmark treats FineGym as one set of videos); the event class, YouTube
id and event id are kept under ``extra``. Raw videos that are missing or unreadable are
skipped and listed in ``reports/finegym.json``; the rest is converted.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from mvf_lightning.data.index import VideoRecord
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

DATASET = "finegym"
GROUP = "finegym"
FPS = 25.0
SIZE_WH = (640, 360)
VIDEO_EXTS = (".mp4", ".mkv", ".webm")

SPLIT_FILES = {
    "gym99_train": "gym99_train_element_v1.0.txt",
    "gym99_val": "gym99_val_element.txt",
    "gym288_train": "gym288_train_element_v1.0.txt",
    "gym288_val": "gym288_val_element.txt",
}
CARL_FILES = {
    "gym99_train": "gym99_train_v1.0.pkl",
    "gym99_val": "gym99_val.pkl",
    "gym288_train": "gym288_train_v1.0.pkl",
    "gym288_val": "gym288_val.pkl",
}
VARIANTS = {"gym99": ("gym99_train", "gym99_val"), "gym288": ("gym288_train", "gym288_val")}
VARIANTS["both"] = VARIANTS["gym99"] + VARIANTS["gym288"]

# <youtube_id>_<event_id>_<segment_id>; YouTube ids may themselves contain underscores.
_ELEMENT = re.compile(r"^(?P<yid>.+)_(?P<eid>E_\d+_\d+)_(?P<sid>A_\d+_\d+)$")


def parse_size(text: str) -> tuple[int, int]:
    """``"640x360"`` -> ``(640, 360)`` (width, height); both must be positive and even."""
    m = re.fullmatch(r"(\d+)x(\d+)", text.strip())
    if not m:
        raise PrepareError(f"--size must look like WIDTHxHEIGHT (e.g. 640x360), got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise PrepareError(f"--size {text}: width and height must be positive and even (H.264)")
    return w, h


def parse_split_file(path: Path) -> list[tuple[str, str, str, int]]:
    """Lines ``<youtube_id>_<event_id>_<segment_id> <label>`` -> (yid, eid, sid, label)."""
    if not path.is_file():
        raise PrepareError(f"FineGym split file not found: {path}")
    out = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split()
            m = _ELEMENT.match(parts[0]) if len(parts) == 2 else None
            if m is None or not re.fullmatch(r"-?\d+", parts[1]):
                raise PrepareError(
                    f"{path}:{lineno}: expected '<youtube_id>_E_xxxxxx_xxxxxx_A_xxxx_xxxx "
                    f"<label>', got {line!r}"
                )
            out.append((m["yid"], m["eid"], m["sid"], int(parts[1])))
    return out


def _pair(value: object, where: str) -> tuple[float, float]:
    try:
        s, e = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise PrepareError(f"{where}: expected [start_s, end_s], got {value!r}") from None
    if e < s:
        raise PrepareError(f"{where}: end {e} is before start {s}")
    return s, e


def _find_video(videos_dir: Path, yid: str) -> Path | None:
    for ext in VIDEO_EXTS:
        p = videos_dir / f"{yid}{ext}"
        if p.is_file():
            return p
    return None


def _cut_worker(task: dict) -> dict:
    """Worker: cut one event clip, or reuse the finished clip of an earlier run."""
    from mvf_lightning.prepare.cut_clip import ClipError, cut_clip

    out = Path(task["out"])
    w, h = task["size_wh"]
    info = reusable_output(out, None, (h, w), task["fps"])
    if info is not None:
        return {"clip": task["clip"], "status": "reused", "num_frames": info.num_frames}
    try:
        n = cut_clip(
            task["src"], out, task["start"], task["end"], task["fps"], (w, h), codec=task["codec"]
        )
    except (ClipError, OSError, ValueError) as e:
        return {"clip": task["clip"], "status": "failed", "reason": str(e)}
    return {"clip": task["clip"], "status": "encoded", "num_frames": n}


def frame_labels(
    num_frames: int, segments: list[tuple[float, float, int]], fps: float
) -> tuple[np.ndarray, int, int]:
    """Per-frame labels (-1 elsewhere) from (s, e, label) in seconds from the clip start,
    applied in the given order: a later segment wins where two overlap.

    Returns (labels, segments entirely outside the clip, segments cut at the clip's end).
    """
    labels = np.full(num_frames, -1, dtype=np.int64)
    outside = truncated = 0
    for s, e, label in segments:
        a, b = int(s * fps), int(e * fps)
        if a > num_frames - 1:
            outside += 1
            continue
        if b > num_frames - 1:
            truncated += 1
            b = num_frames - 1
        labels[max(a, 0) : b + 1] = label
    return labels, outside, truncated


def convert_raw(
    annotations: Path,
    splits_dir: Path,
    videos_dir: Path,
    out_root: Path,
    variant: str,
    workers: int,
    overwrite: bool,
    size_wh: tuple[int, int] = SIZE_WH,
    fps: float = FPS,
    codec: str = "libx264",
) -> dict:
    """Cut the event clips of ``variant`` and write their indexes; returns the report."""
    if variant not in VARIANTS:
        raise PrepareError(f"--variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    if not videos_dir.is_dir():
        raise PrepareError(f"FineGym raw video folder not found: {videos_dir}")
    if fps <= 0:
        raise PrepareError(f"--fps must be > 0, got {fps}")
    splits = VARIANTS[variant]
    elements = {s: parse_split_file(splits_dir / SPLIT_FILES[s]) for s in splits}
    if not annotations.is_file():
        raise PrepareError(f"FineGym annotation file not found: {annotations}")
    try:
        with open(annotations) as f:
            ann = json.load(f)
    except json.JSONDecodeError as e:
        raise PrepareError(f"{annotations}: not valid JSON ({e})") from e
    if not isinstance(ann, dict):
        raise PrepareError(f"{annotations}: expected an object keyed by YouTube id")
    ensure_indexes_writable(out_root, splits, overwrite)

    report: dict = {
        "dataset": DATASET,
        "variant": variant,
        "fps": fps,
        "size": list(size_wh),
        "unknown_elements": [],
        "missing_videos": {},
        "failed_clips": [],
        "segments_outside_clip": 0,
        "segments_truncated": 0,
    }
    # split -> {clip_id: [(position in the event's segments, s, e, label), ...]};
    # clip_id -> event facts
    split_clips: dict[str, dict[str, list[tuple[int, float, float, int]]]] = {}
    events: dict[str, dict] = {}
    for split, rows in elements.items():
        clips: dict[str, list[tuple[int, float, float, int]]] = {}
        for yid, eid, sid, label in rows:
            where = f"{annotations}: [{yid!r}][{eid!r}]"
            event = ann.get(yid, {}).get(eid) if isinstance(ann.get(yid), dict) else None
            segs = event.get("segments") if isinstance(event, dict) else None
            if not isinstance(segs, dict) or sid not in segs:
                report["unknown_elements"].append(
                    {"split": split, "element": f"{yid}_{eid}_{sid}", "label": label}
                )
                continue
            seg = segs[sid]
            stamps = seg.get("timestamps") if isinstance(seg, dict) else None
            if not isinstance(stamps, list) or not stamps:
                raise PrepareError(
                    f"{where}['segments'][{sid!r}]: expected 'timestamps' [[s, e], ...], "
                    f"got {stamps!r}"
                )
            s, e = _pair(stamps[-1], f"{where}['segments'][{sid!r}]['timestamps'][-1]")
            clip = f"{yid}_{eid}"
            if clip not in events:
                ev_stamps = event.get("timestamps")
                if not isinstance(ev_stamps, list) or not ev_stamps:
                    raise PrepareError(
                        f"{where}: expected 'timestamps' [[start_s, end_s]], got {ev_stamps!r}"
                    )
                start, end = _pair(ev_stamps[0], f"{where}['timestamps'][0]")
                events[clip] = {
                    "youtube_id": yid,
                    "event_id": eid,
                    "start": start,
                    "end": end,
                    "event": event.get("event"),
                }
            clips.setdefault(clip, []).append((list(segs).index(sid), s, e, label))
        split_clips[split] = clips

    tasks = []
    for clip, ev in events.items():
        src = _find_video(videos_dir, ev["youtube_id"])
        if src is None:
            report["missing_videos"][ev["youtube_id"]] = (
                report["missing_videos"].get(ev["youtube_id"], 0) + 1
            )
            continue
        tasks.append(
            {
                "clip": clip,
                "src": str(src),
                "out": str(out_root / "videos" / f"{clip}.mp4"),
                "start": ev["start"],
                "end": ev["end"],
                "fps": fps,
                "size_wh": size_wh,
                "codec": codec,
            }
        )
    done: dict[str, int] = {}
    statuses = []
    for res in parallel_map(_cut_worker, tasks, workers, "finegym", unit="clip"):
        statuses.append(res["status"])
        if res["status"] == "failed":
            report["failed_clips"].append({"clip": res["clip"], "reason": res["reason"]})
        else:
            done[res["clip"]] = res["num_frames"]

    records: dict[str, list[VideoRecord]] = {}
    for split, clips in split_clips.items():
        out = []
        for clip, segments in sorted(clips.items()):  # event-id order, as the probe expects
            if clip not in done:
                continue
            in_annotation_order = [seg[1:] for seg in sorted(segments, key=lambda x: x[0])]
            labels, outside, truncated = frame_labels(done[clip], in_annotation_order, fps)
            report["segments_outside_clip"] += outside
            report["segments_truncated"] += truncated
            ev = events[clip]
            out.append(
                VideoRecord.from_labels(
                    id=clip,
                    path=f"videos/{clip}.mp4",
                    labels=labels,
                    fps=fps,
                    group=GROUP,
                    extra={
                        "youtube_id": ev["youtube_id"],
                        "event_id": ev["event_id"],
                        "event": ev["event"],
                    },
                )
            )
        records[split] = out
    report["clips"] = count_by(statuses)
    report["events_per_split"] = {s: len(c) for s, c in split_clips.items()}
    report["videos"] = {s: len(r) for s, r in records.items()}
    report["missing_video_count"] = len(report["missing_videos"])
    report["indexes"] = write_indexes(out_root, DATASET, records, overwrite)
    write_report(out_root, "finegym", report)
    return report


def convert_carl(
    carl_root: Path,
    out_root: Path,
    variant: str,
    trust_pickle: bool,
    workers: int,
    overwrite: bool,
) -> dict:
    """Convert CARL's FineGym pickles (``gym99_train_v1.0.pkl`` ...), mp4s referenced in place."""
    if variant not in VARIANTS:
        raise PrepareError(f"--variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    splits = VARIANTS[variant]
    files = carl_pickles(carl_root, {s: CARL_FILES[s] for s in splits}, "FineGym")
    ensure_indexes_writable(out_root, splits, overwrite)
    split_items: dict[str, list[CarlItem]] = {}
    for split, pkl in files.items():
        entries = entries_of(load_trusted_pickle(pkl, trust_pickle), str(pkl))
        items = []
        for i, entry in enumerate(entries):
            where = f"{pkl}: entry {i}"
            name = str(require(entry, "name", where))
            extra = {"event_label": entry.get("event_label")}
            if hasattr(extra["event_label"], "item"):
                extra["event_label"] = extra["event_label"].item()
            items.append(make_item(entry, where, carl_root, name, GROUP, extra))
        # event-id order: FineGym's probe trains on the first videos in that order
        split_items[split] = sorted(items, key=lambda it: it.id)
    records, part = convert_items(
        split_items,
        out_root,
        workers,
        report_path(out_root, "finegym_carl_probe_cache").with_suffix(".jsonl"),
    )
    report = {"dataset": DATASET, "source": str(carl_root), "variant": variant, **part}
    report["indexes"] = write_indexes(out_root, DATASET, records, overwrite)
    write_report(out_root, "finegym_carl", report)
    return report


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--annotations", type=Path, help="finegym_annotation_info_v1.0.json")
    p.add_argument("--splits-dir", type=Path, help="folder with the gym99/gym288 element txt files")
    p.add_argument("--videos", type=Path, help="raw videos <youtube_id>.mp4|.mkv|.webm")
    p.add_argument("--carl", type=Path, help="CARL's folder with gym99_train_v1.0.pkl etc.")
    p.add_argument("--variant", choices=("gym99", "gym288", "both"), default="both")
    p.add_argument("--size", default="640x360", help="output WIDTHxHEIGHT (default 640x360)")
    p.add_argument("--fps", type=float, default=25.0, help="output frame rate (default 25)")
    p.add_argument("--codec", choices=CODECS, default="libx264")
    add_trust_argument(p)


def _run(args: argparse.Namespace) -> dict:
    if args.carl is not None:
        if args.annotations or args.splits_dir or args.videos:
            raise PrepareError(
                "finegym: give either --carl or --annotations/--splits-dir/--videos, not both"
            )
        return convert_carl(args.carl, args.out, args.variant, args.trust_pickle, args.workers,
                            args.overwrite)
    need(args, ["annotations", "splits_dir", "videos"], "(raw videos)")
    return convert_raw(
        args.annotations, args.splits_dir, args.videos, args.out, args.variant, args.workers,
        args.overwrite, size_wh=parse_size(args.size), fps=args.fps, codec=args.codec,
    )


CONVERTER = Converter(
    name="finegym",
    help="FineGym v1.0 (raw videos + annotations, or CARL's pickles)",
    description="Cuts one clip per labelled event, CARL's way (640x360, 25 fps).",
    add_arguments=_add_arguments,
    run=_run,
)

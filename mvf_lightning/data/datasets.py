"""Map-style datasets over a :class:`~mvf_lightning.data.index.VideoIndex`, plus their sampler.

Workers only decode uint8 frames; augmentation happens later on the accelerator.

* :class:`TrainClipDataset`: two time-augmented views of one video per item.
* :class:`EvalVideoDataset`: one whole video (every ``stride``-th frame) with labels.
* :class:`EpochSeededSampler`: DDP sharding + per-epoch shuffling; it yields
  ``(index, epoch)`` pairs, so items are reproducible from ``(seed, epoch, index)`` even with
  persistent workers that never see ``dataset.epoch`` change.
* :class:`SameGroupSampler`: the same, in runs of ``batch_size`` videos of one group (one
  action), so that every batch holds videos of one action (the reference's TCC batches).

Broken videos in training: an item that cannot be decoded is replaced by the next video of
the index (up to ``max_substitutes`` tries) and the failing files travel with the item in
its ``broken`` list, because workers are separate processes. The DataModule (or any loop)
aggregates these in the main process with :class:`BrokenVideoTracker`, which warns once
per file and raises once more are broken than the tolerance allows.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler
from torch.utils.data._utils.collate import default_collate

from ..errors import ConfigError, DataError
from .decode import VideoDecodeError, VideoFile
from .index import VideoIndex, VideoRecord, resample_labels
from .sampling import OffsetUniformSampler, StrideSampler, TimeAugmentSampler

__all__ = [
    "BrokenVideoTracker",
    "TooManyBrokenVideosError",
    "EpochSeededSampler",
    "EvalVideoDataset",
    "SameGroupSampler",
    "TrainClipDataset",
    "VideoDataset",
    "collate_eval",
    "collate_train",
    "worker_leaves_signals_to_main",
]


def _frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` (numpy) -> uint8 ``[..., 3, H, W]`` (torch), without copying.

    The result is a channel-first *view* of channel-last memory (not contiguous): the
    transposing copy, ~40% of a worker's time per Penn Action item, is left to the
    accelerator (the augmentation makes its output contiguous).
    """
    return torch.from_numpy(frames).movedim(-1, -3)


def _stack_frames(frames: list[torch.Tensor]) -> torch.Tensor:
    """Stack ``[..., 3, H, W]`` views of channel-last memory, keeping that memory layout."""
    sizes = {tuple(f.shape[-2:]) for f in frames}
    if len(sizes) > 1:
        raise ConfigError(
            f"videos in one batch have different frame sizes {sorted(sizes)}: set "
            "data.decode_size: [H, W] to resize while decoding, or data.batch_size: 1"
        )
    return torch.stack([f.movedim(-3, -1) for f in frames]).movedim(-1, -3)


class VideoDataset(Dataset):
    """Shared base: the videos of an index, their files, and per-frame labels if any.

    ``decode_size=(H, W)`` resizes while decoding (None keeps the stored size).
    """

    def __init__(
        self,
        index: VideoIndex,
        decode_size: Sequence[int] | None = None,
        num_threads: int = 1,
    ) -> None:
        if not isinstance(index, VideoIndex):
            raise TypeError(f"{type(self).__name__}: index must be a VideoIndex, got {index!r}")
        if decode_size is not None and (len(decode_size) != 2 or min(decode_size) < 1):
            raise ConfigError(
                f"{type(self).__name__}: decode_size must be [height, width], got {decode_size!r}"
            )
        self.index = index
        self.decode_size = (
            None if decode_size is None else (int(decode_size[0]), int(decode_size[1]))
        )
        self.num_threads = int(num_threads)

    def __len__(self) -> int:
        return len(self.index)

    def record(self, i: int) -> VideoRecord:
        return self.index[i]

    def path(self, i: int) -> str:
        return str(self.index.video_path(self.index[i]))

    def open(self, i: int) -> VideoFile:
        """Open video ``i`` for decoding; raises :class:`VideoDecodeError` naming the file."""
        return VideoFile(self.path(i), self.decode_size, self.num_threads)

    def labels(self, i: int, num_frames: int) -> np.ndarray:
        """int64 ``[num_frames]`` labels of video ``i``, -1 where unknown.

        If the index holds a different number of labels than the video has frames, they
        are resampled CARL-style (index ``floor(j * n / num_frames)``).
        """
        labels = self.record(i).labels
        if labels is None or labels.size == 0:
            return np.full(num_frames, -1, dtype=np.int64)
        return resample_labels(labels, num_frames).astype(np.int64, copy=False)


def _split_key(key: Any) -> tuple[int, int | None]:
    """A sampler key is an int index or an ``(index, epoch)`` pair."""
    if isinstance(key, (tuple, list)) and len(key) == 2:
        return int(key[0]), int(key[1])
    return int(key), None


class TrainClipDataset(VideoDataset):
    """The views of one video per item, sampled by ``sampler`` (a :class:`TimeAugmentSampler`
    or :class:`OffsetUniformSampler`).

    Item: ``frames`` uint8 ``[V, T, 3, H, W]`` (a view of channel-last memory),
    ``steps`` int64 ``[V, T]`` (clamped to ``[0, L - 1]``), ``masks`` bool ``[V, T]``,
    ``seq_lens`` int64 ``[V]`` (= L), ``index`` (the video actually used), ``broken``
    (files that failed on the way), and with ``labels=True`` ``labels`` int64 ``[V, T]`` (the
    steps' phase labels, -1 where unknown). Only the union of the views' frames is decoded,
    once.
    The per-item generator is ``np.random.default_rng([seed, epoch, index])``. ``L`` is the
    smaller of the index's ``num_frames`` and the decoder's count (CARL's rule: the longer is
    resampled to the shorter): an index listing more frames than decode trains on the frames
    that exist; a file with more frames than listed is sampled at ``floor(j * decodable / L)``.
    """

    def __init__(
        self,
        index: VideoIndex,
        sampler: TimeAugmentSampler | OffsetUniformSampler,
        decode_size: Sequence[int] | None = None,
        seed: int = 0,
        num_threads: int = 1,
        max_substitutes: int = 10,
        warn_broken: bool = True,
        augment: torch.nn.Module | None = None,
        labels: bool = False,
    ) -> None:
        super().__init__(index, decode_size, num_threads)
        self.with_labels = bool(labels)
        if len(index) == 0:
            raise DataError(f"TrainClipDataset: index {index.dataset}/{index.split} has no videos")
        self.augment = augment
        """Applied to each item's ``[V, T, 3, H, W]`` frames in the worker (e.g. a
        :class:`~mvf_lightning.data.augment.TrainAugmentation`), seeded per (seed, epoch,
        video); None: items keep uint8 frames and are augmented after transfer."""
        self.sampler = sampler
        self.seed = int(seed)
        self.epoch = 0
        self.max_substitutes = int(max_substitutes)
        self.warn_broken = bool(warn_broken)
        self._warned: set[str] = set()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _item(self, i: int, epoch: int) -> dict[str, Any]:
        video = self.open(i)
        decodable = len(video)
        listed = self.record(i).num_frames
        length = min(decodable, listed) if listed > 0 else decodable
        if length < 1:
            raise VideoDecodeError(self.path(i), "video has no frames")
        rng = np.random.default_rng([self.seed, epoch, i])
        sample = self.sampler(length, rng)
        # CARL's rule when the file has more frames than the index lists: resample the video
        # to the listed length (frame floor(j * decodable / length)).
        frame_ids = sample.steps if decodable == length else sample.steps * decodable // length
        frames = video.read(frame_ids.reshape(-1))  # decodes the unique union once
        frames = frames.reshape(*sample.steps.shape, *frames.shape[1:])
        num_views = sample.steps.shape[0]
        item = {
            "frames": _frames_to_tensor(frames),
            "steps": torch.from_numpy(sample.steps.astype(np.int64, copy=False)),
            "masks": torch.from_numpy(sample.masks.astype(bool, copy=False)),
            "seq_lens": torch.full((num_views,), length, dtype=torch.int64),
            "index": i,
        }
        if self.with_labels:
            labels = self.labels(i, length)[sample.steps]
            item["labels"] = torch.from_numpy(np.ascontiguousarray(labels))
        return item

    def _augmented(self, frames: torch.Tensor, epoch: int, i: int) -> torch.Tensor:
        """The item's views augmented with torch's RNG seeded from (seed, epoch, video): the
        same result in any worker, and on a resumed run."""
        state = np.random.SeedSequence([self.seed, epoch, i, 1]).generate_state(2)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(state[0]) << 32 | int(state[1]))
            return self.augment(frames.unsqueeze(0)).squeeze(0)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        i, epoch = _split_key(key)
        epoch = self.epoch if epoch is None else epoch
        broken: list[str] = []
        tries = min(self.max_substitutes + 1, len(self))
        for k in range(tries):
            j = (i + k) % len(self)
            try:
                item = self._item(j, epoch)
            except VideoDecodeError as e:
                broken.append(e.path)
                if self.warn_broken and e.path not in self._warned:
                    self._warned.add(e.path)
                    warnings.warn(
                        f"skipping broken video {e.path} ({e.reason}); using the next one",
                        stacklevel=2,
                    )
                continue
            if self.augment is not None:
                item["frames"] = self._augmented(item["frames"], epoch, j)
            item["broken"] = broken
            return item
        raise VideoDecodeError(
            broken[-1],
            f"{len(broken)} consecutive videos from index {i} failed to decode: {broken}",
        )


class EvalVideoDataset(VideoDataset):
    """One whole video per item, every ``stride``-th frame, for evaluation and prediction.

    Item: ``frames`` uint8 ``[N, 3, H, W]`` (a view of channel-last memory), ``labels``
    int64 ``[N]`` (-1 where unknown), ``frame_indices`` int64 ``[N]``, ``video_id``,
    ``group``, ``split`` (``split`` if given, e.g. the role ``"train"``/``"val"``, else the
    index's split), ``set_name`` (``set_name`` if given, else the video's group). A video
    that cannot be decoded gives a ``broken`` marker item instead (see ``__getitem__``):
    evaluation leaves it out of every metric and lists it.
    """

    def __init__(
        self,
        index: VideoIndex,
        stride: int = 1,
        decode_size: Sequence[int] | None = None,
        set_name: str | None = None,
        split: str | None = None,
        num_threads: int = 1,
    ) -> None:
        super().__init__(index, decode_size, num_threads)
        self.stride_sampler = StrideSampler(stride)
        self.set_name = set_name
        self.split = index.split if split is None else split

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """The item, or for a video that cannot be decoded a marker without ``frames``:
        ``video_id``, ``group``, ``split``, ``set_name``, ``broken=True``, ``error`` (the
        reason, naming the file), so one bad file never stops an evaluation."""
        i, _ = _split_key(key)
        record = self.record(i)
        ids = {
            "video_id": record.id,
            "group": record.group,
            "split": self.split,
            "set_name": self.set_name if self.set_name is not None else record.group,
        }
        try:
            video = self.open(i)
            length = len(video)
            if length < 1:
                raise VideoDecodeError(self.path(i), "video has no frames")
            frame_indices = self.stride_sampler(length)
            frames = video.read(frame_indices)
        except VideoDecodeError as e:
            return {**ids, "broken": True, "error": str(e)}
        labels = self.labels(i, length)[frame_indices]
        return {
            "frames": _frames_to_tensor(frames),
            "labels": torch.from_numpy(np.ascontiguousarray(labels)),
            "frame_indices": torch.from_numpy(frame_indices),
            **ids,
        }


def collate_train(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack training items; ``broken`` lists are concatenated rather than transposed.

    ``frames`` are stacked in channel-last memory (a plain copy) and returned as a
    ``[B, V, T, 3, H, W]`` view, like the items' frames.
    """
    broken = [path for item in items for path in item.get("broken", [])]
    rest = [{k: v for k, v in it.items() if k not in ("broken", "frames")} for it in items]
    batch = default_collate(rest)
    batch["frames"] = _stack_frames([it["frames"] for it in items])
    batch["broken"] = broken
    return batch


def collate_eval(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Evaluation loaders use batch size 1 and yield the item itself (no batch dim), a
    ``broken`` marker included (it has no ``frames``, so no transform touches it)."""
    if len(items) != 1:
        raise ValueError(f"evaluation loaders need batch_size=1, got a batch of {len(items)}")
    return items[0]


class EpochSeededSampler(DistributedSampler):
    """DDP shard of a shuffled order seeded with ``seed + epoch``; yields ``(index, epoch)``.

    Created by the DataModule with ``num_replicas``/``rank`` from the trainer, so Lightning
    keeps it. :meth:`set_epoch` (called by Lightning each epoch) also sets
    ``dataset.epoch``; the epoch also travels with every index so that workers that were
    forked earlier (``persistent_workers``) still seed items with the right epoch.
    :meth:`resume_at` continues an epoch part-way: the next pass skips the items already seen.
    """

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if hasattr(self.dataset, "epoch"):
            self.dataset.epoch = int(epoch)

    def resume_at(self, epoch: int, seen: int) -> None:
        """Make the next pass the rest of ``epoch``: its first ``seen`` items (of this rank's
        shard) are skipped once, if that pass is still of ``epoch`` (a DataLoader without
        workers starts its pass at the first batch, possibly in the next epoch); later
        passes are whole epochs again."""
        if not 0 <= seen <= self.num_samples:
            raise ValueError(f"cannot skip {seen} items of an epoch of {self.num_samples}")
        self.set_epoch(epoch)
        self._resume = (int(epoch), int(seen))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, resume, self._resume = self.epoch, self._resume, None
        skip = resume[1] if resume is not None and resume[0] == epoch else 0
        order = list(super().__iter__())[skip:]
        return ((int(i), epoch) for i in order)


class SameGroupSampler(EpochSeededSampler):
    """Every run of ``batch_size`` indices it yields is of videos of one group (one action):
    with a DataLoader of that ``batch_size``, every batch holds videos of one action.

    As the reference's ``ActionBatchSampler``: each batch picks a group uniformly at random,
    then ``batch_size`` different videos of it; each rank draws ``ceil(N / world) //
    batch_size`` batches from its own stream, seeded by ``(seed, epoch, rank)``, so ranks
    never wait on each other, an epoch is reproducible and :meth:`resume_at` continues it.
    Only groups with at least ``batch_size`` videos are drawn.
    """

    def __init__(
        self,
        dataset: Dataset,
        groups: Sequence[str],
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        if len(groups) != len(dataset):
            raise ValueError(f"{len(groups)} groups for a dataset of {len(dataset)} videos")
        self.batch_size = int(batch_size)
        members: dict[str, list[int]] = {}
        for i, group in enumerate(groups):
            members.setdefault(str(group), []).append(i)
        self.members = [np.asarray(m) for m in members.values() if len(m) >= self.batch_size]
        if not self.members:
            sizes = {g: len(m) for g, m in members.items()}
            raise ConfigError(
                f"same-group batches of data.batch_size={self.batch_size} videos need a group "
                f"with that many training videos; the groups have {sizes}"
            )
        self.num_batches = math.ceil(len(dataset) / num_replicas) // self.batch_size
        if self.num_batches < 1:
            raise ConfigError(
                f"{len(dataset)} training videos over {num_replicas} rank(s) make no batch of "
                f"data.batch_size={self.batch_size}"
            )
        self.num_samples = self.num_batches * self.batch_size
        self.total_size = self.num_samples * num_replicas

    def __len__(self) -> int:
        return self.num_samples

    def _order(self, epoch: int) -> list[int]:
        rng = np.random.default_rng([self.seed, epoch, self.rank])
        picks = rng.integers(0, len(self.members), size=self.num_batches)
        return [
            int(i)
            for g in picks
            for i in self.members[g][rng.permutation(len(self.members[g]))[: self.batch_size]]
        ]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, resume, self._resume = self.epoch, self._resume, None
        skip = resume[1] if resume is not None and resume[0] == epoch else 0
        return ((i, epoch) for i in self._order(epoch)[skip:])


def _ignore(signum: int, frame: Any) -> None:
    """A handler that does nothing (not ``SIG_IGN``: an ignored signal is discarded before a
    thread can wait for it)."""


def _exit_when_parent_terminates(parent: int) -> None:
    """Worker thread: take every SIGTERM sent to this worker; exit when its parent (the
    DataLoader's process) sent it, as torch and multiprocessing do to stop workers. The exit
    status is 0: the worker did what its parent asked (torch's check of its workers would
    report any other status as a worker failure while the parent exits)."""
    while True:
        info = signal.sigwaitinfo({signal.SIGTERM})
        if info.si_pid == parent:
            os._exit(0)


def worker_leaves_signals_to_main(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: SIGTERM and SIGUSR1 (Lightning's Slurm requeue signal)
    are the main process's to handle, not a worker's.

    Slurm (and ``kill`` of a process group) signals every process of a job step. A forked
    worker would run the handlers it inherited: SIGTERM killed it mid-step, and SIGUSR1 made
    it save a checkpoint and talk over the rank's DDP connections, which hung the job. So a
    worker ignores SIGUSR1, and ignores SIGTERM *unless its parent sent it*: torch stops
    workers that do not finish in time with SIGTERM, and so does Python's exit for the
    workers still running (a worker that ignored those held its parent in ``join`` forever).
    The sender is known where the platform has ``sigwaitinfo`` (Linux); elsewhere a worker
    dies on SIGTERM, as torch's own workers do.
    """
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    if not hasattr(signal, "sigwaitinfo"):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        return
    parent = multiprocessing.parent_process()
    signal.signal(signal.SIGTERM, _ignore)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # threads started later too
    threading.Thread(
        target=_exit_when_parent_terminates,
        args=(parent.pid if parent is not None else os.getppid(),),
        name="mvf-worker-sigterm",
        daemon=True,
    ).start()


class TooManyBrokenVideosError(DataError, RuntimeError):
    """More training videos are unreadable than the configured tolerance allows."""


class BrokenVideoTracker:
    """Main-process record of broken training videos reported through items' ``broken`` lists.

    Tolerance: ``limit = max(max_broken_videos, floor(max_broken_fraction * num_videos))``
    broken files. Warns once per file; past the limit writes the list to ``list_path`` (if
    set) and raises :class:`TooManyBrokenVideosError` with one line saying how many, where
    the list is and which settings to change.
    """

    def __init__(
        self,
        num_videos: int,
        max_broken_fraction: float = 0.01,
        max_broken_videos: int = 3,
        list_path: str | None = None,
    ) -> None:
        if not 0.0 <= max_broken_fraction <= 1.0:
            raise ConfigError(f"max_broken_fraction must be in [0, 1], got {max_broken_fraction}")
        if max_broken_videos < 0:
            raise ConfigError(f"max_broken_videos must be >= 0, got {max_broken_videos}")
        self.num_videos = int(num_videos)
        self.max_broken_fraction = float(max_broken_fraction)
        self.max_broken_videos = int(max_broken_videos)
        self.list_path = list_path
        self.files: list[str] = []
        self._seen: set[str] = set()

    @property
    def limit(self) -> int:
        """Most broken files tolerated."""
        return max(self.max_broken_videos, math.floor(self.max_broken_fraction * self.num_videos))

    def describe_limit(self) -> str:
        return (
            f"{self.limit} allowed = max(data.max_broken_videos={self.max_broken_videos}, "
            f"data.max_broken_fraction={self.max_broken_fraction} x {self.num_videos})"
        )

    def add(self, paths: Sequence[str], warn: bool = True) -> list[str]:
        """Record ``paths``; returns the ones not seen before (warned about if ``warn``)."""
        new = [p for p in dict.fromkeys(paths) if p not in self._seen]
        for p in new:
            self._seen.add(p)
            self.files.append(p)
            if warn:
                warnings.warn(
                    f"broken training video {p} skipped "
                    f"({len(self.files)} so far, {self.describe_limit()})",
                    stacklevel=3,
                )
        return new

    def update(self, paths: Sequence[str]) -> None:
        if self.add(paths):
            self.check()

    def write_list(self) -> str | None:
        """Write the broken files, one per line, to ``list_path``; returns it (None if unset)."""
        if self.list_path is None:
            return None
        try:
            Path(self.list_path).parent.mkdir(parents=True, exist_ok=True)
            Path(self.list_path).write_text("".join(f"{p}\n" for p in self.files))
        except OSError:
            return None
        return self.list_path

    def check(self) -> None:
        """Raise :class:`TooManyBrokenVideosError` if more files are broken than allowed."""
        if len(self.files) <= self.limit:
            return
        where = self.write_list()
        names = ", ".join(os.path.basename(p) for p in self.files[:3])
        more = ", ..." if len(self.files) > 3 else ""
        listing = f"the list is in {where}" if where else f"they are: {', '.join(self.files)}"
        raise TooManyBrokenVideosError(
            f"{len(self.files)} of {self.num_videos} training videos cannot be read "
            f"({names}{more}), more than the {self.describe_limit()}; {listing}; fix or remove "
            "them from the index, or raise data.max_broken_videos / data.max_broken_fraction"
        )

    def state_dict(self) -> dict[str, Any]:
        return {"broken_videos": list(self.files)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.files = list(state.get("broken_videos", []))
        self._seen = set(self.files)

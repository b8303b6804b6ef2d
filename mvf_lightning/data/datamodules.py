"""LightningDataModules: which index to train on, which sets to evaluate, and the GPU transforms.

Constructor arguments are typed so LightningCLI exposes them in YAML. Training batches hold
uint8 frames from the workers and are augmented on the accelerator in
:meth:`VideoDataModule.on_after_batch_transfer`.

Evaluation design: ``val_dataloader``, ``test_dataloader`` and ``predict_dataloader`` each
return ONE loader over the whole videos of every evaluation set, train and val videos both
(phase classification is fitted on train-video embeddings). Each item names its
``set_name`` (e.g. a Penn Action action) and ``split`` (``"train"`` or ``"val"``: the role,
whatever the index split is called); :meth:`VideoDataModule.eval_sets` describes the sets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import ConcatDataset, DataLoader

from ..errors import ConfigError
from .augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalCrop,
    EvalTransform,
    TrainAugmentation,
    TrainAugmentationConfig,
)
from .contract import EvalFrames, FrameSampling, TrainingBatches, input_normalization
from .contract import training_batches as requested_batches
from .datasets import (
    BrokenVideoTracker,
    EpochSeededSampler,
    EvalVideoDataset,
    SameGroupSampler,
    TrainClipDataset,
    collate_eval,
    collate_train,
    worker_leaves_signals_to_main,
)
from .index import VideoIndex, load_split, require_dataset_root
from .probe import ProbeReport, check_training_videos, probe_cache_dir, warn_frame_mismatches
from .sampling import OffsetUniformSampler, TimeAugmentSampler, TimeWindow

if TYPE_CHECKING:
    from ..evaluation.protocol import EvalProtocol

__all__ = ["EvalSet", "VideoDataModule"]

EVAL_ROLES = ("train", "val")
_UNRESOLVED = object()
Auto = Literal["auto"]
"""A training-batch setting left to the model's loss (:class:`TrainingBatches`)."""


@dataclass(frozen=True)
class EvalSet:
    """One evaluation set: phase count and the ids of its train and val videos."""

    name: str
    num_classes: int
    train_ids: tuple[str, ...]
    val_ids: tuple[str, ...]


def _num_classes(indexes: list[VideoIndex]) -> int:
    top = -1
    for index in indexes:
        for video in index:
            if video.label_runs:
                top = max(top, max(r[0] for r in video.label_runs))
    return top + 1


class VideoDataModule(LightningDataModule):
    """Train on ``<root>/index/<train_split>.json``; evaluate on ``eval_root``'s two splits.

    Args (the less obvious ones):
        eval_root: dataset root of the evaluation sets (default: ``root``).
        eval_train_split / eval_val_split: index splits playing the train / val roles in
            evaluation; None for either disables evaluation loaders.
        eval_by_group: one evaluation set per group (Penn Action: per action); otherwise one
            set named ``eval_set_name``.
        groups: keep only these groups (training and evaluation); None keeps all.
        eval_groups: evaluate only these groups (e.g. K400's ``[baseball_pitch]``); None: all.
        decode_size: ``[height, width]`` to resize to while decoding; None keeps the stored size.
        eval_crop: ``native`` (the reference's: the centred ``crop_size`` square at the
            frame's own resolution) or ``resize`` (short side to ``crop_size``, then centre).
        mean / std: normalisation; None uses the backbone's own (:meth:`normalization`).
        min_scale / max_scale / view_overlap / time_window: :class:`TimeAugmentSampler`
            parameters (``time_window``: ``video`` scales the whole video, ``frames`` one
            view's frames, FineGym's rule).
        train_sampling / train_views / train_batches / train_labels: what a training batch
            holds: frame sampling (``time_augment``, ``offset_uniform``), views per video (1
            or 2), batch composition (``shuffled``, or ``same_group``: every batch of one
            group, i.e. one action) and whether it carries the frames' phase labels. ``auto``
            (default) takes what the model's loss asks for (SCL: two time-augmented views;
            TCN: one ``offset_uniform`` view of anchor / positive pairs; Classification:
            one view with labels; TCC: one view in same-action batches); a value set here
            must give the loss what it needs (checked when training starts).
        augmentation: per-view spatial augmentation (:class:`TrainAugmentationConfig`).
        max_broken_fraction / max_broken_videos: training stops when more than
            ``max(max_broken_videos, floor(max_broken_fraction * N))`` of its N training
            videos cannot be read.
        check_videos: before training, open every training video once (cached per index)
            to stop early if too many are broken and warn about frame-count mismatches.
        seed: seeds shuffling, frame sampling and augmentation (per seed, epoch, video);
            None (default): ``seed_everything``'s seed (the paper configs': 1, the
            reference's), or 0 when there is none.
        pin_memory: pin host memory (only takes effect when CUDA is available).
        augment_in_workers: run the training augmentation in the loader's workers (seeded
            per video) instead of on the device after transfer: pays when the device is the
            CPU, where the workers' augmentation overlaps with the training step (6 of 7
            measured runs, benchmarks/README.md); on a GPU, augmenting after transfer is the
            design (not measured).

    Broken training videos are skipped (the next video is used), warned about and kept in
    :attr:`broken_videos` (also saved in checkpoints through :meth:`state_dict`); when the
    up-front check finds more than the tolerance, training stops before its first step with
    one line naming the count and where the list is.
    An evaluation video that fails to decode becomes a ``broken`` marker item, left out of
    every metric and listed.
    """

    prepare_hint = "python -m mvf_lightning prepare <dataset> --out {root}"
    eval_name = "eval"
    """Dataset part of metric names, e.g. ``val/penn/baseball_pitch/kendalls_tau``."""
    alignment_stride = 2
    """The protocol's frame stride for Kendall's tau and retrieval (FineGym: 5)."""
    protocol_settings: ClassVar[dict[str, Any]] = {}
    """Dataset-specific :class:`~mvf_lightning.evaluation.protocol.EvalProtocol` settings."""
    stored_size: ClassVar[int | None] = None
    """The frame size (square) the paper configs expect the dataset stored at (Penn Action:
    224, as CARL's release and the reference's converter store it); with ``eval_crop:
    native``, evaluation warns once when the evaluation videos are stored at another size."""
    makes_its_data: ClassVar[bool] = False
    """True for a DataModule that creates its dataset itself (the demo); otherwise a missing
    dataset root is an error as soon as the DataModule is made."""

    def __init__(
        self,
        root: str,
        train_split: str = "train",
        eval_root: str | None = None,
        eval_train_split: str | None = "train",
        eval_val_split: str | None = "val",
        eval_by_group: bool = False,
        eval_set_name: str = "default",
        groups: list[str] | None = None,
        eval_groups: list[str] | None = None,
        num_frames: int = 80,
        batch_size: int = 1,
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = False,
        decode_size: list[int] | None = None,
        decode_threads: int = 1,
        eval_stride: int = 1,
        crop_size: int = 224,
        eval_crop: EvalCrop = "resize",
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        min_scale: float = 1.0,
        max_scale: float = 1.5,
        view_overlap: float = 0.2,
        time_window: TimeWindow = "video",
        train_sampling: FrameSampling | Auto = "auto",
        train_views: int | Auto = "auto",
        train_batches: Literal["auto", "shuffled", "same_group"] = "auto",
        train_labels: bool | Auto = "auto",
        augmentation: TrainAugmentationConfig = TrainAugmentationConfig(),
        max_broken_fraction: float = 0.01,
        max_broken_videos: int = 3,
        check_videos: bool = True,
        seed: int | None = None,
        augment_in_workers: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(augmentation, dict):
            augmentation = TrainAugmentationConfig(**augmentation)
        if not isinstance(augmentation, TrainAugmentationConfig):
            raise ConfigError(
                f"data.augmentation must be a TrainAugmentationConfig, got {augmentation!r}"
            )
        self.save_hyperparameters(ignore=["augmentation"])
        # plain values only: checkpoints load with torch.load(weights_only=True)
        self.hparams["augmentation"] = dataclasses.asdict(augmentation)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
        self.root = str(root)
        self.train_split = train_split
        self.eval_root = str(eval_root) if eval_root is not None else self.root
        self.eval_train_split = eval_train_split
        self.eval_val_split = eval_val_split
        self.eval_by_group = eval_by_group
        self.eval_set_name = eval_set_name
        self.groups = None if groups is None else list(groups)
        self.eval_groups = None if eval_groups is None else list(eval_groups)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory) and torch.cuda.is_available()
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.decode_size = None if decode_size is None else list(decode_size)
        self.decode_threads = int(decode_threads)
        self.eval_stride = int(eval_stride)
        self.max_broken_fraction = float(max_broken_fraction)
        self.max_broken_videos = int(max_broken_videos)
        self.check_videos = bool(check_videos)
        self._seed = None if seed is None else int(seed)
        self.augment_in_workers = bool(augment_in_workers)
        self.augmentation = augmentation
        if train_sampling not in ("auto", "time_augment", "offset_uniform"):
            raise ConfigError(
                "data.train_sampling must be auto, time_augment or offset_uniform, got "
                f"{train_sampling!r}"
            )
        if train_views not in ("auto", 1, 2):
            raise ConfigError(f"data.train_views must be auto, 1 or 2, got {train_views!r}")
        if train_batches not in ("auto", "shuffled", "same_group"):
            raise ConfigError(
                f"data.train_batches must be auto, shuffled or same_group, got {train_batches!r}"
            )
        if train_labels not in ("auto", True, False):
            raise ConfigError(f"data.train_labels must be auto, true or false, got "
                              f"{train_labels!r}")
        self.num_frames = int(num_frames)
        self.train_settings = {
            "frames": train_sampling, "views": train_views,
            "same_group": train_batches if train_batches == "auto"
            else train_batches == "same_group",
            "labels": train_labels,
        }
        self._time_augment = {
            "min_scale": min_scale, "max_scale": max_scale, "view_overlap": view_overlap,
            "window": time_window,
        }
        TimeAugmentSampler(num_frames, **self._time_augment)  # checks the settings now
        self._mean = None if mean is None else tuple(float(v) for v in mean)
        self._std = None if std is None else tuple(float(v) for v in std)
        self._stats_from: object = _UNRESOLVED
        start_mean, start_std = self._mean or IMAGENET_MEAN, self._std or IMAGENET_STD
        self.train_augment = TrainAugmentation.from_config(
            augmentation, crop_size=crop_size, mean=start_mean, std=start_std
        )
        self.eval_transform = EvalTransform(
            crop_size=crop_size, mean=start_mean, std=start_std, crop=eval_crop
        )
        self.train_dataset: TrainClipDataset | None = None
        self.eval_dataset: ConcatDataset | None = None
        self.broken = BrokenVideoTracker(0, self.max_broken_fraction, self.max_broken_videos)
        self._eval_indexes: dict[str, VideoIndex] | None = None
        if not self.makes_its_data:
            # Checked now, before the CLI builds the model (pretrained weights can take long).
            roots = [self.root]
            if self.eval_train_split is not None and self.eval_val_split is not None:
                roots.append(self.eval_root)
            for root in dict.fromkeys(roots):
                require_dataset_root(root, self.hint(root))

    # ------------------------------------------------------------------ normalisation
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` used for training and evaluation frames.

        Values given to the DataModule win; a ``None`` one is the model's own, asked through
        :class:`~mvf_lightning.data.contract.InputNormalization` (MV-Former: its backbone's,
        from timm's data config), or ImageNet's with one warning when the model does not say.
        """
        trainer = self._trainer_or_none()
        module = trainer.lightning_module if trainer is not None else None
        if self._stats_from is module and self._stats_from is not _UNRESOLVED:
            return self._resolved
        mean, std = self._mean, self._std
        if mean is None or std is None:
            own = input_normalization(module) if module is not None else None
            if own is None:
                if module is not None:
                    warnings.warn(
                        f"{type(module).__name__} does not say how its input is normalised "
                        "(input_normalization()): normalising frames with ImageNet's (set "
                        "data.mean and data.std to choose)",
                        stacklevel=2,
                    )
                own = (IMAGENET_MEAN, IMAGENET_STD)
            mean = mean or tuple(float(v) for v in own[0])
            std = std or tuple(float(v) for v in own[1])
        self.train_augment.set_normalization(mean, std)
        self.eval_transform.set_normalization(mean, std)
        self._resolved = (tuple(mean), tuple(std))
        self._stats_from = module
        return self._resolved

    def _trainer_or_none(self) -> Any:
        return self.trainer

    # ------------------------------------------------------------------ training batches
    @property
    def seed(self) -> int:
        """``data.seed``, else ``seed_everything``'s seed (Lightning keeps it in
        ``PL_GLOBAL_SEED``), else 0."""
        if self._seed is not None:
            return self._seed
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    def training_batches(self) -> TrainingBatches:
        """What each training batch holds: the model's loss's request (through
        :class:`~mvf_lightning.data.contract.TrainingRequest`), with the ``train_*`` settings
        that are not ``auto``; a setting that denies the loss what it needs is an error."""
        trainer = self._trainer_or_none()
        module = trainer.lightning_module if trainer is not None else None
        request = requested_batches(module)
        loss = type(getattr(module, "loss", None)).__name__ if module is not None else "loss"
        chosen = {k: v for k, v in self.train_settings.items() if v != "auto"}
        if "views" in chosen and chosen["views"] != request.views:
            raise ConfigError(
                f"data.train_views={chosen['views']} but model.loss {loss} trains on "
                f"{request.views} view(s) per video; leave data.train_views: auto"
            )
        if chosen.get("labels") is False and request.labels:
            raise ConfigError(
                f"data.train_labels=false but model.loss {loss} trains on phase labels"
            )
        batches = dataclasses.replace(request, **chosen)
        if batches.positive_window and batches.frames != "offset_uniform":
            raise ConfigError(
                f"model.loss {loss} draws anchor / positive pairs from offset_uniform sampling "
                f"(the reference's); data.train_sampling={batches.frames} cannot give them"
            )
        return batches

    @property
    def sampler(self) -> TimeAugmentSampler | OffsetUniformSampler:
        """The frame sampler of a training video, as :meth:`training_batches` says."""
        batches = self.training_batches()
        if batches.frames == "offset_uniform":
            if batches.views != 1:
                raise ConfigError(
                    "data.train_sampling=offset_uniform samples one view per video; the loss "
                    f"needs {batches.views}"
                )
            return OffsetUniformSampler(self.num_frames, batches.positive_window)
        return TimeAugmentSampler(self.num_frames, **self._time_augment, views=batches.views)

    # ------------------------------------------------------------------ indexes
    def hint(self, root: str) -> str:
        """The command that creates the missing index under ``root``."""
        return self.prepare_hint.format(root=root)

    def _load(self, root: str, split: str) -> VideoIndex:
        index = load_split(root, split, prepare_hint=self.hint(root))
        if self.groups is not None:
            missing = [g for g in self.groups if g not in index.groups]
            if missing:
                raise ConfigError(
                    f"groups {missing} not in {root}/index/{split}.json (it has {index.groups})"
                )
            keep = set(self.groups)
            index = VideoIndex(
                index.dataset, index.split, [v for v in index if v.group in keep], index.root
            )
        return index

    def eval_indexes(self) -> dict[str, VideoIndex]:
        """Evaluation indexes by role (``"train"``, ``"val"``); empty if evaluation is off."""
        if self._eval_indexes is None:
            if self.eval_train_split is None or self.eval_val_split is None:
                self._eval_indexes = {}
            else:
                splits = (self.eval_train_split, self.eval_val_split)
                self._eval_indexes = {
                    role: self._load(self.eval_root, split)
                    for role, split in zip(EVAL_ROLES, splits)
                }
        return self._eval_indexes

    def _eval_parts(self) -> list[tuple[str, str, VideoIndex]]:
        """``(set_name, role, index)`` for every evaluation set and role."""
        indexes = self.eval_indexes()
        if not indexes:
            return []
        if not self.eval_by_group:
            return [(self.eval_set_name, role, index) for role, index in indexes.items()]
        names = list(dict.fromkeys(g for index in indexes.values() for g in index.groups))
        if self.eval_groups is not None:
            missing = [g for g in self.eval_groups if g not in names]
            if missing:
                raise ConfigError(
                    f"eval groups {missing} not in {self.eval_root}/index "
                    f"{self.eval_train_split}/{self.eval_val_split} (it has {names})"
                )
            names = [g for g in names if g in self.eval_groups]
        return [
            (name, role, index.by_group(name)) for name in names for role, index in indexes.items()
        ]

    def eval_sets(self) -> dict[str, EvalSet]:
        """Evaluation sets: name -> :class:`EvalSet` (phase count, train ids, val ids)."""
        parts: dict[str, dict[str, VideoIndex]] = {}
        for name, role, index in self._eval_parts():
            parts.setdefault(name, {})[role] = index
        return {
            name: EvalSet(
                name=name,
                num_classes=_num_classes(list(by_role.values())),
                train_ids=tuple(v.id for v in by_role.get("train", [])),
                val_ids=tuple(v.id for v in by_role.get("val", [])),
            )
            for name, by_role in parts.items()
        }

    @property
    def eval_protocol(self) -> EvalProtocol:
        """How this dataset is evaluated: stride, probe, fractions, each set's phase count
        and train order (the callback, ``predict`` exports and ``evaluate`` all use it)."""
        from ..evaluation.protocol import EvalProtocol, SetSpec

        sets = tuple(
            SetSpec(s.name, s.num_classes, s.train_ids) for s in self.eval_sets().values()
        )
        settings = {"stride": self.alignment_stride, **self.protocol_settings}
        return EvalProtocol(sets=sets, **settings)

    # Settings that only shape training batches: they never change an evaluation frame.
    _TRAIN_ONLY = frozenset((
        "train_split", "num_frames", "batch_size", "num_workers", "pin_memory",
        "persistent_workers", "decode_threads", "min_scale", "max_scale", "view_overlap",
        "time_window", "augmentation", "max_broken_fraction", "max_broken_videos",
        "check_videos", "seed", "augment_in_workers", "train_sampling", "train_views",
        "train_batches", "train_labels",
    ))

    def eval_fingerprint(self) -> str:
        """A digest of everything that determines evaluation frames (settings other than
        training-only ones, the evaluation transform with its resolved normalisation, the
        evaluation indexes' content): equal fingerprints mean equal backbone inputs, so
        cached backbone features stay valid."""
        if getattr(self, "_indexes_digest", None) is None:
            indexes = {role: index.to_json() for role, index in self.eval_indexes().items()}
            text = json.dumps(indexes, sort_keys=True, default=str)
            self._indexes_digest = hashlib.sha256(text.encode()).hexdigest()
        transform = self.eval_transform
        state = {
            "class": type(self).__name__,
            "settings": {k: v for k, v in dict(self.hparams).items() if k not in self._TRAIN_ONLY},
            "transform": {
                "repr": repr(transform),
                "attributes": {k: v for k, v in vars(transform).items() if k[0] != "_"},
                "buffers": {k: b.tolist() for k, b in transform.named_buffers()},
            },
            "indexes": self._indexes_digest,
        }
        return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()

    def eval_frames(self, set_name: str, video_id: str) -> EvalFrames | None:
        """The frames of one val video of an evaluation set as evaluation sees them (for
        pictures); None if the video is not there or does not decode."""
        if self.eval_dataset is None:
            self.setup("validate")
        for part in self.eval_dataset.datasets if self.eval_dataset is not None else []:
            if (part.set_name, part.split) != (set_name, "val"):
                continue
            for i in range(len(part)):
                if part.record(i).id != video_id:
                    continue
                item = part[i]
                if item.get("broken") is True:
                    return None
                self.normalization()
                model_input = self.eval_transform(item["frames"])
                display = self.eval_transform.to_display(model_input)
                return EvalFrames(str(video_id), model_input, display)
        return None

    # ------------------------------------------------------------------ Lightning hooks
    def prepare_data(self) -> None:
        """Check the training videos once per node (the result is cached for :meth:`setup`)."""
        if self.check_videos:
            self._check_training_videos(self._load(self.root, self.train_split), warn=False)

    def _check_training_videos(self, index: VideoIndex, warn: bool = True) -> ProbeReport:
        """Open every training video (cached); warn about frame-count mismatches; stop with
        one line when more are unreadable than the tolerance allows."""
        cache = probe_cache_dir(self.root)
        report = check_training_videos(
            index, cache / f"{index.split}.jsonl", max(1, self.num_workers)
        )
        tracker = BrokenVideoTracker(
            len(index),
            self.max_broken_fraction,
            self.max_broken_videos,
            list_path=str(cache / f"{index.split}.broken.txt"),
        )
        tracker.add(list(report.broken), warn=False)
        tracker.check()  # too many: one line, before any warning or step
        if warn:
            where = f"{self.root}/index/{index.split}.json"
            if report.broken:
                names = ", ".join(os.path.basename(p) for p in list(report.broken)[:3])
                more = ", ..." if len(report.broken) > 3 else ""
                warnings.warn(
                    f"{where}: {len(report.broken)} of {len(index)} training videos cannot be "
                    f"read ({names}{more}; list in {tracker.write_list()}); they are skipped "
                    f"({tracker.describe_limit()})",
                    stacklevel=2,
                )
            warn_frame_mismatches(report, where)
            rank_zero_info(
                f"{where}: {len(index) - len(report.broken)} of {len(index)} training videos "
                f"readable; unreadable ones are skipped, up to {tracker.describe_limit()}"
            )
        return report

    def _warn_stored_size(self) -> None:
        """Warn once when ``eval_crop: native`` meets evaluation videos stored at another
        size than :attr:`stored_size` (the first video of each evaluation index is looked at)."""
        if (
            self.stored_size is None
            or self.eval_transform.crop != "native"
            or self.decode_size is not None
            or getattr(self, "_size_checked", False)
        ):
            return
        self._size_checked = True
        from .decode import VideoDecodeError, probe_video

        for index in self.eval_indexes().values():
            if not len(index):
                continue
            try:
                info = probe_video(index.video_path(index[0]))
            except VideoDecodeError:
                return  # reported where the video is evaluated
            if (info.height, info.width) != (self.stored_size, self.stored_size):
                rank_zero_warn(
                    f"{self.eval_root}/index/{index.split}.json: videos are stored at "
                    f"{info.width}x{info.height} (e.g. {index[0].path}), but data.eval_crop="
                    f"native expects the {self.stored_size}x{self.stored_size} frames the "
                    f"paper configs were made for: evaluation sees a central "
                    f"{self.eval_transform.crop_size} patch of a larger frame. Prepare the "
                    f"dataset again with --size {self.stored_size} (the default), or set "
                    "data.eval_crop: resize"
                )
                return

    def setup(self, stage: str | None = None) -> None:
        self.normalization()
        if stage in (None, "fit", "validate", "test"):
            self._warn_stored_size()
        if stage in (None, "fit") and self.train_dataset is None:
            index = self._load(self.root, self.train_split)
            if self.check_videos:
                report = self._check_training_videos(index)
                self.broken.add(list(report.broken), warn=False)
            self.train_dataset = TrainClipDataset(
                index,
                self.sampler,
                decode_size=self.decode_size,
                seed=self.seed,
                num_threads=self.decode_threads,
                warn_broken=False,  # reported once per file in the main process instead
                augment=self.train_augment if self.augment_in_workers else None,
                labels=self.training_batches().labels,
            )
        if self.eval_dataset is None:
            parts = [
                EvalVideoDataset(
                    index,
                    stride=self.eval_stride,
                    decode_size=self.decode_size,
                    set_name=name,
                    split=role,
                    num_threads=self.decode_threads,
                )
                for name, role, index in self._eval_parts()
                if len(index)
            ]
            self.eval_dataset = ConcatDataset(parts) if parts else None

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            self.setup("fit")
        world, rank = self._world()
        if self.training_batches().same_group:
            groups = [self.train_dataset.record(i).group for i in range(len(self.train_dataset))]
            sampler = SameGroupSampler(
                self.train_dataset, groups, self.batch_size, num_replicas=world, rank=rank,
                seed=self.seed,
            )
        else:
            sampler = EpochSeededSampler(
                self.train_dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed
            )
        # The tolerance is over the whole training set (the up-front check counts all of it).
        self.broken.num_videos = len(self.train_dataset)
        self.broken.list_path = str(
            probe_cache_dir(self.root) / f"{self.train_split}.broken.rank{rank}.txt"
        )
        return DataLoader(
            self.train_dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_train,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            worker_init_fn=worker_leaves_signals_to_main,
        )

    def _eval_loader(self) -> DataLoader | list:
        if self.eval_dataset is None:
            self.setup("validate")
        if self.eval_dataset is None:
            return []
        return DataLoader(
            self.eval_dataset,
            batch_size=1,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_eval,
            pin_memory=self.pin_memory,
            worker_init_fn=worker_leaves_signals_to_main,
        )

    def val_dataloader(self) -> DataLoader | list:
        """One loader over every evaluation set's train and val videos (see module doc)."""
        return self._eval_loader()

    def test_dataloader(self) -> DataLoader | list:
        return self._eval_loader()

    def predict_dataloader(self) -> DataLoader | list:
        return self._eval_loader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 frames -> normalised float frames, on the batch's device.

        Training batches (6-dim frames while the trainer trains, or with no trainer):
        :class:`TrainAugmentation`; anything else: :class:`EvalTransform`. The ``broken``
        list of training batches is removed here and fed to :attr:`broken`.
        """
        if not isinstance(batch, dict) or "frames" not in batch:
            return batch
        if "broken" in batch:
            broken = batch.pop("broken")
            if broken:
                self.broken.update(broken)
        frames = batch["frames"]
        self.normalization()
        trainer = self.trainer
        training = trainer.training if trainer is not None else True
        if frames.ndim == 6 and frames.is_floating_point():
            return batch  # training views augmented in the workers (augment_in_workers)
        if training and frames.ndim == 6:
            batch["frames"] = self.train_augment(frames)
        else:
            batch["frames"] = self.eval_transform(frames)
        return batch

    def state_dict(self) -> dict[str, Any]:
        return self.broken.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.broken.load_state_dict(state_dict)

    @property
    def broken_videos(self) -> list[str]:
        """Training files that failed to decode on this rank so far."""
        return list(self.broken.files)

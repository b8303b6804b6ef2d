"""The typed contract between the LightningModule, the DataModule and the callbacks.

The parts meet only through these interfaces, each a :class:`typing.Protocol` (checked with
``isinstance`` at run time), never by reading each other's attributes:

* :class:`EvaluationData`: what a DataModule provides for evaluation: the name of its
  metrics, its sets and protocol, the fingerprint of its evaluation frames (the feature
  cache's key) and the frames of one evaluation video (for the pictures).
* :class:`EvaluationIndexes`: the indexes behind the evaluation sets (the fit summary names
  two of their videos for ``align``).
* :class:`TrainingData`: the training videos that failed to decode (logged each epoch).
* :class:`InputNormalization`: what the DataModule needs of the model, the mean and std
  its frames are normalised with (the backbone's own).
* :class:`EvaluationModel`: what the media callback needs of the model, the LSTP attention
  of a whole video and the feature grid it lies on.
* :class:`TrainingRequest`: what the model's training loss needs its batches to hold
  (:class:`TrainingBatches`: views per video, frame sampling, labels, same-group batches);
  the DataModule's ``train_*`` settings left at ``auto`` follow it.

:class:`~mvf_lightning.data.datamodules.VideoDataModule` implements the first three and
:class:`~mvf_lightning.training.module.MVFormerModule` the others. Lightning-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..evaluation.protocol import EvalProtocol
    from .datamodules import EvalSet
    from .index import VideoIndex

__all__ = [
    "EvalFrames",
    "EvaluationData",
    "EvaluationIndexes",
    "EvaluationModel",
    "InputNormalization",
    "TrainingBatches",
    "TrainingData",
    "TrainingRequest",
    "evaluation_data",
    "evaluation_indexes",
    "evaluation_model",
    "input_normalization",
    "training_batches",
    "training_data",
]

FrameSampling = Literal["time_augment", "offset_uniform"]
"""How a training view's frames are chosen: MV-Former / CARL's ``time_augment`` (a random
block of the video, randomly thinned) or the reference's ``offset_uniform`` (sorted random
frames of the whole video), see :mod:`mvf_lightning.data.sampling`."""


@dataclass(frozen=True)
class TrainingBatches:
    """What a training loss needs its batches to hold."""

    views: int = 2
    """Views (frame samples) per video: 2 for SCL's and our TCC's augmented pairs, 1 else."""
    frames: FrameSampling = "time_augment"
    """How each view's frames are chosen."""
    positive_window: int = 0
    """> 0: every sampled step is followed by a positive step drawn from the
    ``positive_window`` frames before it (TCN's anchor / positive layout)."""
    labels: bool = False
    """Batches carry the frames' phase labels (``labels [B, V, T]``, -1 where unknown)."""
    same_group: bool = False
    """Every batch holds videos of one group (one action), as the reference trains TCC."""



@dataclass
class EvalFrames:
    """One evaluation video's frames as evaluation sees them: ``model_input`` float
    ``[N, 3, S, S]`` (cropped and normalised) and ``display`` uint8 ``[N, S, S, 3]`` (the
    same crop, for pictures)."""

    video_id: str
    model_input: torch.Tensor
    display: np.ndarray


@runtime_checkable
class EvaluationData(Protocol):
    """A DataModule that can be evaluated with the alignment protocol."""

    eval_name: str
    """The ``<dataset>`` part of metric names, e.g. ``penn`` in ``val/penn/<set>/<metric>``."""

    @property
    def eval_protocol(self) -> EvalProtocol:
        """How its sets are scored (stride, probe, fractions, phase counts, train order)."""

    def eval_sets(self) -> dict[str, EvalSet]:
        """Its evaluation sets by name, with their train and val video ids."""

    def eval_fingerprint(self) -> str:
        """A digest of everything that determines evaluation frames."""

    def eval_frames(self, set_name: str, video_id: str) -> EvalFrames | None:
        """The frames of one val video (None if it does not decode)."""


@runtime_checkable
class EvaluationIndexes(Protocol):
    """A DataModule whose evaluation sets come from video indexes."""

    def eval_indexes(self) -> dict[str, VideoIndex]:
        """The evaluation indexes by role (``"train"``, ``"val"``); empty if evaluation is
        off."""


@runtime_checkable
class TrainingData(Protocol):
    """A DataModule that reports training videos it could not decode."""

    @property
    def broken_videos(self) -> list[str]:
        """Training files that failed to decode on this rank so far."""


@runtime_checkable
class InputNormalization(Protocol):
    """A model that says how its input frames are normalised."""

    def input_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` per RGB channel of the frames it expects."""


@runtime_checkable
class EvaluationModel(Protocol):
    """A model whose LSTP attention can be shown."""

    def video_attention(self, frames: torch.Tensor) -> tuple[np.ndarray, tuple[int, int]] | None:
        """The attention of every entity token over the feature grid of a whole video
        (``frames [N, 3, S, S]`` as :attr:`EvalFrames.model_input`): ``(attention [N, K,
        h * w], (h, w))``, or None if the model has no spatial attention."""


@runtime_checkable
class TrainingRequest(Protocol):
    """A model that says what its training batches must hold."""

    def training_batches(self) -> TrainingBatches:
        """The batches its training loss needs."""


def evaluation_data(trainer: Any) -> EvaluationData | None:
    """The trainer's DataModule if it provides :class:`EvaluationData`, else None."""
    dm = trainer.datamodule if trainer is not None else None
    return dm if isinstance(dm, EvaluationData) else None


def evaluation_indexes(trainer: Any) -> EvaluationIndexes | None:
    """The trainer's DataModule if it provides :class:`EvaluationIndexes`, else None."""
    dm = trainer.datamodule if trainer is not None else None
    return dm if isinstance(dm, EvaluationIndexes) else None


def training_data(trainer: Any) -> TrainingData | None:
    """The trainer's DataModule if it provides :class:`TrainingData`, else None."""
    dm = trainer.datamodule if trainer is not None else None
    return dm if isinstance(dm, TrainingData) else None


def input_normalization(module: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``(mean, std)`` of a model that provides :class:`InputNormalization`, else None."""
    return module.input_normalization() if isinstance(module, InputNormalization) else None


def evaluation_model(module: Any) -> EvaluationModel | None:
    """The module if it provides :class:`EvaluationModel`, else None."""
    return module if isinstance(module, EvaluationModel) else None


def training_batches(module: Any) -> TrainingBatches:
    """What ``module``'s training needs (:class:`TrainingRequest`); two time-augmented views
    per video, no labels (SCL's) for a model that does not say."""
    return module.training_batches() if isinstance(module, TrainingRequest) else TrainingBatches()

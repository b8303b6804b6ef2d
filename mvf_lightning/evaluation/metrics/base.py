"""The alignment metrics as ``torchmetrics.Metric``s: whole videos in, one score out.

A metric collects one video per :meth:`VideoMetric.update` (its per-frame embeddings, its
per-frame phase labels where known, its id and whether it is a train video of the probe) and
scores all of them in :meth:`VideoMetric.compute` with the vectorised torch kernels of this
package. The state is synchronised across ranks by torchmetrics itself; each video is counted
once (by role and id) whatever the number of ranks or the sampler's padding. Every state is a
flat float32 list so that a rank without any video can take part in the synchronisation
(torchmetrics pads it with an empty float tensor): embeddings, labels (-1: unknown), four
numbers per video (frame count, width, role with 1 for train, length of its id) and its id
as UTF-8 bytes.

A subclass implements :meth:`VideoMetric.score` (train and val videos -> a float, or None when
the data cannot define the metric) and, for the evaluation protocol, :meth:`names` and
:meth:`for_protocol`; it is listed in ``metrics.METRIC_FAMILIES``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torchmetrics import Metric

from ._inputs import ArrayLike

if TYPE_CHECKING:
    from ..protocol import EvalProtocol, SetSpec

__all__ = ["Video", "VideoMetric"]

_STATES = ("values", "labels", "meta", "id_bytes")


@dataclass(frozen=True)
class Video:
    """One collected video: id, role, embeddings ``[N, D]`` and labels ``[N]`` (int64)."""

    video_id: str
    train: bool
    embeddings: torch.Tensor
    labels: torch.Tensor

    @property
    def labelled(self) -> bool:
        return bool((self.labels >= 0).any())


class VideoMetric(Metric):
    """Base of the alignment metrics (see the module doc).

    Args:
        train_order: video ids in the order the probe's "first f N train videos" are taken
            (the dataset's train order); train videos not listed follow in id order. Default:
            id order.
        kwargs: torchmetrics' own ``Metric`` arguments (``process_group``, ...).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, *, train_order: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.train_order = None if train_order is None else tuple(str(v) for v in train_order)
        for name in _STATES:
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.defined: bool | None = None
        """Whether the last :meth:`compute` had data that defines the metric."""

    # ------------------------------------------------------------------ collecting
    def update(
        self,
        embeddings: ArrayLike,
        labels: ArrayLike | None = None,
        *,
        video_id: str,
        train: bool = False,
    ) -> None:
        """Add one video: ``embeddings [N, D]``, per-frame ``labels [N]`` (-1 or None:
        unknown), its ``video_id`` and whether it is a train video of the probe."""
        emb = torch.as_tensor(embeddings, device=self.device).detach()
        if emb.ndim != 2:
            raise ValueError(
                f"{type(self).__name__}.update: embeddings must be [frames, dim], got "
                f"{list(emb.shape)}"
            )
        n, dim = emb.shape
        if labels is None:
            lab = torch.full((n,), -1.0, device=self.device)
        else:
            lab = torch.as_tensor(labels, device=self.device).detach().reshape(-1)
            if lab.shape[0] != n:
                raise ValueError(
                    f"{type(self).__name__}.update: {lab.shape[0]} labels for {n} frames of "
                    f"video {video_id!r}"
                )
        name = str(video_id).encode("utf-8")
        self.values.append(emb.reshape(-1).float())
        self.labels.append(lab.float())
        self.meta.append(torch.tensor([n, dim, 1.0 if train else 0.0, len(name)],
                                      dtype=torch.float32, device=self.device))
        self.id_bytes.append(torch.frombuffer(bytearray(name), dtype=torch.uint8)
                             .to(self.device, torch.float32))

    def videos(self) -> tuple[list[Video], list[Video]]:
        """``(train videos in the probe's order, val videos in id order)``, each once."""
        states = {name: _flat(getattr(self, name), self.device) for name in _STATES}
        meta = states["meta"].reshape(-1, 4).long().tolist()
        counts = [m[0] for m in meta]
        values = torch.split(states["values"], [m[0] * m[1] for m in meta])
        labels = torch.split(states["labels"].long(), counts)
        names = bytes(states["id_bytes"].to(torch.uint8).cpu().tolist())
        unique: dict[tuple[bool, str], Video] = {}
        start = 0
        for i, (n, d, role, size) in enumerate(meta):
            video_id = names[start : start + size].decode("utf-8")
            start += size
            train = role == 1
            unique.setdefault(
                (train, video_id),
                Video(video_id, train, values[i].reshape(n, d), labels[i]),
            )
        val = sorted((v for v in unique.values() if not v.train), key=lambda v: v.video_id)
        train = sorted((v for v in unique.values() if v.train), key=lambda v: v.video_id)
        if self.train_order:
            rank = {vid: i for i, vid in enumerate(self.train_order)}
            train.sort(key=lambda v: rank.get(v.video_id, len(rank)))
        return train, val

    # ------------------------------------------------------------------ scoring
    def score(self, train: list[Video], val: list[Video]) -> float | None:
        """The metric of these videos, or None when they cannot define it."""
        raise NotImplementedError

    def compute(self) -> torch.Tensor:
        """The metric over every video collected on every rank (NaN when undefined)."""
        value = self.score(*self.videos())
        self.defined = value is not None
        return torch.tensor(math.nan if value is None else float(value), dtype=torch.float64)

    # ------------------------------------------------------------------ the protocol
    @classmethod
    def names(cls, protocol: EvalProtocol) -> list[str]:
        """The metric names this family reports under ``protocol``, in table order."""
        raise NotImplementedError

    @classmethod
    def for_protocol(cls, protocol: EvalProtocol, spec: SetSpec | None) -> dict[str, VideoMetric]:
        """One metric per name of :meth:`names`, set up for one evaluation set."""
        raise NotImplementedError


def _flat(state: Any, device: torch.device) -> torch.Tensor:
    """A list state (before synchronisation) or its concatenation (after) as one tensor."""
    if isinstance(state, torch.Tensor):
        return state.reshape(-1)
    if not state:
        return torch.zeros(0, device=device)
    return torch.cat([s.reshape(-1) for s in state])


def with_labels(videos: list[Video]) -> bool:
    """Whether any of ``videos`` has a known phase label."""
    return any(v.labelled for v in videos)


def top_label(videos: list[Video]) -> int:
    """The largest phase label among ``videos`` (-1 without any)."""
    return max((int(v.labels.max()) for v in videos if v.labels.numel()), default=-1)

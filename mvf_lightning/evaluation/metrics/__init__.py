"""Frame-level evaluation metrics of the MV-Former / CARL protocol: pure torch kernels, and
the same metrics as ``torchmetrics.Metric`` classes (:class:`KendallsTau`,
:class:`RetrievalAP`, :class:`PhaseClassification`, :class:`PhaseProgression`; see
``base.py``) that collect whole videos, synchronise across ranks and score them.

**A new metric** is one module here (its kernel and a :class:`~.base.VideoMetric` subclass)
plus one entry in :data:`METRIC_FAMILIES`, the one table the evaluation protocol reads.

Every function takes lists of per-video arrays (numpy or torch, on any device) and
computes with torch on the inputs' device (the first CUDA device among them, else
CPU), in float64 (the SGD probe in float32, as the reference). No scikit-learn or scipy
at run time; the tests check agreement
with the scipy / scikit-learn formulations. See ``docs/architecture.md`` and the
"Evaluation protocol" of the reference for the definitions.

One module per metric: ``tau``, ``retrieval``, ``classification`` (logistic-regression
probe), ``sgd_probe`` (FineGym's SGD probe), ``progression``; shared input handling in
``_inputs`` and the nearest-neighbour search in ``_neighbours``.

Conventions shared by all metrics:

* Frames whose label is ``< 0`` are dropped first (before striding); the frame
  index ``t`` used by the progression targets counts the kept frames only.
* ``stride`` (Kendall's tau, retrieval) keeps frames ``0, s, 2s, ...`` of the
  (label-filtered) sequence, for queries and candidates alike. If the embeddings
  were already sub-sampled by the data loader, pass ``stride=1``.
* Classification accuracy and retrieval precision are fractions in ``[0, 1]``.
* A metric that is undefined for the given data (e.g. Kendall's tau with fewer
  than two videos) is ``nan``, never an exception; malformed inputs raise
  :class:`ValueError`.
"""


from __future__ import annotations

from ._inputs import ArrayLike
from .base import Video, VideoMetric
from .classification import PhaseClassification, phase_classification
from .progression import PhaseProgression, phase_progression, progression_targets
from .retrieval import RetrievalAP, retrieval_ap, retrieval_ap_at
from .sgd_probe import SGDProbeSettings, phase_classification_sgd
from .tau import KendallsTau, kendalls_tau

METRIC_FAMILIES: dict[str, type[VideoMetric]] = {
    "phase_classification": PhaseClassification,
    "phase_progression": PhaseProgression,
    "kendalls_tau": KendallsTau,
    "retrieval_ap": RetrievalAP,
}
"""The evaluation protocol's metric families, in table order: ``EvalProtocol.metrics``
chooses among these names; each class names its metrics and builds them for a set."""

__all__ = [
    "METRIC_FAMILIES",
    "ArrayLike",
    "KendallsTau",
    "PhaseClassification",
    "PhaseProgression",
    "RetrievalAP",
    "SGDProbeSettings",
    "Video",
    "VideoMetric",
    "kendalls_tau",
    "phase_classification",
    "phase_classification_sgd",
    "phase_progression",
    "progression_targets",
    "retrieval_ap",
    "retrieval_ap_at",
]

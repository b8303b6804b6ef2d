"""The evaluation protocol: what is scored, how, and under which names. No Lightning.

The per-video record is :class:`~.records.VideoEmbedding`; here: the protocol's settings
(:class:`EvalProtocol`, supplied by the DataModule and recorded in embedding exports),
the scoring of one set and of all sets (:func:`score_set`, :func:`score_sets`), the mean
over sets, the printed table and the results JSON. The training callback, ``evaluate`` and
``results`` all call this code, so they report the same metric names and values.

Metric names (``<stage>/<dataset>/<set>/<name>`` when logged, ``<set>`` = ``mean`` for the
mean over sets): ``phase_classification_logreg@<f>`` (logistic regression, Penn Action /
Pouring) or ``phase_classification_sgd@<f>`` (FineGym's SGD probe) for each train fraction
``f`` (``1.0``, ``0.5``, ``0.1``), ``phase_progression``, ``kendalls_tau``,
``retrieval_ap@<K>``. Broken videos (failed to decode) are left out of every metric and
listed; their count is logged as ``<stage>/<dataset>/broken_videos``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..utils.atomic import atomic_path
from .metrics import METRIC_FAMILIES as _FAMILY_CLASSES
from .metrics import VideoMetric
from .metrics.classification import PROBES
from .metrics.sgd_probe import SGDProbeSettings
from .records import VideoEmbedding

METRIC_FAMILIES = tuple(_FAMILY_CLASSES)
"""The metric families, in table order (``metrics.METRIC_FAMILIES``, the one table)."""
TAU_FRAMES = ("labelled", "all")
RESULTS_FORMAT = "mvf_lightning.evaluation_results"
RESULTS_VERSION = 1
MEAN = "mean"


@dataclass(frozen=True)
class SetSpec:
    """What the protocol knows of one evaluation set beyond its videos."""

    name: str
    num_classes: int = 0
    """Phase count (the SGD probe's width, progression's targets); 0: largest label + 1."""
    train_ids: tuple[str, ...] = ()
    """Order of the train videos ("the first f N"); empty: the order they come in."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_ids", tuple(str(i) for i in self.train_ids))
        object.__setattr__(self, "num_classes", int(self.num_classes))


def fraction_name(fraction: float) -> str:
    """``1.0`` -> ``"1.0"``, ``0.25`` -> ``"0.25"``."""
    text = f"{float(fraction):g}"
    return text if any(c in text for c in ".e") else f"{text}.0"


@dataclass(frozen=True)
class EvalProtocol:
    """How a dataset is evaluated (defaults: Penn Action's; see ``mvformer.md``).

    Attributes:
        stride: every ``stride``-th frame for Kendall's tau and retrieval (after dropping
            unlabelled frames).
        probe: phase classification probe, ``logreg`` (logistic regression, C = 1) or
            ``sgd`` (FineGym's linear layer trained by SGD, settings in ``sgd``).
        fractions: shares of the train videos the probe is fitted on.
        ap_ks: K values of retrieval AP@K.
        metrics: which of the four metric families to compute.
        tau_frames: ``labelled``: frames labelled < 0 are dropped before Kendall's tau
            (videos without any label keep all frames); ``all``: every frame.
        sets: per-set phase counts and train order (from the DataModule's indexes).
        sgd: the SGD probe's hyperparameters.
    """

    stride: int = 2
    probe: str = "logreg"
    fractions: tuple[float, ...] = (1.0,)
    ap_ks: tuple[int, ...] = (5, 10, 15)
    metrics: tuple[str, ...] = METRIC_FAMILIES
    tau_frames: str = "labelled"
    sets: tuple[SetSpec, ...] = ()
    sgd: SGDProbeSettings = field(default_factory=SGDProbeSettings)

    def __post_init__(self) -> None:
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        fix("fractions", tuple(float(f) for f in self.fractions))
        fix("ap_ks", tuple(int(k) for k in self.ap_ks))
        fix("metrics", tuple(self.metrics))
        fix("sets", tuple(s if isinstance(s, SetSpec) else SetSpec(**s) for s in self.sets))
        if isinstance(self.sgd, Mapping):
            fix("sgd", SGDProbeSettings(**self.sgd))
        if isinstance(self.stride, bool) or int(self.stride) != self.stride or self.stride < 1:
            raise ConfigError(
                f"EvalProtocol.stride must be a positive integer, got {self.stride!r}"
            )
        fix("stride", int(self.stride))
        if self.probe not in PROBES:
            raise ConfigError(f"EvalProtocol.probe must be one of {PROBES}, got {self.probe!r}")
        bad = [f for f in self.fractions if not 0.0 < f <= 1.0]
        if bad or not self.fractions:
            raise ConfigError(
                f"EvalProtocol.fractions must lie in (0, 1], got {list(self.fractions)}"
            )
        if not self.ap_ks or any(k < 1 for k in self.ap_ks):
            raise ConfigError(f"EvalProtocol.ap_ks must be positive integers, got {self.ap_ks}")
        unknown = sorted(set(self.metrics) - set(METRIC_FAMILIES))
        if unknown:
            raise ConfigError(f"EvalProtocol.metrics: unknown {unknown}; valid: {METRIC_FAMILIES}")
        if self.tau_frames not in TAU_FRAMES:
            raise ConfigError(f"EvalProtocol.tau_frames must be one of {TAU_FRAMES}")

    # ------------------------------------------------------------------ names
    def classification_name(self, fraction: float) -> str:
        return f"phase_classification_{self.probe}@{fraction_name(fraction)}"

    def metric_names(self) -> list[str]:
        """Every metric name this protocol can report, in table order."""
        return [name for family, cls in _FAMILY_CLASSES.items() if family in self.metrics
                for name in cls.names(self)]

    def set_metrics(self, spec: SetSpec | None = None) -> dict[str, VideoMetric]:
        """Fresh metrics (``torchmetrics.Metric``) of one evaluation set, by name; a metric
        computing several names (AP@K for every K) is listed once."""
        out: dict[str, VideoMetric] = {}
        for family, cls in _FAMILY_CLASSES.items():
            if family in self.metrics:
                out.update(cls.for_protocol(self, spec))
        return out

    def set_spec(self, name: str) -> SetSpec | None:
        return next((s for s in self.sets if s.name == name), None)

    # ------------------------------------------------------------------ (de)serialisation
    def replace(self, **overrides: Any) -> EvalProtocol:
        """A copy with the given settings; ``None`` values leave a setting as it is."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **given) if given else self

    def with_world_size(self, world_size: int) -> EvalProtocol:
        """The protocol as run on ``world_size`` processes (the SGD probe's minimum subset)."""
        if self.sgd.world_size == world_size:
            return self
        return dataclasses.replace(
            self, sgd=dataclasses.replace(self.sgd, world_size=int(world_size))
        )

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("fractions", "ap_ks", "metrics"):
            out[key] = list(out[key])
        out["sets"] = [{**s, "train_ids": list(s["train_ids"])} for s in out["sets"]]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "protocol") -> EvalProtocol:
        """Inverse of :meth:`to_json`; unknown keys or bad values raise one clear line."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; valid: {sorted(known)}")
        try:
            return cls(**data)
        except TypeError as e:
            raise ConfigError(f"{where}: {e}") from e


# ---------------------------------------------------------------------- scoring


@dataclass
class EvalResults:
    """Metrics per set and their mean over sets, plus the videos left out as broken."""

    sets: dict[str, dict[str, float]]
    mean: dict[str, float]
    broken: list[VideoEmbedding]

    def table(self) -> dict[str, dict[str, float]]:
        """``{set: {metric: value}, ..., "mean": {...}}`` (empty if nothing was scored)."""
        return {**self.sets, MEAN: self.mean} if self.sets else {}


def computed_values(metrics: Mapping[str, VideoMetric]) -> dict[str, float]:
    """``compute()`` of each metric as ``{name: value}``, leaving out the metrics the data
    could not define (a metric computing several names contributes each)."""
    out: dict[str, float] = {}
    for name, metric in metrics.items():
        value = metric.compute()
        if not metric.defined:
            continue
        if isinstance(value, Mapping):
            out.update({k: float(v) for k, v in value.items()})
        else:
            out[name] = float(value)
    return out


def score_set(
    videos: Sequence[VideoEmbedding],
    protocol: EvalProtocol,
    spec: SetSpec | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """The protocol's metrics of one set from its train and val videos (broken ones are
    skipped), in :meth:`EvalProtocol.metric_names` order; a metric the data cannot define
    (no labels, no train videos, a single val video) is absent. Computed by the metric
    classes (:meth:`EvalProtocol.set_metrics`): val videos are taken in id order and train
    videos in ``spec.train_ids`` order (else in id order), so the same videos give the same
    numbers whichever order they arrive in."""
    metrics = protocol.set_metrics(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for metric in metrics.values():
            metric.to(device)
            for v in videos:
                if not v.broken:
                    metric.update(v.embeddings, v.labels, video_id=v.video_id,
                                  train=v.split == "train")
        out = computed_values(metrics)
    return {name: out[name] for name in protocol.metric_names() if name in out}


def mean_over_sets(results: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over the sets that have it (NaN values ignored)."""
    names = list(dict.fromkeys(k for r in results.values() for k in r))
    mean = {}
    for name in names:
        values = [r[name] for r in results.values() if name in r and not math.isnan(r[name])]
        mean[name] = float(np.mean(values)) if values else float("nan")
    return mean


def score_sets(
    videos: Sequence[VideoEmbedding],
    protocol: EvalProtocol,
    device: torch.device | str = "cpu",
) -> EvalResults:
    """Every set's metrics (sets in name order), their mean, and the broken videos."""
    by_set: dict[str, list[VideoEmbedding]] = {}
    for v in videos:
        by_set.setdefault(v.set_name, []).append(v)
    sets = {}
    for name in sorted(by_set):
        scores = score_set(by_set[name], protocol, protocol.set_spec(name), device)
        if scores:
            sets[name] = scores
    broken = sorted((v for v in videos if v.broken), key=lambda v: v.key)
    return EvalResults(sets=sets, mean=mean_over_sets(sets), broken=broken)


# ---------------------------------------------------------------------- reporting


def format_table(
    results: Mapping[str, Mapping[str, float]],
    title: str = "",
    broken: Sequence[VideoEmbedding] = (),
) -> str:
    """A plain-text table, one row per set (``mean`` last), one column per metric, then the
    broken videos that were left out."""
    names = list(dict.fromkeys(k for r in results.values() for k in r))
    rows = [["set", *names]]
    for set_name, r in results.items():
        rows.append([set_name, *(f"{r[n]:.4f}" if n in r else "-" for n in names)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [title] if title else []
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                               for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0 or (i == len(rows) - 2 and rows[-1][0] == MEAN):
            lines.append("  ".join("-" * w for w in widths))
    if broken:
        lines.append(f"{len(broken)} broken video(s) left out of every metric:")
        lines += [f"  {v.set_name}/{v.split}/{v.video_id}: {v.error}" for v in broken]
    return "\n".join(lines)


def results_from_metrics(
    metrics: Mapping[str, float], stage: str, dataset: str
) -> dict[str, dict[str, float]]:
    """Regroup logged scalars ``<stage>/<dataset>/<set>/<metric>`` as ``{set: {metric: v}}``
    (``mean`` included, last); other keys are ignored."""
    prefix = f"{stage}/{dataset}/"
    out: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if not key.startswith(prefix) or "/" not in key[len(prefix):]:
            continue
        set_name, metric = key[len(prefix):].rsplit("/", 1)
        out.setdefault(set_name, {})[metric] = float(value)
    if MEAN in out:
        out[MEAN] = out.pop(MEAN)
    return out


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def results_payload(
    results: EvalResults,
    protocol: EvalProtocol,
    *,
    stage: str,
    dataset: str,
    epoch: int | None = None,
    global_step: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The results JSON (format in ``docs/architecture.md``); NaN becomes null."""
    return {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "stage": stage,
        "epoch": epoch,
        "global_step": global_step,
        "dataset": dataset,
        "sets": {s: {k: _json_number(v) for k, v in r.items()} for s, r in results.sets.items()},
        "mean": {k: _json_number(v) for k, v in results.mean.items()},
        "broken_videos": [
            {"set_name": v.set_name, "split": v.split, "video_id": v.video_id, "error": v.error}
            for v in results.broken
        ],
        "protocol": protocol.to_json(),
        **extra,
    }


def write_results(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write a results JSON atomically (a reader never sees half a file)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


def results_path(folder: str | Path, stage: str, epoch: int) -> Path:
    """``<folder>/evaluation/<stage>_epoch<EEEE>.json``."""
    return Path(folder) / "evaluation" / f"{stage}_epoch{int(epoch):04d}.json"

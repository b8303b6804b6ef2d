"""Lightning callback that turns the evaluation loop's per-video embeddings into the four
alignment metrics, per evaluation set and averaged over sets, and logs them.

The module's ``validation_step`` / ``test_step`` embed one whole video each and return its
L2-normalised embeddings with ``labels``, ``video_id``, ``set_name`` and ``split``. This
callback collects them, gathers them from every DDP rank (each video counted once, even when
a distributed sampler padded the shards), and computes the metrics identically on every rank,
so checkpoint and early-stopping monitors see the same numbers everywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info

from .feature_cache import FeatureCache
from .metrics import kendalls_tau, phase_classification, phase_progression, retrieval_ap_at

METRICS = ("phase_classification", "phase_progression", "kendalls_tau", "retrieval_ap")


@dataclass
class VideoEmbedding:
    """One evaluated video: its set, its role (``train`` / ``val``) and per-frame arrays."""

    set_name: str
    split: str
    video_id: str
    embeddings: np.ndarray  # [N, E] float32
    labels: np.ndarray  # [N] int64, -1 = unlabelled

    @property
    def key(self) -> tuple[str, str, str]:
        return self.set_name, self.split, self.video_id


_EVAL_SETTINGS = ("root", "eval_root", "eval_train_split", "eval_val_split", "groups",
                  "decode_size", "eval_stride", "crop_size", "mean", "std")


def _eval_settings(datamodule: Any) -> dict:
    """What determines evaluation frames: data settings and the eval indexes' content."""
    if datamodule is None:
        return {}
    hparams = dict(getattr(datamodule, "hparams", {}) or {})
    out = {k: hparams[k] for k in _EVAL_SETTINGS if k in hparams}
    out["class"] = type(datamodule).__name__
    if hasattr(datamodule, "eval_indexes"):
        out["indexes"] = {
            role: hashlib.sha256(json.dumps(index.to_json(), sort_keys=True).encode()).hexdigest()
            for role, index in datamodule.eval_indexes().items()
        }
    return json.loads(json.dumps(out, default=str))


def _classification_name(fraction: float) -> str:
    return "phase_classification" if fraction == 1.0 else f"phase_classification_{fraction:g}"


def compute_set_metrics(
    videos: list[VideoEmbedding],
    num_classes: int | None = None,
    stride: int = 2,
    ap_ks: Sequence[int] = (5, 10, 15),
    fractions: Sequence[float] = (1.0,),
    metrics: Sequence[str] = METRICS,
    train_order: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """The protocol's metrics for one evaluation set from its train and val videos,
    computed with torch on ``device`` (the accelerator during training).

    ``train_order`` fixes which train videos count as "the first" for fractions < 1.
    Frames labelled < 0 are dropped first, for every metric.
    """
    train = [v for v in videos if v.split == "train"]
    val = [v for v in videos if v.split == "val"]
    if train_order is not None:
        rank = {vid: i for i, vid in enumerate(train_order)}
        train.sort(key=lambda v: rank.get(v.video_id, len(rank)))
    out: dict[str, float] = {}
    if not val:
        return out
    def on_device(videos: list[VideoEmbedding]) -> tuple[list, list]:
        embs = [torch.as_tensor(v.embeddings, device=device) for v in videos]
        labels = [torch.as_tensor(v.labels, device=device) for v in videos]
        return embs, labels

    val_embs, val_labels = on_device(val)
    labelled = any((v.labels >= 0).any() for v in val)
    if "kendalls_tau" in metrics and len(val) > 1:
        tau_embs = (
            [e[lab >= 0] for e, lab in zip(val_embs, val_labels)] if labelled else val_embs
        )
        out["kendalls_tau"] = kendalls_tau(tau_embs, stride=stride)
    if not labelled:
        return out
    if "retrieval_ap" in metrics and len(val) > 1:
        for k, value in retrieval_ap_at(val_embs, val_labels, list(ap_ks), stride=stride).items():
            out[f"retrieval_ap@{k}"] = value
    if train and any((v.labels >= 0).any() for v in train):
        train_embs, train_labels = on_device(train)
        if "phase_classification" in metrics:
            for f in fractions:
                out[_classification_name(f)] = phase_classification(
                    train_embs, train_labels, val_embs, val_labels, fraction=f
                )
        if "phase_progression" in metrics:
            if num_classes is None:
                num_classes = int(max(int(v.labels.max()) for v in train + val)) + 1
            out["phase_progression"] = phase_progression(
                train_embs, train_labels, val_embs, val_labels, num_classes=num_classes
            )
    return out


def mean_over_sets(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over the sets that have it (NaN values ignored)."""
    names = list(dict.fromkeys(k for r in results.values() for k in r))
    mean = {}
    for name in names:
        values = [r[name] for r in results.values() if name in r and not math.isnan(r[name])]
        mean[name] = float(np.mean(values)) if values else float("nan")
    return mean


def format_table(results: dict[str, dict[str, float]], title: str = "") -> str:
    """A plain-text table, one row per set, one column per metric."""
    names = list(dict.fromkeys(k for r in results.values() for k in r))
    rows = [["set", *names]]
    for set_name, r in results.items():
        rows.append([set_name, *(f"{r[n]:.4f}" if n in r else "-" for n in names)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [title] if title else []
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                               for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0 or (i == len(rows) - 2 and rows[-1][0] == "mean"):
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


class AlignmentEvaluation(pl.Callback):
    """Phase classification, phase progression, Kendall's tau and retrieval AP@K after each
    evaluation loop, logged as ``<stage>/<dataset>/<set>/<metric>`` and
    ``<stage>/<dataset>/mean/<metric>``.

    Args:
        dataset_name: the ``<dataset>`` part of the names; default from the DataModule.
        stride: frame stride for Kendall's tau and retrieval; default: the DataModule's
            ``alignment_stride`` (the protocol's: Penn Action 2, FineGym 5).
        ap_ks: K values of retrieval AP@K.
        fractions: shares of train videos for phase classification.
        metrics: which of the four metric families to compute.
        print_table: print a table of the results (rank 0) after validate / test and at the
            end of fit.
        feature_cache: keep frozen-backbone features of evaluation videos so that later
            evaluations run only the trainable part: ``off``, ``memory``, ``disk`` or ``both``.
        cache_dir: folder of the disk cache (default ``~/.cache/mvf_lightning/features``).
        cache_max_memory_gb / cache_max_disk_gb: budgets; videos beyond them are recomputed.
    """

    def __init__(
        self,
        dataset_name: str | None = None,
        stride: int | None = None,
        ap_ks: list[int] | None = None,
        fractions: list[float] | None = None,
        metrics: list[str] | None = None,
        print_table: bool = True,
        feature_cache: str = "memory",
        cache_dir: str | None = None,
        cache_max_memory_gb: float = 4.0,
        cache_max_disk_gb: float = 20.0,
    ) -> None:
        super().__init__()
        self.dataset_name = dataset_name
        self.stride = None if stride is None else int(stride)
        self.ap_ks = list(ap_ks or [5, 10, 15])
        self.fractions = list(fractions or [1.0])
        self.metrics = list(metrics or METRICS)
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown:
            raise ValueError(f"AlignmentEvaluation.metrics: unknown {unknown}; valid: {METRICS}")
        self.print_table = print_table
        if feature_cache not in ("off", "memory", "disk", "both"):
            raise ValueError(
                f"AlignmentEvaluation.feature_cache={feature_cache!r}: use off|memory|disk|both"
            )
        self.feature_cache = feature_cache
        self.cache_dir = cache_dir
        self.cache_max_memory_gb = cache_max_memory_gb
        self.cache_max_disk_gb = cache_max_disk_gb
        self.cache: FeatureCache | None = None
        self._videos: list[VideoEmbedding] = []
        self.results: dict[str, dict[str, float]] = {}
        self.last_stage: str = "val"

    # ---------------------------------------------------------------- feature cache
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.feature_cache == "off" or not hasattr(pl_module, "feature_cache"):
            return
        if not pl_module.model.backbone.fully_frozen:
            rank_zero_info("feature cache off: part of the backbone trains")
            return
        namespace = {
            "backbone": pl_module._backbone_identity(),
            "backbone_config": {
                k: v for k, v in dataclasses.asdict(pl_module.backbone_config).items()
                if k != "chunk_size"
            },
            "data": _eval_settings(trainer.datamodule),
        }
        directory = None
        if self.feature_cache in ("disk", "both"):
            directory = Path(self.cache_dir or Path.home() / ".cache/mvf_lightning/features")
        candidate_id = FeatureCache.namespace_id(namespace)
        if self.cache is not None and self.cache.id == candidate_id:
            pl_module.feature_cache = self.cache  # same features: keep what is cached
            return
        self.cache = FeatureCache(
            namespace,
            directory=directory,
            memory=self.feature_cache in ("memory", "both"),
            max_memory_gb=self.cache_max_memory_gb,
            max_disk_gb=self.cache_max_disk_gb,
        )
        pl_module.feature_cache = self.cache

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if getattr(pl_module, "feature_cache", None) is self.cache:
            pl_module.feature_cache = None

    # ---------------------------------------------------------------- collection
    def _collect(self, outputs: Any) -> None:
        if not isinstance(outputs, dict) or "embeddings" not in outputs:
            return
        labels = outputs.get("labels")
        emb = outputs["embeddings"].detach().float().cpu().numpy()
        lab = (
            np.full(len(emb), -1, dtype=np.int64)
            if labels is None
            else torch.as_tensor(labels).cpu().numpy().astype(np.int64)
        )
        self._videos.append(
            VideoEmbedding(
                str(outputs.get("set_name", "default")), str(outputs.get("split", "val")),
                str(outputs.get("video_id", len(self._videos))), emb, lab,
            )
        )

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._collect(outputs)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                          dataloader_idx=0) -> None:
        self._collect(outputs)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._videos = []

    on_test_epoch_start = on_validation_epoch_start

    # ---------------------------------------------------------------- metrics
    def _gather(self, trainer: pl.Trainer) -> list[VideoEmbedding]:
        videos = self._videos
        if trainer.world_size > 1 and torch.distributed.is_available() and \
                torch.distributed.is_initialized():
            gathered: list[list[VideoEmbedding] | None] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, videos)
            videos = [v for part in gathered for v in (part or [])]
        unique: dict[tuple[str, str, str], VideoEmbedding] = {}
        for v in videos:
            unique.setdefault(v.key, v)
        return [unique[k] for k in sorted(unique)]

    def _stride(self, trainer: pl.Trainer) -> int:
        if self.stride is not None:
            return self.stride
        return int(getattr(trainer.datamodule, "alignment_stride", 2))

    def _name(self, trainer: pl.Trainer) -> str:
        if self.dataset_name:
            return self.dataset_name
        dm = trainer.datamodule
        name = getattr(dm, "eval_name", None) if dm is not None else None
        return name or "eval"

    def evaluate(
        self, trainer: pl.Trainer, stage: str, device: torch.device | str = "cpu"
    ) -> dict[str, dict[str, float]]:
        videos = self._gather(trainer)
        dm = trainer.datamodule
        sets = dm.eval_sets() if dm is not None and hasattr(dm, "eval_sets") else {}
        by_set: dict[str, list[VideoEmbedding]] = {}
        for v in videos:
            by_set.setdefault(v.set_name, []).append(v)
        results: dict[str, dict[str, float]] = {}
        for set_name in sorted(by_set):
            info = sets.get(set_name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                r = compute_set_metrics(
                    by_set[set_name],
                    num_classes=getattr(info, "num_classes", None) or None,
                    stride=self._stride(trainer),
                    ap_ks=self.ap_ks,
                    fractions=self.fractions,
                    metrics=self.metrics,
                    train_order=getattr(info, "train_ids", None),
                    device=device,
                )
            if r:
                results[set_name] = r
        if len(results) > 1:
            results["mean"] = mean_over_sets(results)
        elif results:
            results["mean"] = dict(next(iter(results.values())))
        self.results = results
        self.last_stage = stage
        return results

    def _log(self, pl_module: pl.LightningModule, trainer: pl.Trainer, stage: str) -> None:
        name = self._name(trainer)
        for set_name, r in self.results.items():
            for metric, value in r.items():
                pl_module.log(f"{stage}/{name}/{set_name}/{metric}", float(value),
                              sync_dist=False, rank_zero_only=False)

    def _finish(self, trainer, pl_module, stage: str) -> None:
        self.evaluate(trainer, stage, device=pl_module.device)
        self._log(pl_module, trainer, stage)
        self._videos = []

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        self._finish(trainer, pl_module, "val")
        if self.print_table and not trainer.training and trainer.state.fn == "validate":
            self._print(trainer, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._finish(trainer, pl_module, "test")
        if self.print_table:
            self._print(trainer, "test")

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.print_table and self.results:
            self._print(trainer, self.last_stage, f" after epoch {trainer.current_epoch}")

    def _print(self, trainer: pl.Trainer, stage: str, when: str = "") -> None:
        if trainer.is_global_zero and self.results:
            title = f"{stage} metrics ({self._name(trainer)}){when}"
            print("\n" + format_table(self.results, title) + "\n", file=sys.stdout, flush=True)

"""The public import path of the four alignment metrics as ``torchmetrics.Metric``s, for use in
any LightningModule (``from mvf_lightning.metrics import KendallsTau``); they live, with their
kernels, in :mod:`mvf_lightning.evaluation.metrics`."""

from mvf_lightning.evaluation.metrics import (
    KendallsTau,
    PhaseClassification,
    PhaseProgression,
    RetrievalAP,
    VideoMetric,
)

__all__ = ["KendallsTau", "PhaseClassification", "PhaseProgression", "RetrievalAP", "VideoMetric"]

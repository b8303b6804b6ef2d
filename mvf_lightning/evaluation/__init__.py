"""Evaluation: protocol metrics (pure torch functions), the evaluation protocol, embedding
export, media rendering.

Nothing here imports Lightning, so ``evaluate`` starts fast; the Lightning callbacks
live in their own modules and are imported explicitly.
"""

from mvf_lightning.evaluation.export import (
    EmbeddingExportError,
    read_embeddings,
    read_export_info,
    write_embeddings,
)
from mvf_lightning.evaluation.metrics import (
    kendalls_tau,
    phase_classification,
    phase_classification_sgd,
    phase_progression,
    progression_targets,
    retrieval_ap,
    retrieval_ap_at,
)
from mvf_lightning.evaluation.protocol import (
    EvalProtocol,
    EvalResults,
    SetSpec,
    VideoEmbedding,
    format_table,
    results_from_metrics,
    score_set,
    score_sets,
)

__all__ = [
    "EmbeddingExportError",
    "EvalProtocol",
    "EvalResults",
    "SetSpec",
    "VideoEmbedding",
    "format_table",
    "kendalls_tau",
    "phase_classification",
    "phase_classification_sgd",
    "phase_progression",
    "progression_targets",
    "read_embeddings",
    "read_export_info",
    "results_from_metrics",
    "retrieval_ap",
    "retrieval_ap_at",
    "score_set",
    "score_sets",
    "write_embeddings",
]

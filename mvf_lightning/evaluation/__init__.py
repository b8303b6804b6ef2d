"""Evaluation: protocol metrics (pure torch functions), embedding export, media rendering.

Nothing here imports Lightning, so ``evaluate`` starts fast; the Lightning callback
lives in its own module and is imported explicitly.
"""

from mvf_lightning.evaluation.export import (
    EmbeddingExportError,
    EmbeddingRecord,
    read_embeddings,
    write_embeddings,
)
from mvf_lightning.evaluation.metrics import (
    kendalls_tau,
    phase_classification,
    phase_progression,
    progression_targets,
    retrieval_ap,
    retrieval_ap_at,
)

__all__ = [
    "EmbeddingExportError",
    "EmbeddingRecord",
    "kendalls_tau",
    "phase_classification",
    "phase_progression",
    "progression_targets",
    "read_embeddings",
    "retrieval_ap",
    "retrieval_ap_at",
    "write_embeddings",
]

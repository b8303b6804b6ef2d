"""Pictures of embeddings and alignments, drawn with matplotlib (Agg) as pure functions:
arrays in, uint8 RGB images or video frames out. Used by the media callback and ``align``;
``run_plots`` draws ``results --plot``'s curves and bar charts."""

from .alignment_video import (
    AlignmentCanvas,
    Track,
    alignment_video,
    iter_alignment_frames,
    panel_size,
)
from .attention import attention_image, attention_maps
from .similarity import similarity_matrix_image

__all__ = [
    "AlignmentCanvas",
    "Track",
    "alignment_video",
    "attention_image",
    "attention_maps",
    "iter_alignment_frames",
    "panel_size",
    "similarity_matrix_image",
]

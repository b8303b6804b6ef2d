"""Frame-by-frame alignment of videos with a trained model (the ``align`` command).

``dtw`` (monotonic DTW over a cost matrix), ``matching`` (distances, nearest neighbour,
label transfer), ``model`` / ``embed`` (checkpoint -> model + evaluation preprocessing ->
frame embeddings) and ``command`` (the CLI, writing JSON, PNG and mp4).
"""

from .dtw import dtw
from .matching import Match, match_frames, pairwise_distances, transfer_labels

__all__ = ["Match", "dtw", "match_frames", "pairwise_distances", "transfer_labels"]

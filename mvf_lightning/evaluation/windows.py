"""How a long video is cut for embedding: equal windows, as the reference does."""

from __future__ import annotations

import math


def equal_windows(num_frames: int, max_frames: int) -> list[slice]:
    """Cut ``num_frames`` frames into ``ceil(L / M)`` windows of ``ceil(L / ceil(L / M))``
    frames (the last one possibly shorter), M = ``max_frames``: e.g. 2500 frames at most 1000
    per pass -> 834, 834, 832, not 1000, 1000, 500 (mvformer.md, "Evaluation protocol")."""
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    if num_frames == 0:
        return []
    size = math.ceil(num_frames / math.ceil(num_frames / max_frames))
    return [slice(start, min(start + size, num_frames)) for start in range(0, num_frames, size)]

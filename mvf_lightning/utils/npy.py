"""Reading ``.npy`` files a user gave us: plain numeric arrays only, never pickles."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, MissingFileError

NPY_MAGIC = b"\x93NUMPY"


def load_npy(path: str | Path, what: str = "array") -> np.ndarray:
    """The array in ``path``; one clear error naming the file if it is missing, is not a
    ``.npy`` file, or holds Python objects (which would need unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    if head != NPY_MAGIC:
        raise DataError(f"{path}: not a .npy file (no NumPy header); expected a saved {what}")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):
            raise DataError(
                f"{path}: holds Python objects, not a plain numeric {what}; re-save it with "
                "numpy.save(path, numpy.asarray(values, dtype=...))"
            ) from None
        raise DataError(f"{path}: unreadable .npy file ({e})") from e
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: truncated or damaged .npy file ({e})") from e

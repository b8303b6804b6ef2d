"""Load CARL's pickled dataset lists without letting the pickle run arbitrary code.

A pickle names functions for the loader to call, so loading one can execute anything.
CARL's releases only need plain containers, numpy arrays and torch tensors. The
:class:`RestrictedUnpickler` resolves exactly those names and refuses every other one;
the user must still opt in with ``--trust-pickle`` because the format stays risky.

Tensors pickled with ``pickle.dump`` carry their storage as a nested legacy
``torch.save`` blob (``torch.storage._load_from_bytes``); we load that blob with
``torch.load(weights_only=True)``, torch's own restricted loader, instead of torch's
unrestricted one.
"""

from __future__ import annotations

import collections
import io
import pickle
import sys
from pathlib import Path
from typing import Any

from mvf_lightning.prepare.common import PrepareError

TRUST_HELP = (
    "allow reading CARL's .pkl files. Pickle can run code when loaded: only pass this for "
    "files from a source you trust. Loading is restricted to containers, numpy arrays "
    "and torch tensors, but that is a defence in depth, not a guarantee."
)


def _load_storage_from_bytes(data: bytes):
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


def _allowed() -> dict[tuple[str, str], Any]:
    import codecs

    import numpy as np
    import torch
    import torch._utils

    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "slice"): slice,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "complex"): complex,
        ("__builtin__", "set"): set,
        ("_codecs", "encode"): codecs.encode,  # how protocol-2 pickles spell bytes
        ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
        ("torch", "Size"): torch.Size,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    try:  # numpy >= 2 moved the modules; old pickles still name numpy.core
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1
        from numpy.core import multiarray, numeric
    for pkg in ("numpy.core", "numpy._core"):
        allowed[(f"{pkg}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{pkg}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{pkg}.numeric", "_frombuffer")] = numeric._frombuffer
    for name in (
        "LongStorage",
        "IntStorage",
        "ShortStorage",
        "CharStorage",
        "ByteStorage",
        "BoolStorage",
        "FloatStorage",
        "DoubleStorage",
        "HalfStorage",
    ):
        allowed[("torch", name)] = getattr(torch, name)
    for name in ("dtype", "float32", "float64", "int64", "int32", "int16", "int8", "uint8"):
        allowed[("numpy", name)] = getattr(np, name)
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that only resolves an allow-list of harmless globals."""

    def __init__(self, file, source: str) -> None:
        super().__init__(file)
        self._source = source
        self._allowed = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise PrepareError(
                f"{self._source}: refusing to unpickle global {module}.{name}; CARL's files "
                "only contain lists, dicts, numpy arrays and torch tensors, so this file is "
                "not one of them (or has been tampered with)"
            ) from None


def load_trusted_pickle(path: Path, trust: bool) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; requires ``trust=True``."""
    if not trust:
        raise PrepareError(
            f"{path} is a pickle file, and loading a pickle can run arbitrary code. "
            "Pass --trust-pickle if it comes from a source you trust (e.g. CARL's release)."
        )
    if not path.is_file():
        raise PrepareError(f"pickle file not found: {path}")
    print(
        f"warning: loading pickle {path} (--trust-pickle given; restricted to containers, "
        "arrays and tensors)",
        file=sys.stderr,
    )
    with open(path, "rb") as f:
        try:
            return RestrictedUnpickler(f, str(path)).load()
        except PrepareError:
            raise
        except Exception as e:
            raise PrepareError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from e

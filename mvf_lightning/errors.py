"""The project's own error types: mistakes a user can fix, reported by the CLI as one line.

The rule: an error is a user error when the person running ``python -m mvf_lightning ...`` can
fix it by changing a setting, an argument or a file (a bad value, a missing or unexpected file,
a file that would be overwritten, a checkpoint or dataset that does not fit). Every such error
type derives from :class:`MVFError` (through the classes below), and the CLI decides "one line
or traceback" by that type alone. Anything else (a bug, an internal API misused by our own
code, CUDA out of memory, NCCL) stays a built-in exception and keeps its traceback.

Each type also subclasses the built-in that callers already expect (``ValueError``,
``FileNotFoundError``, ...), so code catching those keeps working.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ExistingFileError",
    "MVFError",
    "MissingFileError",
]


class MVFError(Exception):
    """Base of every error that means "your input or setting is wrong", not "we crashed"."""


class ConfigError(MVFError, ValueError):
    """A setting has a wrong value or contradicts another one (names the key)."""


class DataError(MVFError, ValueError):
    """A data file exists but cannot be used (names the file and what was expected)."""


class CheckpointError(MVFError, ValueError):
    """A checkpoint cannot be read or does not fit the configured run (names the file)."""


class MissingFileError(MVFError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class ExistingFileError(MVFError, FileExistsError):
    """Writing would replace something the user made."""

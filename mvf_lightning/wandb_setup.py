"""Choose W&B's mode before a logger starts: online only when it can work right now.

Without credentials W&B would prompt for a login; with credentials but no route to the
server it would hang for about 90 s and then fail. Both cases log offline instead (one
warning says how to upload later), so a run never waits on the network.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_BASE_URL = "https://api.wandb.ai"
CONNECT_TIMEOUT_S = 2.5

__all__ = ["offline_without_account", "offline_unless_reachable", "server_unreachable"]


def _has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).hostname or ""
    return netrc.is_file() and host in netrc.read_text(errors="ignore")


def offline_without_account() -> None:
    """Without credentials W&B would prompt for a login: log offline instead (sync later)."""
    if os.environ.get("WANDB_MODE"):
        return
    if not _has_credentials():
        os.environ["WANDB_MODE"] = "offline"


def server_unreachable(base_url: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why the W&B server at ``base_url`` cannot be reached (None when a TCP connection opens
    within ``timeout`` seconds)."""
    parts = urlsplit(base_url if "//" in base_url else f"https://{base_url}")
    host = parts.hostname
    if not host:
        return f"WANDB_BASE_URL={base_url!r} names no host"
    try:
        port = parts.port or (80 if parts.scheme == "http" else 443)
    except ValueError:
        return f"WANDB_BASE_URL={base_url!r} has an invalid port"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"{host}:{port}: {e.strerror or e}"


def offline_unless_reachable(save_dir: str | None = None) -> bool:
    """Switch W&B to offline mode, with one warning, if it would log online but its server is
    unreachable. Returns True when it switched."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun") or os.environ.get("WANDB_DISABLED"):
        return False
    base_url = os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL
    reason = server_unreachable(base_url)
    if reason is None:
        return False
    os.environ["WANDB_MODE"] = "offline"
    where = os.path.join(save_dir or ".", "wandb")
    print(
        f"warning: W&B server unreachable ({reason}); logging offline to {where}/; upload "
        f"later with: wandb sync {where}/offline-run-*",
        file=sys.stderr,
        flush=True,
    )
    return True

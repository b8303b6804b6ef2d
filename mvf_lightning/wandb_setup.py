"""Choose W&B's mode before a logger starts: online only when it can work right now.

Without credentials W&B would prompt for a login; with credentials but no route to the
server it would hang for about 90 s and then fail. Both cases log offline instead (one
warning says how to upload later), so a run never waits on the network.
"""

from __future__ import annotations

import os
import sys
import threading
import urllib.error
import urllib.request
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
    """Why the W&B server at ``base_url`` cannot be reached, or None if it answers an HTTP
    request (any status) within ``timeout`` seconds, a hard bound.

    An HTTP request rather than a bare TCP connect: behind a firewall or an intercepting
    proxy a connection may open while nothing ever answers.
    """
    url = base_url if "//" in base_url else f"https://{base_url}"
    if not urlsplit(url).hostname:
        return f"WANDB_BASE_URL={base_url!r} names no host"
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=timeout):
                outcome.append(None)
        except urllib.error.HTTPError:
            outcome.append(None)  # the server answered
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            outcome.append(f"{url}: {getattr(reason, 'strerror', None) or reason}")

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        return f"{url}: no answer within {timeout:g} s"
    return outcome[0]


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

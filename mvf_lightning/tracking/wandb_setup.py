"""Choose W&B's mode before a logger starts: online only when it can work right now.

Without credentials W&B would prompt for a login; with credentials but no route to the
server it would hang for about 90 s and then fail; a server that answers with an error (or
rejects the key) would end the fit with W&B's ``CommError``. All of these log offline instead
(one warning says why and how to upload later), so a run never waits on the network.
"""

from __future__ import annotations

import base64
import json
import netrc
import os
import sys
import threading
import urllib.error
import urllib.request
from urllib.parse import urlsplit

DEFAULT_BASE_URL = "https://api.wandb.ai"
CONNECT_TIMEOUT_S = 2.5

__all__ = ["offline_without_account", "offline_unless_reachable", "server_unreachable"]


def _api_key() -> str | None:
    """The API key W&B would use: ``WANDB_API_KEY``, else ``~/.netrc``'s for the server."""
    if os.environ.get("WANDB_API_KEY"):
        return os.environ["WANDB_API_KEY"]
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).hostname or ""
    try:
        auth = netrc.netrc().authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    return auth[2] if auth else None


def offline_without_account() -> None:
    """Without credentials W&B would prompt for a login: log offline instead (sync later)."""
    if os.environ.get("WANDB_MODE"):
        return
    if _api_key() is None:
        os.environ["WANDB_MODE"] = "offline"


def server_unreachable(
    base_url: str, timeout: float = CONNECT_TIMEOUT_S, api_key: str | None = None
) -> str | None:
    """Why W&B cannot log to the server at ``base_url`` right now, or None when it answers
    W&B's API within ``timeout`` seconds (a hard bound).

    The request is the one W&B's client makes first: a GraphQL query of the viewer, with the
    API key. Only an HTTP 200 counts: a connection that opens but never answers (a firewall,
    an intercepting proxy), a server that answers 404 or 5xx (not W&B's API, or failing) and
    a rejected key (401 / 403) would each end ``wandb.init`` with an error.
    """
    url = base_url if "//" in base_url else f"https://{base_url}"
    if not urlsplit(url).hostname:
        return f"WANDB_BASE_URL={base_url!r} names no host"
    endpoint = url.rstrip("/") + "/graphql"
    outcome: list[str | None] = []

    def probe() -> None:
        body = json.dumps({"query": "query Viewer { viewer { id } }"}).encode()
        request = urllib.request.Request(endpoint, data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        if api_key:
            token = base64.b64encode(f"api:{api_key}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                outcome.append(None if answer.status == 200 else
                               f"{endpoint}: answered HTTP {answer.status}")
        except urllib.error.HTTPError as e:
            what = "rejected the API key" if e.code in (401, 403) else "answered"
            outcome.append(f"{endpoint}: {what} HTTP {e.code}")
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            outcome.append(f"{endpoint}: {getattr(reason, 'strerror', None) or reason}")

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        return f"{endpoint}: no answer within {timeout:g} s"
    return outcome[0]


def offline_unless_reachable(save_dir: str | None = None) -> bool:
    """Switch W&B to offline mode, with one warning, if it would log online but its server is
    unreachable. Returns True when it switched."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun") or os.environ.get("WANDB_DISABLED"):
        return False
    base_url = os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL
    reason = server_unreachable(base_url, api_key=_api_key())
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

"""W&B's mode is decided before a logger starts, by a short bounded check of its server."""

from __future__ import annotations

import socket
import time

import pytest

from mvf_lightning.wandb_setup import offline_unless_reachable, server_unreachable

pytestmark = pytest.mark.faults


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_closed_port_switches_to_offline_with_one_warning(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    assert offline_unless_reachable(str(tmp_path)) is True
    import os

    assert os.environ["WANDB_MODE"] == "offline"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "wandb sync" in err[0] and str(tmp_path / "wandb") in err[0]


def test_answering_server_stays_online(monkeypatch):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Answer(BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 (http.server's naming)
            self.send_response(401)  # any answer means the server is there
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("WANDB_MODE", "online")
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_port}")
        assert offline_unless_reachable() is False
    finally:
        server.shutdown()
    import os

    assert os.environ["WANDB_MODE"] == "online"


def test_silent_server_is_given_up_within_the_timeout(monkeypatch):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        start = time.monotonic()
        reason = server_unreachable(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=1.0)
        assert reason is not None
        assert time.monotonic() - start < 3.0


def test_unroutable_address_is_given_up_within_the_timeout():
    start = time.monotonic()
    reason = server_unreachable("https://10.255.255.1", timeout=1.0)
    assert reason is not None
    assert time.monotonic() - start < 3.0


def test_offline_mode_is_left_alone(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    assert offline_unless_reachable() is False

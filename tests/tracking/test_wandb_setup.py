"""W&B's mode is decided before a logger starts, by a short bounded check of its server."""

from __future__ import annotations

import socket
import time

import pytest

from mvf_lightning.tracking.wandb_setup import offline_unless_reachable, server_unreachable

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


class _Server:
    """A W&B-like server on 127.0.0.1 answering ``POST /graphql`` with ``status``; records
    the requests it got."""

    def __init__(self, status: int):
        import threading
        from http.server import BaseHTTPRequestHandler, HTTPServer

        requests = self.requests = []

        class Answer(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", 0))
                requests.append((self.path, self.headers.get("Authorization"),
                                 self.rfile.read(length)))
                body = b'{"data": {"viewer": {"id": "x"}}}' if status == 200 else b""
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Answer)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()


def test_a_working_server_stays_online_and_is_asked_with_the_key(monkeypatch):
    import base64
    import os

    with _Server(200) as server:
        monkeypatch.setenv("WANDB_MODE", "online")
        monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
        monkeypatch.setenv("WANDB_BASE_URL", server.url)
        assert offline_unless_reachable() is False
    assert os.environ["WANDB_MODE"] == "online"
    (path, auth, body), = server.requests
    assert path == "/graphql" and b"viewer" in body
    assert auth == "Basic " + base64.b64encode(b"api:" + b"k" * 40).decode()


@pytest.mark.parametrize(("status", "reason"), [(404, "answered HTTP 404"),
                                                (500, "answered HTTP 500"),
                                                (401, "rejected the API key HTTP 401")])
def test_a_server_that_answers_with_an_error_means_offline(monkeypatch, capsys, status, reason):
    import os

    with _Server(status) as server:
        monkeypatch.setenv("WANDB_MODE", "online")
        monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
        monkeypatch.setenv("WANDB_BASE_URL", server.url)
        assert offline_unless_reachable() is True
    assert os.environ["WANDB_MODE"] == "offline"
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert reason in line and "wandb sync" in line


def test_silent_server_is_given_up_within_the_timeout(monkeypatch):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        start = time.monotonic()
        reason = server_unreachable(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=1.0)
        assert reason is not None
        assert time.monotonic() - start < 3.0


def test_offline_mode_is_left_alone(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    assert offline_unless_reachable() is False

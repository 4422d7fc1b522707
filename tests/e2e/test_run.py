"""`kamibot run` as a real process: migrates, serves /healthz, runs its jobs, stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import time

import httpx

from storage.migrations import migrations
from tests.e2e.procs import settings_env, spawn
from tests.fakes.loopback import free_port


def test_run_serves_health_and_stops_on_sigterm(tmp_path):
    port = free_port()
    env = {**settings_env(tmp_path, f"sqlite:///{tmp_path / 'shop.db'}"), "KAMIBOT_HTTP_PORT": str(port),
           "KAMIBOT_LOG_LEVEL": "INFO"}
    proc = spawn("bot", "run", env=env)
    try:
        body = None
        for _ in range(100):
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert body is not None, proc.stderr.read() if proc.poll() is not None else "no answer"
        assert body["status"] == "ok"
        assert body["schema"] == migrations("sqlite")[-1][0]
        assert (tmp_path / "vault.key").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
    assert "event=server.stopped" in err

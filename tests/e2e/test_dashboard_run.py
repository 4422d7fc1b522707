"""`kamibot run` serves GET /dashboard for a link signed with the key derived from its settings (the vault's key
file), and refuses a link signed with another key."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta

import httpx

from bot.dashboard import DashboardLinks, dashboard_key
from bot.settings import Settings
from fulfillment.vault import Vault, read_key_file
from tests.e2e.procs import settings_env, spawn
from tests.fakes.loopback import free_port


def test_run_serves_the_dashboard_for_its_own_links_only(tmp_path):
    port = free_port()
    env = {**settings_env(tmp_path, f"sqlite:///{tmp_path / 'shop.db'}"), "KAMIBOT_HTTP_PORT": str(port)}
    proc = spawn("bot", "run", env=env)
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        key = dashboard_key(Settings(data_dir=tmp_path), Vault(read_key_file(tmp_path / "vault.key")))
        today = datetime.now(UTC).date()
        first, last = today - timedelta(days=6), today + timedelta(days=1)
        own = DashboardLinks(key, f"http://127.0.0.1:{port}").link(first, last, "en")
        page = httpx.get(own, timeout=30)
        assert page.status_code == 200
        assert f"{first} – {last - timedelta(days=1)}" in page.text
        assert page.headers["cache-control"] == "no-store"
        foreign = DashboardLinks(b"x" * 32, f"http://127.0.0.1:{port}").link(first, last, "en")
        assert httpx.get(foreign, timeout=30).status_code == 403
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)

"""Settings from KAMIBOT_* variables and database URLs as SQLAlchemy writes them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.settings import Settings
from storage.url import parse_database_url


def test_env_prefix_and_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("KAMIBOT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KAMIBOT_RESERVATION_TTL_SECONDS", "600")
    monkeypatch.setenv("KAMIBOT_MERCHANT_IDS", '["m1"]')
    s = Settings()
    assert s.reservation_ttl_seconds == 600
    assert s.merchant_ids == ["m1"]
    assert s.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'kamibot.db'}"
    assert s.resolved_key_file == tmp_path / "vault.key"


def test_invalid_settings_are_refused(monkeypatch):
    monkeypatch.setenv("KAMIBOT_RESERVATION_TTL_SECONDS", "-5")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(("url", "backend", "where"), [
    ("sqlite:///relative.db", "sqlite", "/base/relative.db"),
    ("sqlite:////abs/path.db", "sqlite", "/abs/path.db"),
    ("postgresql://user@host:5432/db", "postgresql", "postgresql://user@host:5432/db"),
    ("postgresql+asyncpg://u@h/db", "postgresql", "postgresql://u@h/db"),
])
def test_database_urls(url, backend, where):
    parsed = parse_database_url(url, Path("/base"))
    assert parsed.backend == backend
    assert str(parsed.sqlite_path or parsed.dsn) == where


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite:///", "nonsense"])
def test_unsupported_database_urls(url):
    with pytest.raises(ValueError, match="sqlite"):
        parse_database_url(url, Path("/base"))

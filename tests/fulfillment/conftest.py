"""A real SQLite-backed shop (store + vault + services) for fulfillment tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.composition import Shop, build_shop
from bot.settings import Settings


def settings_for(tmp_path: Path, **extra: object) -> Settings:
    return Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'shop.db'}", **extra)


@pytest.fixture
async def shop(tmp_path: Path) -> AsyncIterator[Shop]:
    s = await build_shop(settings_for(tmp_path))
    yield s
    await s.close()

"""Parse a database URL as SQLAlchemy writes it (`sqlite:///…`, `postgresql://…`) into the backend and where its
data lives; opening the matching store is the composition root's job (bot/composition.py open_store)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    backend: str  # "sqlite" | "postgresql"
    sqlite_path: Path | None = None
    dsn: str = ""


def parse_database_url(url: str, base_dir: Path) -> DatabaseUrl:
    """`sqlite:///relative.db` (relative to base_dir), `sqlite:////abs.db`, `postgresql://…`."""
    if url.startswith("sqlite:///"):
        rest = url[len("sqlite:///") :]
        if not rest:
            raise ValueError("sqlite URL needs a file path, e.g. sqlite:///kamibot.db")
        path = Path(rest)
        return DatabaseUrl("sqlite", sqlite_path=path if path.is_absolute() else base_dir / path)
    scheme = urlsplit(url).scheme
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        return DatabaseUrl("postgresql", dsn=dsn)
    raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://")

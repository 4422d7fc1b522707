"""The schema seam: migrations, version, closing the store."""

from __future__ import annotations

from typing import Protocol


class SchemaStore(Protocol):
    """Numbered migrations and the store's own lifecycle."""

    async def migrate(self, target: int | None = None) -> int:
        """Apply the numbered migrations not yet applied (up to `target`, default all); the schema version."""
        ...
    async def schema_version(self) -> int: ...
    async def close(self) -> None: ...

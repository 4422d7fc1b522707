"""UTC timestamps as fixed-width ISO text, so SQLite compares them as strings correctly."""

from __future__ import annotations

from datetime import UTC, datetime

_FMT = "%Y-%m-%dT%H:%M:%S.%fZ"


def ts(dt: datetime) -> str:
    if dt.tzinfo is None:
        raise ValueError("naive datetime: every time in kamibot is UTC-aware")
    return dt.astimezone(UTC).strftime(_FMT)


def from_ts(text: str) -> datetime:
    # the fixed-width text ts() writes is ISO 8601 with "Z": fromisoformat reads it (3.11+) ~10x faster than strptime
    return datetime.fromisoformat(text).astimezone(UTC)

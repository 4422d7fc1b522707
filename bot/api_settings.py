"""KAMIBOT_API__*: the signed order API (issue 15), nested in bot/settings.py Settings."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ApiSettings(BaseModel):
    enabled: bool = True
    #: per key: a token bucket of `burst` requests refilled at `rate_per_s` (shared through Redis when configured)
    rate_per_s: float = Field(20.0, gt=0)
    burst: int = Field(40, ge=1)
    #: callbacks to private, loopback and link-local addresses (tests, a shop calling its own LAN); off by default
    allow_private_callbacks: bool = False
    #: a POST's Idempotency-Key is held this long by the request running it; a retry after that (the holder
    #: died) runs it again, which finds the order already placed by its client_order_no
    idempotency_lease_s: float = Field(30.0, ge=0.1, le=600)

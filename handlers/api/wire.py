"""The API channel's request and response as plain values, and the JSON it answers in (stable bytes: sorted keys,
no spaces, UTF-8)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from fulfillment.api_errors import ApiCode, ApiError

#: request bodies above this are refused (BODY_TOO_LARGE) before anything else is read
MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class ApiRequest:
    method: str
    path: str  # as sent, before percent-decoding
    raw_query: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    peer: str = ""


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})


#: one encoder for every answer (json.dumps with options builds a new one per call)
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def dump(data: object) -> bytes:
    return _JSON.encode(data).encode()


def respond(status: int, data: object) -> ApiResponse:
    return ApiResponse(status, dump(data))


def error_response(error: ApiError) -> ApiResponse:
    return respond(error.status, {"code": error.code.value, "message": error.message})


def refuse(code: ApiCode) -> ApiResponse:
    return error_response(ApiError(code))

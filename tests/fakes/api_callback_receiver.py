"""A downstream shop's callback endpoint for the order API's signed callbacks (issue 15; the wire format is ours:
fulfillment/api_callbacks.py and fulfillment/api_signing.py). Strict like a careful client: it checks the key id,
the timestamp window and the HMAC signature over the exact request, and acknowledges with 2xx only what verifies;
`fail_next` answers 500 that many times first (the sender must retry)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fulfillment import api_signing as signing


@dataclass
class CallbackReceiver:
    key_id: str
    secret: str
    fail_next: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    attempts: int = 0
    seen_ids: list[str] = field(default_factory=list)  # event ids of every verified attempt, acknowledged or not

    def app(self, path: str = "/hook") -> Starlette:
        return Starlette(routes=[Route(path, self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> Response:
        self.attempts += 1
        body = await request.body()
        h = request.headers
        ok = (h.get(signing.KEY_HEADER) == self.key_id
              and abs(time.time() - int(h.get(signing.TIMESTAMP_HEADER, "0"))) <= signing.WINDOW_S
              and signing.matches(self.secret, h.get(signing.SIGNATURE_HEADER, ""), "POST", request.url.path,
                                  request.url.query, body, h.get(signing.TIMESTAMP_HEADER, ""),
                                  h.get(signing.NONCE_HEADER, "")))
        if not ok:
            self.refused += 1
            return Response(status_code=401)
        self.seen_ids.append(h.get("x-kami-event-id", ""))
        if self.fail_next:
            self.fail_next -= 1
            return Response(status_code=500)
        event = json.loads(body)
        assert event["event_id"] == h.get("x-kami-event-id")
        self.events.append(event)
        return Response(status_code=204)

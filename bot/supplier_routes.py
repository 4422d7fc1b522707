"""POST /suppliers/{name}/notify: a supplier's order notification (kashangwl notify_url).

Verified by the adapter (a wrong signature answers 403 and changes nothing), matched to our procurement and
settled through ProcurementService.on_callback; a valid one is answered with the protocol's own body (kashangwl
`ok`), which stops the supplier's retries. Bodies over 64 KiB are refused (413)."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fulfillment.procurement import ProcurementService, UnknownSupplier
from fulfillment.suppliers.errors import ForgedCallback

log = logging.getLogger("kamibot.suppliers.notify")
MAX_NOTIFY_BODY = 64 * 1024


def supplier_routes(procurement: ProcurementService) -> list[Route]:
    async def notify(request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        if len(body) > MAX_NOTIFY_BODY:
            return Response(status_code=413)
        try:
            answer = await procurement.on_callback(name, dict(request.headers), body)
        except UnknownSupplier:
            return Response(status_code=404)
        except ForgedCallback:
            return Response("forbidden", status_code=403, media_type="text/plain")
        return Response(answer, media_type="text/plain")

    return [Route("/suppliers/{name}/notify", notify, methods=["POST"])]

"""The OpenAPI 3.1 document of the order API (/api/openapi.json), generated from the models the endpoints use:
the request body model (handlers/api/models.py), the answers' dataclasses (fulfillment/api_orders.py) and the
error catalogue (fulfillment/api_errors.py)."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import TypeAdapter

from fulfillment.api_errors import ERRORS
from fulfillment.api_orders import OrderView, ProductView
from fulfillment.api_signing import IDEMPOTENCY_HEADER, KEY_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from handlers.api.models import ErrorBody, OrderBody, RefundRequestBody
from handlers.api.routes import PREFIX

_REF = "#/components/schemas/{model}"
_SIGNING = (
    "Every request carries X-Kami-Key (key id), X-Kami-Timestamp (unix seconds, within 300 s of the server),"
    " X-Kami-Nonce (8-64 characters, used once) and X-Kami-Signature = hex(HMAC-SHA256(secret, METHOD\\nPATH\\n"
    "CANONICAL_QUERY\\nhex(SHA256(body))\\nTIMESTAMP\\nNONCE)). CANONICAL_QUERY: parameters sorted by name then value,"
    " each RFC 3986-encoded, joined with &.")


def _schema(target: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    schema = TypeAdapter(target).json_schema(ref_template=_REF)
    return schema, schema.pop("$defs", {})


def _json(ref: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": ", ".join(k.value for k, (s, _) in ERRORS.items() if s == c),
                     **_json("ErrorBody")} for c in sorted({401, 403, 429, 500, *codes})}


def _op(summary: str, scope: str, ok: int, ref: str, *codes: int, **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "description": f"Scope: {scope}.", "security": [{"KamiKey": []}],
            "parameters": [{"name": h, "in": "header", "required": True, "schema": {"type": "string"}}
                           for h in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)] + extra.pop("params", []),
            "responses": {str(ok): {"description": "OK", **_json(ref)}, **_errors(*codes)}, **extra}


@functools.cache
def document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    models = (ProductView, OrderView, OrderBody, RefundRequestBody, ErrorBody)
    for name, target in ((m.__name__, m) for m in models):
        schema, defs = _schema(target)
        schemas[name] = schema
        schemas.update(defs)
    schemas["ProductList"] = {"type": "object", "required": ["products"], "properties": {
        "products": {"type": "array", "items": {"$ref": "#/components/schemas/ProductView"}}}}
    schemas["Wallet"] = {"type": "object", "required": ["balances"], "properties": {
        "balances": {"type": "object", "additionalProperties": {"type": "integer"},
                     "description": "currency -> balance in minor units"}}}
    path_param = {"in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}
    idem = {"name": IDEMPOTENCY_HEADER, "in": "header", "required": False,
            "schema": {"type": "string", "pattern": "^[!-~]{1,128}$"},
            "description": "Same key and body: the first answer again, byte for byte; another body: refused."}
    paths = {
        f"{PREFIX}/products": {"get": _op("Products with the client's prices and stock", "catalog:read", 200,
                                          "ProductList")},
        f"{PREFIX}/products/{{sku}}": {"get": _op("One product", "catalog:read", 200, "ProductView", 404,
                                                 params=[{"name": "sku", **path_param}])},
        f"{PREFIX}/wallet": {"get": _op("The client's wallet balances", "orders:read", 200, "Wallet")},
        f"{PREFIX}/orders": {"post": _op(
            "Place an order paid from the wallet (answered with its codes; `delivering` for sourced and recharge SKUs)",
            "orders:write", 201, "OrderView",
            400, 402, 404, 409, 413, 422, params=[idem],
            requestBody={"required": True, **_json("OrderBody")})},
        f"{PREFIX}/orders/{{client_order_no}}": {"get": _op(
            "An order by the client's number", "orders:read", 200, "OrderView", 404,
            params=[{"name": "client_order_no", **path_param}])},
        f"{PREFIX}/orders/{{client_order_no}}/refund-request": {"post": _op(
            "Ask the merchant to refund an order (decided in chat; order.refunded is called back)", "orders:write",
            202, "OrderView", 400, 404, 409, 413, params=[{"name": "client_order_no", **path_param}],
            requestBody={"required": True, **_json("RefundRequestBody")})},
    }
    return {"openapi": "3.1.0",
            "info": {"title": "kamibot order API", "version": "1", "description": _SIGNING},
            "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": {
                "KamiKey": {"type": "apiKey", "in": "header", "name": KEY_HEADER, "description": _SIGNING}}}}

"""The order API's request body, as a pydantic model: it parses POST /orders and, with the response dataclasses
of fulfillment/api_orders.py, generates the OpenAPI document (handlers/api/openapi.py)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fulfillment.api_errors import ApiCode, ApiError
from fulfillment.api_orders import OrderRequest
from fulfillment.orders import MAX_QUANTITY

ORDER_NO_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
SKU_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


class OrderBody(BaseModel):
    """POST /api/v1/orders"""

    model_config = ConfigDict(extra="forbid", strict=True)

    client_order_no: str = Field(pattern=ORDER_NO_PATTERN, description="the client's own order number (unique)")
    sku: str = Field(min_length=1, max_length=64, description="SKU slug, as GET /products lists it")
    quantity: int = Field(ge=1, le=MAX_QUANTITY, description="items; within the SKU's min/max quantity")
    callback_url: str | None = Field(None, max_length=2048,
                                     description="http(s) URL of a public address for signed order events")
    target: str | None = Field(None, max_length=64,
                               description="a recharge SKU's target (mobile number, account id); only for those")


class RefundRequestBody(BaseModel):
    """POST /api/v1/orders/{client_order_no}/refund-request"""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str = Field(min_length=1, max_length=500, description="why, for the merchant who decides")


class ErrorBody(BaseModel):
    code: ApiCode
    message: str


def parse_order(body: bytes) -> OrderRequest:
    """The order in a POST body; MALFORMED for anything but a JSON object of these fields, BAD_QUANTITY for a
    quantity that is not a whole number in range, UNKNOWN_SKU for a SKU that cannot be one."""
    try:
        parsed = OrderBody.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors()
        if {e["loc"][:1] for e in errors} == {("quantity",)} and all(e["type"] != "missing" for e in errors):
            raise ApiError(ApiCode.BAD_QUANTITY) from None
        raise ApiError(ApiCode.MALFORMED) from None
    if not re.match(SKU_PATTERN, parsed.sku):
        raise ApiError(ApiCode.UNKNOWN_SKU)
    return OrderRequest(parsed.client_order_no, parsed.sku, parsed.quantity, parsed.callback_url or "", parsed.target)


def parse_refund_request(body: bytes) -> str:
    try:
        return RefundRequestBody.model_validate_json(body).reason
    except ValidationError:
        raise ApiError(ApiCode.MALFORMED) from None

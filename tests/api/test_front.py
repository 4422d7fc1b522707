"""ApiFront (bot/api.py), as `kamibot run` serves the API: a request under /api/v1/ reaches the API's endpoint
before the app's route list and middleware, with its seconds in the HTTP histogram under the Starlette route's
template; anything else goes to the app unchanged."""

from __future__ import annotations

from typing import Any

from bot.api import ROUTE


def _count(api: Any, method: str, status: str) -> float:
    assert api.metrics is not None
    value = api.metrics.registry.get_sample_value("kamibot_http_request_duration_seconds_count",
                                                  {"method": method, "route": ROUTE, "status": status})
    return value or 0.0


async def test_an_order_through_the_front_is_answered_and_timed_under_the_api_route(api):
    placed = await api.order("F-1")
    assert placed.status_code == 201, placed.text
    assert len(placed.json()["codes"]) == 1
    assert _count(api, "POST", "201") == 1
    refused = await api.call("GET", "/api/v1/orders/F-1", signer=None, headers={"x-kami-signature": "0" * 64})
    assert refused.status_code == 401
    assert refused.json()["code"] == "BAD_SIGNATURE"
    assert _count(api, "GET", "401") == 1
    again = await api.call("GET", "/api/v1/orders/F-1")
    assert again.status_code == 200
    assert again.json()["codes"] == placed.json()["codes"]
    assert _count(api, "GET", "200") == 1


async def test_whatever_the_front_does_not_serve_reaches_the_app_as_before(api):
    assert (await api.http.get("/api/openapi.json")).json()["openapi"].startswith("3.1")
    # other methods under /api/v1 are the app's: Starlette's route answers 405 for them, as without the front
    assert (await api.http.request("PUT", "/api/v1/orders")).status_code == 405
    assert (await api.http.request("DELETE", "/api/v1/orders/F-1")).status_code == 405
    bare = await api.http.get("/api/v1")  # not under /api/v1/: Starlette's redirect to /api/v1/, as before
    assert (bare.status_code, bare.headers["location"]) == (307, "http://shop.test/api/v1/")
    assert _count(api, "PUT", "405") == 0
    assert _count(api, "GET", "200") == 0

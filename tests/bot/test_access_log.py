"""uvicorn's access log keeps the route and drops the query string (issue 13 §8): pay links carry `sig` and the
buyer's openid, WeChat callbacks `signature`, `msg_signature`, `nonce` and `openid`."""

from __future__ import annotations

import logging

import httpx
import pytest

from bot.logs import AccessLogRedaction, OutgoingRequestRedaction, configure_logging, redact_access_log


@pytest.mark.parametrize(("path", "logged"), [
    ("/pay/wechat/K23456789ABC?openid=o-secret&exp=1&sig=S3cr3t", "/pay/wechat/K23456789ABC?…"),
    ("/wechat?signature=abc&timestamp=1&nonce=2&openid=o-secret&encrypt_type=aes&msg_signature=def", "/wechat?…"),
    ("/pay/wechat/notify", "/pay/wechat/notify"),
    ("/telegram/webhook?token=x", "/telegram/webhook?…"),
    ("/healthz", "/healthz"),
])
def test_query_strings_are_dropped_from_access_lines(path: str, logged: str) -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", path, "1.1", 200), None)
    assert AccessLogRedaction().filter(record)
    assert record.getMessage() == f'127.0.0.1:5000 - "GET {logged} HTTP/1.1" 200'


def test_redaction_is_installed_once_on_uvicorns_access_logger() -> None:
    access = logging.getLogger("uvicorn.access")
    before = list(access.filters)
    try:
        redact_access_log()
        redact_access_log()
        assert sum(isinstance(f, AccessLogRedaction) for f in access.filters) == 1
    finally:
        access.filters[:] = before


def test_outgoing_request_lines_keep_the_url_without_its_query() -> None:
    # httpx logs every request at INFO: a client's callback URL may carry its own token, WeChat's the access token
    url = httpx.URL("http://127.0.0.1:9000/hook?token=theirs&x=1")
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, 'HTTP Request: %s %s "%s %d %s"',
                               ("POST", url, "HTTP/1.1", 204, "No Content"), None)
    assert OutgoingRequestRedaction().filter(record)
    assert record.getMessage() == 'HTTP Request: POST http://127.0.0.1:9000/hook?… "HTTP/1.1 204 No Content"'


def test_logging_setup_installs_the_outgoing_redaction_once() -> None:
    outgoing, root = logging.getLogger("httpx"), logging.getLogger()
    before, handlers, level = list(outgoing.filters), list(root.handlers), root.level
    try:
        configure_logging("INFO")
        configure_logging("INFO")
        assert sum(isinstance(f, OutgoingRequestRedaction) for f in outgoing.filters) == 1
    finally:
        outgoing.filters[:] = before
        root.handlers[:] = handlers
        root.setLevel(level)

"""Logging setup: one line per event, `event=… key=value`, ids only (never codes, keys or tokens)."""

from __future__ import annotations

import json
import logging
import sys


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname,
                           "logger": record.name, "msg": record.getMessage()}, ensure_ascii=False)


def configure_logging(level: str = "INFO", as_json: bool = False, stream: object = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(_JsonFormatter() if as_json else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    outgoing = logging.getLogger("httpx")
    if not any(isinstance(f, OutgoingRequestRedaction) for f in outgoing.filters):
        outgoing.addFilter(OutgoingRequestRedaction())


class AccessLogRedaction(logging.Filter):
    """uvicorn's access log without query strings: they carry pay links' signatures (`sig`), buyers' openids
    (pay links, WeChat callbacks: `openid`, `signature`, `msg_signature`, `nonce`) and whatever a client puts there.
    The route stays: `GET /pay/wechat/K2345?… HTTP/1.1 200`."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn.protocols: logger.info('%s - "%s %s HTTP/%s" %d', client, method, full_path, version, status)
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (args[0], args[1], args[2].split("?", 1)[0] + "?…", args[3], args[4])
        return True


class OutgoingRequestRedaction(logging.Filter):
    """httpx's INFO line for each request the shop makes, without the query string: an order-API client's callback
    URL may carry its own token there, WeChat's API the access token, suppliers their signatures.
    `HTTP Request: POST http://host/hook?… "HTTP/1.1 204 No Content"`."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # httpx._client: logger.info('HTTP Request: %s %s "%s %d %s"', method, url, http_version, status, reason)
        if isinstance(args, tuple) and len(args) == 5 and "?" in str(args[1]):
            record.args = (args[0], str(args[1]).split("?", 1)[0] + "?…", *args[2:])
        return True


def redact_access_log() -> None:
    """Install the redaction on uvicorn's access logger (after uvicorn.Config has configured its logging)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogRedaction) for f in access.filters):
        access.addFilter(AccessLogRedaction())

"""The WeChat API calls kamibot makes (token, customer-service text, custom menu), on httpx.

wechatpy's client is synchronous (requests); these three calls are small enough to make directly, and
the access token comes from the shared store instead of wechatpy's per-process session.
Error codes: https://developers.weixin.qq.com/doc/offiaccount/Getting_Started/Global_Return_Code.html
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import httpx

from handlers.wechat.access_token import SharedAccessToken, TokenStore

TOKEN_INVALID = {40001, 40014, 42001}  # invalid credential, invalid token, token expired
OUTSIDE_WINDOW, UNSUBSCRIBED, QUOTA_USED = 45015, 43004, 45047
#: retrying cannot help until the user writes again: 48 h window passed, unfollowed, the 5 messages used up
UNREACHABLE = {OUTSIDE_WINDOW, UNSUBSCRIBED, QUOTA_USED}


_SECRET_PARAMS = re.compile(r"((?:access_token|secret)=)[^&\s\"']+")


class RedactSecrets(logging.Filter):
    """httpx logs every request URL at INFO; WeChat puts the access token (and the app secret) in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "access_token=" in message or "secret=" in message:
            record.msg, record.args = _SECRET_PARAMS.sub(r"\1***", message), ()
        return True


def redact_http_logs() -> None:
    httpx_log = logging.getLogger("httpx")
    if not any(isinstance(f, RedactSecrets) for f in httpx_log.filters):
        httpx_log.addFilter(RedactSecrets())


class WeChatApiError(Exception):
    """WeChat answered with a non-zero errcode (only the code is kept; errmsg may echo request data)."""

    def __init__(self, errcode: int) -> None:
        super().__init__(f"wechat errcode {errcode}")
        self.errcode = errcode


class WeChatUnavailable(Exception):
    """Network error, 5xx or `-1 system busy`: worth retrying later."""


class WeChatApi:
    def __init__(self, shared: TokenStore, http: httpx.AsyncClient, base_url: str, app_id: str, app_secret: str,
                 token_wait_s: float = 5.0) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self._secret = app_secret
        self.tokens = SharedAccessToken(shared, app_id, self.fetch_token, wait_s=token_wait_s)
        redact_http_logs()

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self.http.request(method, self.base_url + path, **kwargs)
        except httpx.HTTPError as exc:
            raise WeChatUnavailable(type(exc).__name__) from None  # the URL holds the token: not in the message
        if response.status_code >= 500:
            raise WeChatUnavailable(f"http {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise WeChatUnavailable("not json") from None
        if not isinstance(data, dict):
            raise WeChatUnavailable("not an object")
        code = int(data.get("errcode", 0) or 0)
        if code == -1:
            raise WeChatUnavailable("system busy")
        if code:
            raise WeChatApiError(code)
        return data

    async def fetch_token(self) -> tuple[str, int]:
        """`GET /cgi-bin/token` (client_credential); only the lease holder of SharedAccessToken calls it."""
        data = await self._json("GET", "/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": self.app_id, "secret": self._secret})
        return str(data["access_token"]), int(data.get("expires_in", 7200))

    async def call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST with the shared token; on 40001/42001 get a fresh one (shared) and try once more."""
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")  # WeChat wants UTF-8, not \\u escapes
        headers = {"Content-Type": "application/json; charset=utf-8"}
        token = await self.tokens.get()
        try:
            return await self._json("POST", path, params={"access_token": token}, content=body, headers=headers)
        except WeChatApiError as exc:
            if exc.errcode not in TOKEN_INVALID:
                raise
        token = await self.tokens.invalidate(token)
        return await self._json("POST", path, params={"access_token": token}, content=body, headers=headers)

    async def send_text(self, openid: str, text: str) -> None:
        await self.call("/cgi-bin/message/custom/send", {"touser": openid, "msgtype": "text",
                                                          "text": {"content": text}})

    async def create_menu(self, menu: dict[str, Any]) -> None:
        await self.call("/cgi-bin/menu/create", menu)

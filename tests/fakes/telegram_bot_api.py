"""A fake Telegram Bot API server on 127.0.0.1 for end-to-end tests: real wire format, recorded calls,
injected updates (polling or webhook push) and injected failures (429 retry_after, 403 blocked).

Stars: every `successful_payment` the fake sends is a payment into the bot's Star account and every refund it
makes (refundStarPayment, or a chargeback it is told of) a payment out; getStarTransactions lists them oldest
first (`offset` skips, `limit` 1-100), a refund under the id of the payment it returns, the user partner with
transaction_type "invoice_payment" and the invoice payload
(https://core.telegram.org/bots/api#getstartransactions, #startransaction, #transactionpartneruser).

Sending limits, when a test sets `broadcast_limit` (off by default): a message sent while `broadcast_limit` others
went out in the last second is refused with 429 and retry_after, like Telegram's "not more than 30 messages per
second" (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this), except one sent with
`allow_paid_broadcast` true, which is held to 1000 per second instead ("up to 1000 messages per second, ignoring
broadcasting limits", https://core.telegram.org/bots/api#sendmessage) and counted in `paid_broadcasts`.

Webhook (https://core.telegram.org/bots/api#setwebhook): after setWebhook the updates are POSTed as JSON with the
header X-Telegram-Bot-Api-Secret-Token; a non-2xx answer (or none) is retried; at most `max_connections`
(default 40) requests are in flight. One chat's updates are pushed one at a time, the next after the previous
one was answered (the docs do not promise it; it is how kamibot's order across instances is proven, and what
`max_connections=1` guarantees). As the load balancer of the several-instances tests, the fake pushes to the
URLs given to `balance()` round-robin instead of the one set by setWebhook (a retry goes to the next one).
getUpdates answers 409 Conflict while a webhook is set ("can't use getUpdates method while webhook is active")
and ends a pending long poll with 409 when another getUpdates arrives ("terminated by other getUpdates request;
make sure that only one bot instance is running"), as Telegram does (https://core.telegram.org/bots/api#getupdates).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.loopback import free_port, serve, shut
from tests.fakes.telegram_messages import MessageMemory

Params = dict[str, Any]
BOT_ID = 424242


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


def _png_size(content: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, None when the bytes are not a PNG."""
    if len(content) < 24 or content[:8] != b"\x89PNG\r\n\x1a\n" or content[12:16] != b"IHDR":
        return None
    width, height = int.from_bytes(content[16:20], "big"), int.from_bytes(content[20:24], "big")
    return (width, height) if width and height else None


class FakeTelegram(MessageMemory):
    token = "123456:TEST-token"

    def __init__(self) -> None:
        self.port = free_port()
        self.calls: list[tuple[str, Params]] = []
        self.updates: list[dict[str, Any]] = []
        self.files: dict[str, bytes] = {}
        self.webhook: tuple[str, str] | None = None
        self.refunded: set[str] = set()
        #: the bot's Star transactions, oldest first (StarTransaction objects)
        self.star_transactions: list[dict[str, Any]] = []
        self._charges: dict[str, tuple[int, str, int]] = {}  # charge id -> (payer, payload, amount)
        self._faults: dict[str, list[tuple[int, str, int | None]]] = {}
        self._blocked: dict[int, tuple[int, str]] = {}
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._client: aiohttp.ClientSession | None = None  # pushes webhook updates (aiohttp: cheap per call)
        self._push_slots = asyncio.Semaphore(40)
        self._chat_turns: dict[int, asyncio.Lock] = {}
        #: the instances behind the "load balancer" (balance()): pushes go round-robin to these
        self.instances: list[str] = []
        self._next_instance = itertools.count()
        #: (update_id, url) of every push answered 2xx: which instance took which update
        self.pushed: list[tuple[int, str]] = []
        self._poll_generation = 0
        self.conflicts = 0  # getUpdates answered 409
        #: called with (method, params, monotonic time) for every call: benchmarks measure latency with it
        self.listener: Callable[[str, Params, float], None] | None = None
        #: messages per second allowed without allow_paid_broadcast (None: not enforced); see the docstring
        self.broadcast_limit: int | None = None
        self.paid_broadcasts = 0
        self.rate_refusals = 0
        self._sent_at: deque[float] = deque()
        self._paid_at: deque[float] = deque()

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    async def start(self) -> None:
        app = Starlette(routes=[Route("/bot{token}/{method}", self._api, methods=["GET", "POST"]),
                                Route("/file/bot{token}/{path:path}", self._file)])
        self._server, self._serving = await serve(app, self.port)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._client is not None:
            await self._client.close()
        if self._server is not None and self._serving is not None:
            await shut(self._server, self._serving)

    # -- what tests read -----------------------------------------------------------------------
    def sent(self, method: str) -> list[Params]:
        return [p for m, p in self.calls if m == method]

    async def wait_for(self, method: str, predicate: Callable[[Params], bool] | None = None,
                       timeout: float = 10.0) -> Params:  # noqa: ASYNC109 - the deadline is part of the check
        """The first recorded call of `method` matching predicate, waiting for it if needed."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                for m, p in self.calls:
                    if m == method and (predicate is None or predicate(p)):
                        return p
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {method} call matched within {timeout}s; calls: "
                                         f"{[m for m, _ in self.calls][-30:]}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)

    def balance(self, urls: list[str]) -> None:
        """Push webhook updates round-robin to these instance URLs (the webhook must still be set)."""
        self.instances = list(urls)

    def fail_next(self, method: str, code: int, description: str, retry_after: int | None = None) -> None:
        self._faults.setdefault(method, []).append((code, description, retry_after))

    def fail_chat(self, chat_id: int, code: int, description: str) -> None:
        self._blocked[chat_id] = (code, description)

    # -- updates the tests inject --------------------------------------------------------------
    @staticmethod
    def _user(user_id: int, language_code: str) -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": f"User{user_id}", "language_code": language_code}

    def _message(self, user_id: int, language_code: str, **fields: Any) -> dict[str, Any]:
        return {"message_id": next(self._ids), "date": int(time.time()),
                "chat": {"id": user_id, "type": "private", "first_name": f"User{user_id}"},
                "from": self._user(user_id, language_code), **fields}

    def _inject(self, kind: str, payload: dict[str, Any]) -> int:
        update_id = next(self._ids)
        update = {"update_id": update_id, kind: payload}
        if self.webhook is not None:
            task = asyncio.get_running_loop().create_task(self._push(update))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self.updates.append(update)
            asyncio.get_running_loop().create_task(self._notify())
        return update_id

    def send_text(self, user_id: int, text: str, language_code: str = "en", reply_to: Params | None = None) -> None:
        """A user's text message; `reply_to`: the params of a sendMessage the bot made, which the user answers with
        Telegram's "reply" (the client shows its text without the HTML markup)."""
        command = text.split()[0] if text.startswith("/") else ""
        entities = [{"type": "bot_command", "offset": 0, "length": len(command)}] if command else []
        fields: dict[str, Any] = {"text": text, "entities": entities}
        if reply_to is not None:
            quoted = self._message(BOT_ID, language_code, text=html.unescape(re.sub(r"<[^>]+>", "", reply_to["text"])))
            quoted["chat"] = {"id": user_id, "type": "private", "first_name": f"User{user_id}"}
            quoted["from"] = {"id": BOT_ID, "is_bot": True, "first_name": "Shop", "username": "kamibot_test_bot"}
            fields["reply_to_message"] = quoted
        self._inject("message", self._message(user_id, language_code, **fields))

    def press_button(self, user_id: int, message_id: int, data: str, language_code: str = "en") -> str:
        query_id = f"cb{next(self._ids)}"
        message = dict(self.shown(user_id, message_id) or self._message(BOT_ID, language_code, text="…"))
        message["chat"] = {"id": user_id, "type": "private"}
        message["message_id"] = message_id
        self._inject("callback_query", {"id": query_id, "from": self._user(user_id, language_code),
                                        "chat_instance": str(user_id), "data": data, "message": message})
        return query_id

    def pre_checkout(self, user_id: int, payload: str, total_amount: int, currency: str = "XTR") -> str:
        query_id = f"pc{next(self._ids)}"
        self._inject("pre_checkout_query", {"id": query_id, "from": self._user(user_id, "en"), "currency": currency,
                                            "total_amount": total_amount, "invoice_payload": payload})
        return query_id

    def successful_payment(self, user_id: int, payload: str, total_amount: int, charge_id: str,
                           currency: str = "XTR", *, lost: bool = False, age_s: int = 0) -> None:
        """The user paid: Stars into the bot's account, and the update (unless `lost`: it never reaches the bot,
        as when a crashed bot had acknowledged it). `age_s`: the transaction happened that long ago."""
        if charge_id not in self._charges:
            self._charges[charge_id] = (user_id, payload, total_amount)
            self.star_transactions.append({"id": charge_id, "amount": total_amount, "date": int(time.time()) - age_s,
                                           "source": self._partner(user_id, payload)})
        if lost:
            return
        paid = {"currency": currency, "total_amount": total_amount, "invoice_payload": payload,
                "telegram_payment_charge_id": charge_id, "provider_payment_charge_id": ""}
        self._inject("message", self._message(user_id, "en", successful_payment=paid))

    def _partner(self, user_id: int, payload: str) -> dict[str, Any]:
        return {"type": "user", "transaction_type": "invoice_payment", "user": self._user(user_id, "en"),
                "invoice_payload": payload}

    def chargeback(self, charge_id: str, *, notify: bool = False) -> None:
        """Stars taken back from the bot for a payment without the bot asking (a store chargeback)."""
        user_id, payload, amount = self._charges[charge_id]
        self._refund(charge_id)
        if notify:
            self.refunded_payment(user_id, payload, amount, charge_id)

    def _refund(self, charge_id: str) -> None:
        user_id, payload, amount = self._charges[charge_id]
        self.refunded.add(charge_id)
        self.star_transactions.append({"id": charge_id, "amount": amount, "date": int(time.time()),
                                       "receiver": self._partner(user_id, payload)})

    def refunded_payment(self, user_id: int, payload: str, total_amount: int, charge_id: str) -> None:
        """Telegram's service message about a refunded Stars payment (the shop's own refund or a chargeback)."""
        refunded = {"currency": "XTR", "total_amount": total_amount, "invoice_payload": payload,
                    "telegram_payment_charge_id": charge_id}
        self._inject("message", self._message(user_id, "en", refunded_payment=refunded))

    def send_document(self, user_id: int, filename: str, content: bytes, caption: str,
                      file_size: int | None = None) -> None:
        file_id = f"file{next(self._ids)}"
        self.files[file_id] = content
        document = {"file_id": file_id, "file_unique_id": file_id + "u", "file_name": filename,
                    "file_size": len(content) if file_size is None else file_size, "mime_type": "text/plain"}
        self._inject("message", self._message(user_id, "en", document=document, caption=caption))

    # -- the server side -------------------------------------------------------------------------
    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    @staticmethod
    def _chat_of(update: dict[str, Any]) -> int:
        for kind in ("message", "callback_query", "pre_checkout_query"):
            payload = update.get(kind)
            if payload is not None:
                chat = payload.get("chat") or payload.get("from") or {}
                return int(chat.get("id", 0))
        return 0

    def _target(self, url: str) -> str:
        return self.instances[next(self._next_instance) % len(self.instances)] if self.instances else url

    async def _push(self, update: dict[str, Any]) -> None:
        assert self.webhook is not None
        url, secret = self.webhook
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30.0))
        # one chat's updates one at a time, in order (asyncio.Lock wakes its waiters first come, first served);
        # like Telegram's setWebhook max_connections (default 40): at most that many pushes in flight;
        # an update is retried until the bot answers 2xx (here for up to about a minute, backing off to 1 s)
        async with self._chat_turns.setdefault(self._chat_of(update), asyncio.Lock()), self._push_slots:
            pause = 0.1
            for _ in range(70):
                target = self._target(url)
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    headers = {"X-Telegram-Bot-Api-Secret-Token": secret}
                    async with self._client.post(target, json=update, headers=headers) as response:
                        await response.read()
                        if 200 <= response.status < 300:
                            self.pushed.append((int(update["update_id"]), target))
                            return
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

    async def _params(self, request: Request) -> Params:
        if request.headers.get("content-type", "").startswith("application/json"):
            body = await request.body()
            return dict(json.loads(body)) if body else {}
        params: Params = {}
        async with request.form() as form:  # closes the uploads' spooled files
            for key, value in form.multi_items():
                if hasattr(value, "read"):
                    params[key] = {"filename": value.filename, "content": await value.read()}
                else:
                    params[key] = _decode(value)
        return params

    async def _api(self, request: Request) -> Response:
        method = request.path_params["method"]
        params = await self._params(request)
        if method != "getUpdates":
            self.calls.append((method, params))
            if self.listener is not None:
                self.listener(method, params, time.monotonic())
            await self._notify()
        fault = self._fault(method, params) or self._over_limit(method, params)
        if fault is not None:
            return fault
        handler = getattr(self, f"_m_{method}", None)
        result = await handler(params) if handler else True
        if isinstance(result, Response):
            return result
        return JSONResponse({"ok": True, "result": result})

    def _fault(self, method: str, params: Params) -> Response | None:
        queued = self._faults.get(method)
        if queued:
            code, description, retry_after = queued.pop(0)
            body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
            if retry_after is not None:
                body["parameters"] = {"retry_after": retry_after}
            return JSONResponse(body, status_code=code)
        chat = params.get("chat_id")
        if method.startswith("send") and chat is not None and int(chat) in self._blocked:
            code, description = self._blocked[int(chat)]
            return JSONResponse({"ok": False, "error_code": code, "description": description}, status_code=code)
        return None

    def _over_limit(self, method: str, params: Params) -> Response | None:
        if not method.startswith("send"):
            return None
        paid = params.get("allow_paid_broadcast")
        if paid not in (None, True, False, "true", "false"):
            return JSONResponse({"ok": False, "error_code": 400, "description": "Bad Request: "
                                 "allow_paid_broadcast must be a Boolean"}, status_code=400)
        paid = paid in (True, "true")
        if self.broadcast_limit is None:
            self.paid_broadcasts += paid
            return None
        now = time.monotonic()
        window, limit = (self._paid_at, 1000) if paid else (self._sent_at, self.broadcast_limit)
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= limit:
            self.rate_refusals += 1
            return JSONResponse({"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1",
                                 "parameters": {"retry_after": 1}}, status_code=429)
        window.append(now)
        self.paid_broadcasts += paid
        return None

    async def _file(self, request: Request) -> Response:
        content = self.files.get(request.path_params["path"].rsplit("/", 1)[-1])
        return Response(content, status_code=200) if content is not None else Response(status_code=404)

    def _sent_message(self, params: Params, **fields: Any) -> dict[str, Any]:
        message = self._message(BOT_ID, "en", **fields)
        message["chat"] = {"id": int(params["chat_id"]), "type": "private"}
        message["from"] = {"id": BOT_ID, "is_bot": True, "first_name": "Shop", "username": "kamibot_test_bot"}
        return self.remember(params, message)

    async def _m_getMe(self, params: Params) -> dict[str, Any]:
        return {"id": BOT_ID, "is_bot": True, "first_name": "Shop", "username": "kamibot_test_bot",
                "can_join_groups": False, "can_read_all_group_messages": False, "supports_inline_queries": False}

    def _conflict(self, description: str) -> JSONResponse:
        self.conflicts += 1
        return JSONResponse({"ok": False, "error_code": 409, "description": f"Conflict: {description}"},
                            status_code=409)

    async def _m_getUpdates(self, params: Params) -> Any:
        if self.webhook is not None:
            return self._conflict("can't use getUpdates method while webhook is active; use deleteWebhook to "
                                  "delete the webhook first")
        self._poll_generation += 1
        mine = self._poll_generation
        await self._notify()  # a pending long poll of another consumer ends with 409
        offset = int(params.get("offset") or 0)
        self.updates = [u for u in self.updates if u["update_id"] >= offset]
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), 1.0)
        async with self._changed:
            while not self.updates and time.monotonic() < deadline and mine == self._poll_generation:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), max(deadline - time.monotonic(), 0.01))
        if mine != self._poll_generation:
            return self._conflict("terminated by other getUpdates request; make sure that only one bot instance "
                                  "is running")
        return list(self.updates)

    async def _m_setWebhook(self, params: Params) -> bool:
        self.webhook = (str(params["url"]), str(params.get("secret_token") or ""))
        self._push_slots = asyncio.Semaphore(int(params.get("max_connections") or 40))
        if params.get("drop_pending_updates"):
            self.updates.clear()
        return True

    async def _m_deleteWebhook(self, params: Params) -> bool:
        self.webhook = None
        return True

    async def _m_getWebhookInfo(self, params: Params) -> dict[str, Any]:
        return {"url": self.webhook[0] if self.webhook else "", "has_custom_certificate": False,
                "pending_update_count": len(self.updates)}

    async def _m_sendMessage(self, params: Params) -> dict[str, Any]:
        return self._sent_message(params, text=str(params.get("text", "")))

    async def _m_sendInvoice(self, params: Params) -> dict[str, Any]:
        total = sum(int(p["amount"]) for p in params.get("prices", []))
        invoice = {"title": params["title"], "description": params["description"], "start_parameter": "",
                   "currency": params["currency"], "total_amount": total}
        return self._sent_message(params, invoice=invoice)

    async def _m_sendDocument(self, params: Params) -> dict[str, Any]:
        doc = params.get("document") or {}
        file_id = f"sent{next(self._ids)}"
        return self._sent_message(params, caption=str(params.get("caption", "")),
                                  document={"file_id": file_id, "file_unique_id": file_id,
                                            "file_name": doc.get("filename", "file")})

    async def _m_sendPhoto(self, params: Params) -> dict[str, Any] | Response:
        """A photo uploaded as multipart/form-data (https://core.telegram.org/bots/api#sendphoto,
        #sending-files): at most 10 MB, width + height at most 10000, ratio at most 20; the fake reads the PNG
        header for the size and answers 400 like the real server for anything it cannot read as an image."""
        photo = params.get("photo")
        size = _png_size(photo["content"]) if isinstance(photo, dict) else None
        if size is None or len(photo["content"]) > 10 * 1024 * 1024 or sum(size) > 10_000 \
                or max(size) > 20 * min(size):
            return JSONResponse({"ok": False, "error_code": 400, "description": "Bad Request: IMAGE_PROCESS_FAILED"},
                                status_code=400)
        file_id = f"photo{next(self._ids)}"
        width, height = size
        small = {"file_id": file_id + "s", "file_unique_id": file_id + "s", "width": width // 4,
                 "height": height // 4}
        full = {"file_id": file_id, "file_unique_id": file_id, "width": width, "height": height,
                "file_size": len(photo["content"])}
        return self._sent_message(params, caption=str(params.get("caption", "")), photo=[small, full])

    async def _m_getFile(self, params: Params) -> dict[str, Any]:
        file_id = str(params["file_id"])
        return {"file_id": file_id, "file_unique_id": file_id + "u", "file_size": len(self.files.get(file_id, b"")),
                "file_path": f"documents/{file_id}"}

    async def _m_refundStarPayment(self, params: Params) -> Any:
        charge = str(params["telegram_payment_charge_id"])
        if charge in self.refunded:
            return JSONResponse({"ok": False, "error_code": 400, "description": "Bad Request: CHARGE_ALREADY_REFUNDED"},
                                status_code=400)
        if charge not in self._charges or self._charges[charge][0] != int(params["user_id"]):
            return JSONResponse({"ok": False, "error_code": 400, "description": "Bad Request: CHARGE_NOT_FOUND"},
                                status_code=400)
        self._refund(charge)
        return True

    async def _m_getStarTransactions(self, params: Params) -> Any:
        # offset defaults to 0 and limit to 100; a limit outside 1-100 is refused (0 too: it is not "absent")
        offset, limit = params.get("offset", 0), params.get("limit", 100)
        if not str(offset).isdigit() or not str(limit).isdigit() or not 1 <= int(limit) <= 100:
            return JSONResponse({"ok": False, "error_code": 400, "description": "Bad Request: LIMIT_INVALID"},
                                status_code=400)
        offset, limit = int(offset), int(limit)
        return {"transactions": self.star_transactions[offset:offset + limit]}

"""WeChat callbacks in, passive replies out: authenticate, de-duplicate, map to Incoming, answer within 5 s.

WeChat waits 5 s for the HTTP answer and then retries the same message (three times in all). The
conversation gets `passive_budget_s` (3 s); if it is slower the callback is answered `success` at
once and the replies follow as customer-service messages. Retries are recognised by MsgId (events by
FromUserName + CreateTime) with a claim shared by all processes, so a retry never orders twice.
https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Passive_user_reply_message.html
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from wechatpy.parser import parse_message
from wechatpy.replies import TextReply

from fulfillment.errors import ShopError
from handlers.context import ShopContext
from handlers.ordering import InOrder, UserTurns
from handlers.render import delivery_reply
from handlers.router import Conversation
from handlers.types import Incoming, Reply
from handlers.wechat.callback import CallbackCrypto, Opened
from handlers.wechat.channel import CHANNEL, WeChatSender
from handlers.wechat.numbering import ButtonMemory
from handlers.wechat.paste_import import PasteImport
from handlers.wechat.render import Rendered, WeChatRenderer
from handlers.wechat.safe_xml import BadXml
from handlers.wechat.undelivered import SharedKvClaims, Undelivered

log = logging.getLogger("kamibot.wechat")
#: typed words that press a menu button (Chinese and English), case-insensitive
KEYWORDS = {"菜单": "menu", "menu": "menu", "开始": "menu", "start": "menu", "商店": "shop", "shop": "shop",
            "购买": "shop", "buy": "shop", "订单": "orders:0", "我的订单": "orders:0", "orders": "orders:0",
            "帮助": "help", "help": "help", "语言": "language", "language": "language"}
#: custom-menu CLICK keys (kamibot wechat menu sync) → buttons
CLICKS = {"shop": "shop", "orders": "orders:0", "help": "help"}
SILENT_EVENTS = {"view", "location", "templatesendjobfinish", "masssendjobfinish", "scan"}
REFERRAL_SCENE = "ref_"  # a distributor's parametric QR code (scene ref_<code>): /start ref_<code> on follow
EXTRA_MESSAGE_DELAY_S = 1.0  # lets the passive reply reach the user before the customer-service rest


def _cdata_safe(text: str) -> str:
    """wechatpy puts the text in CDATA as is; a "]]>" inside would end it early."""
    return text.replace("]]>", "]]]]><![CDATA[>")


class WeChatBot:
    def __init__(self, ctx: ShopContext, conversation: Conversation, crypto: CallbackCrypto,
                 sender: WeChatSender | None, renderer: WeChatRenderer, memory: ButtonMemory,
                 shared: SharedKvClaims, passive_budget_s: float = 3.0,
                 dedupe_for: timedelta = timedelta(minutes=10), turns: UserTurns | None = None) -> None:
        self.ctx = ctx
        self.conversation = conversation
        self.crypto = crypto
        self.sender = sender
        self.renderer = renderer
        self.memory = memory
        self.paste = PasteImport(ctx)
        self.shared = shared  # the MsgId claims (and undelivered codes without a sender)
        self.undelivered = sender.undelivered if sender is not None else Undelivered(shared)
        self.passive_budget_s = passive_budget_s
        self.dedupe_for = dedupe_for
        self._in_order: InOrder[str] = InOrder(turns, "wechat")  # turns: shared by the instances

    def verify(self, query: Mapping[str, str]) -> str:
        return self.crypto.verify_url(query)

    async def receive(self, query: Mapping[str, str], body: bytes) -> str:
        """The HTTP answer to one callback. Raises Forged (403) or BadXml (400) before anything is processed."""
        opened = self.crypto.open(query, body)
        openid = opened.fields.get("FromUserName", "")
        if not openid or not opened.fields.get("MsgType") or not opened.fields.get("CreateTime", "").isdigit():
            raise BadXml("no FromUserName, MsgType or CreateTime")
        try:
            message = parse_message(opened.xml)
        except (KeyError, TypeError, ValueError, AttributeError):  # a field of the wrong shape (CreateTime "x")
            raise BadXml("unreadable message") from None
        now = datetime.now(UTC)
        key = self._dedupe_key(opened.fields)
        if not await self.shared.claim_once("wechat.callback", key, now + self.dedupe_for, now):
            log.info("event=wechat.retry_ignored kind=%s", key.split(":", 1)[0])
            return "success"  # WeChat's retry of a message already being answered
        task = asyncio.create_task(self._answer(message, openid, opened.fields.get("MsgType", "").lower()))
        try:
            rendered = await asyncio.wait_for(asyncio.shield(task), self.passive_budget_s)
        except TimeoutError:
            log.info("event=wechat.answer_deferred")
            self.ctx.spawn(self._send_later(task, openid))
            return "success"
        if not rendered.messages or not rendered.messages[0]:
            return "success"
        if len(rendered.messages) > 1:
            self.ctx.spawn(self._send(openid, rendered.messages[1:], EXTRA_MESSAGE_DELAY_S))
        return self._passive(message, rendered.messages[0], opened, query)

    @staticmethod
    def _dedupe_key(fields: dict[str, str]) -> str:
        msg_id = fields.get("MsgId", "")
        if fields.get("MsgType") == "event" or not msg_id:
            # WeChat's rule is FromUserName + CreateTime; the event and its key keep two different events of
            # one second (subscribe, then a menu click) apart while a retry stays identical
            parts = (fields.get("FromUserName", ""), fields.get("CreateTime", ""), fields.get("Event", ""),
                     fields.get("EventKey", ""))
            return ("event:" + ":".join(parts))[:200]
        return f"msg:{msg_id[:32]}"

    def _passive(self, message: Any, text: str, opened: Opened, query: Mapping[str, str]) -> str:
        timestamp = int(time.time())
        xml = str(TextReply(source=message.target, target=message.source, content=_cdata_safe(text),
                            time=timestamp).render())
        if opened.encrypted:
            return self.crypto.seal(xml, query.get("nonce", ""), str(timestamp))
        return xml

    async def _send_later(self, task: asyncio.Task[Rendered], openid: str) -> None:
        try:
            rendered = await task
        except Exception:  # noqa: BLE001 - already logged by _answer's caller path; nothing to send
            log.exception("event=wechat.answer_failed")
            return
        await self._send(openid, rendered.messages, 0.0)

    async def _send(self, openid: str, messages: list[str], delay: float) -> None:
        if self.sender is None:
            log.warning("event=wechat.reply_dropped reason=no_api")
            return
        if delay:
            await asyncio.sleep(delay)
        for text in messages:
            try:
                await self.sender.send_text(openid, text)
            except Exception as exc:  # noqa: BLE001 - PermanentFailure, RetryLater, …: a lost reply is logged only
                log.warning("event=wechat.reply_dropped reason=%s", type(exc).__name__)
                return

    async def _answer(self, message: Any, openid: str, kind: str) -> Rendered:
        """One user's messages are answered in order (the numbers of one answer feed the next)."""
        async with self._in_order.turn(openid):
            try:
                return await self._turn(message, openid, kind)
            except Exception:  # noqa: BLE001 - the user gets an apology, the log the class and trace
                log.exception("event=wechat.answer_failed")
                return Rendered([self.ctx.tr(self.ctx.language(CHANNEL, openid, ""), "error.generic")])

    async def _turn(self, message: Any, openid: str, kind: str) -> Rendered:
        replies = await self._replies(message, openid, kind)
        if replies is None:
            return Rendered([])
        lang = self.ctx.language(CHANNEL, openid, "")  # loaded by the conversation or by _lang
        replies = [*await self._held_back(openid, lang), *replies]
        rendered = self.renderer.render(replies, lang)
        await self.memory.remember(openid, rendered.buttons, rendered.quantity_sku)
        return rendered

    async def _held_back(self, openid: str, lang: str) -> list[Reply]:
        """Codes a customer-service message could not carry (45015/43004) ride on this answer."""
        replies = []
        for order_id in await self.undelivered.take(openid):
            delivery = await self.ctx.delivery.build(order_id, "resend")
            if delivery.order.user_id == openid and delivery.order.channel == CHANNEL:
                replies.append(delivery_reply(self.ctx.tr, delivery, lang))
                log.info("event=wechat.delivered_on_reply order_id=%s", order_id)
        return replies

    async def _lang(self, openid: str) -> str:
        """For answers made without the conversation (which loads the user's language itself)."""
        await self.ctx.load_language(CHANNEL, openid)
        return self.ctx.language(CHANNEL, openid, "")

    async def _replies(self, message: Any, openid: str, kind: str) -> list[Reply] | None:
        if kind == "text":
            return await self._text(str(message.content or ""), openid)
        if kind == "event":
            return await self._event(message, openid)
        # image, voice, video, location, link, file …: we only read text
        return [Reply(self.ctx.tr(await self._lang(openid), "wechat.unsupported"))]

    def _incoming(self, openid: str, text: str = "", button: str = "") -> Incoming:
        return Incoming(CHANNEL, openid, openid, text=text, button=button)

    async def _text(self, text: str, openid: str) -> list[Reply]:
        text = text.strip()
        pressed = await self.memory.press(openid, text)
        try:
            if self.ctx.is_merchant(CHANNEL, openid) and self.paste.wants(text):
                return await self.paste.handle(self._incoming(openid, text=text), await self._lang(openid))
            if pressed is not None and self.paste.owns(pressed):
                return await self.paste.press(self._incoming(openid, button=pressed), await self._lang(openid))
        except ShopError as exc:  # merchants only: the detail helps them
            return [Reply(self.ctx.tr(self.ctx.language(CHANNEL, openid, ""), exc.message_id) + f"\n({exc})")]
        if pressed is None:
            pressed = KEYWORDS.get(text.lower())
        if pressed is not None:
            return await self.conversation.handle(self._incoming(openid, button=pressed))
        return await self.conversation.handle(self._incoming(openid, text=text))

    async def _event(self, message: Any, openid: str) -> list[Reply] | None:
        event = str(getattr(message, "event", "") or "").lower()
        if event in ("subscribe", "subscribe_scan"):
            key = str(getattr(message, "scene_id", "") or "")  # a QR code's scene: sku_<id> or ref_<user>
            start = "/start" + (f" {key}" if key.startswith(("sku_", "ref_")) else "")
            replies = await self.conversation.handle(self._incoming(openid, text=start))  # remembers the user
            await self.ctx.services.customers.set_reachable(CHANNEL, openid, True)  # following again: reachable
            return [Reply(self.ctx.tr(self.ctx.language(CHANNEL, openid, ""), "wechat.welcome")), *replies]
        if event == "unsubscribe":
            await self.ctx.services.customers.set_reachable(CHANNEL, openid, False)
            return None
        if event == "scan" and str(getattr(message, "scene_id", "") or "").startswith(REFERRAL_SCENE):
            # a follower scanned a referral code: remembered like a follow's (only if they have no referrer yet)
            key = str(getattr(message, "scene_id", ""))
            await self.ctx.services.customers.touch(CHANNEL, openid, openid, key[len(REFERRAL_SCENE):64])
            return None
        if event == "click":
            button = CLICKS.get(str(getattr(message, "key", "") or ""))
            return await self.conversation.handle(self._incoming(openid, button=button)) if button else None
        if event not in SILENT_EVENTS:
            log.info("event=wechat.event_ignored kind=%s", event[:32])
        return None

"""The fake Bot API's memory of the messages the bot sent, and the edit methods, as strict as Telegram.

A message keeps what a client would show: the text without HTML tags, `code`/`pre` entities (offsets in
UTF-16 code units, https://core.telegram.org/bots/api#messageentity) and its inline keyboard, so a pressed
button carries its real message (callback_query.message). Edits follow
https://core.telegram.org/bots/api#editmessagetext and #editmessagereplymarkup: only a message the bot sent
in that chat; an invoice or a document has no text to edit; an edit that changes nothing is refused with
Telegram's "message is not modified" error.
"""

from __future__ import annotations

import html.parser
from typing import Any

from starlette.responses import JSONResponse

Params = dict[str, Any]
_ENTITY_TAGS = {"code": "code", "pre": "pre", "b": "bold", "strong": "bold", "i": "italic", "em": "italic"}


class _Html(html.parser.HTMLParser):
    """Telegram's HTML parse mode, as far as the shop uses it: text plus formatting entities."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text = ""
        self.entities: list[dict[str, Any]] = []
        self._open: list[tuple[str, int]] = []

    def _units(self) -> int:
        return len(self.text.encode("utf-16-le")) // 2

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _ENTITY_TAGS:
            self._open.append((tag, self._units()))

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1][0] == tag:
            _, start = self._open.pop()
            self.entities.append({"type": _ENTITY_TAGS[tag], "offset": start, "length": self._units() - start})

    def handle_data(self, data: str) -> None:
        self.text += data


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    parser = _Html()
    parser.feed(text)
    parser.close()
    return parser.text, sorted(parser.entities, key=lambda e: e["offset"])


def _error(description: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error_code": 400, "description": f"Bad Request: {description}"},
                        status_code=400)


class MessageMemory:
    """Mixed into FakeTelegram: `remember` every message the bot sends; tests read `shown`."""

    _shown: dict[tuple[int, int], dict[str, Any]]
    #: (chat id, method, the message as shown right after) for every message sent or edited, in order
    _shown_log: list[tuple[int, str, dict[str, Any]]]

    @property
    def shown_log(self) -> list[tuple[int, str, dict[str, Any]]]:
        if not hasattr(self, "_shown_log"):
            self._shown, self._shown_log = {}, []
        return self._shown_log

    def remember(self, params: Params, message: dict[str, Any]) -> dict[str, Any]:
        log = self.shown_log
        kept = dict(message)
        if "text" in kept:
            kept["text"], entities = parse_html(str(kept["text"])) if params.get("parse_mode") == "HTML" \
                else (str(kept["text"]), [])
            if entities:
                kept["entities"] = entities
        if params.get("reply_markup"):
            kept["reply_markup"] = params["reply_markup"]
        self._shown[(int(kept["chat"]["id"]), int(kept["message_id"]))] = kept
        log.append((int(kept["chat"]["id"]), "send", dict(kept)))
        return message

    def shown(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """The message as a client shows it now (after any edits), or None if the bot never sent it."""
        _ = self.shown_log
        return self._shown.get((chat_id, message_id))

    def _editable(self, params: Params) -> dict[str, Any] | JSONResponse:
        if "inline_message_id" in params:
            return _error("inline messages are not sent by this shop")
        message = self.shown(int(params["chat_id"]), int(params["message_id"]))
        if message is None:
            return _error("message to edit not found")
        return message

    async def _m_editMessageText(self, params: Params) -> Any:
        message = self._editable(params)
        if isinstance(message, JSONResponse):
            return message
        if "text" not in message:
            return _error("there is no text in the message to edit")
        text, entities = parse_html(str(params.get("text", ""))) if params.get("parse_mode") == "HTML" \
            else (str(params.get("text", "")), [])
        markup = params.get("reply_markup") or None
        if not text.strip():
            return _error("message text is empty")
        if (text, entities, markup) == (message["text"], message.get("entities", []), message.get("reply_markup")):
            return _error("message is not modified: specified new message content and reply markup are exactly the "
                          "same as a current content and reply markup of the message")
        message.update(text=text, entities=entities)
        message.pop("reply_markup", None)
        if markup:
            message["reply_markup"] = markup
        self.shown_log.append((int(message["chat"]["id"]), "edit", dict(message)))
        return message

    async def _m_editMessageReplyMarkup(self, params: Params) -> Any:
        message = self._editable(params)
        if isinstance(message, JSONResponse):
            return message
        markup = params.get("reply_markup") or None
        if markup == message.get("reply_markup"):
            return _error("message is not modified: specified new message content and reply markup are exactly the "
                          "same as a current content and reply markup of the message")
        message.pop("reply_markup", None)
        if markup:
            message["reply_markup"] = markup
        self.shown_log.append((int(message["chat"]["id"]), "edit", dict(message)))
        return message

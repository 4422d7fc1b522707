"""Reply → Telegram HTML and inline keyboards; every user- or merchant-supplied string is escaped."""

from __future__ import annotations

import html
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, MaybeInaccessibleMessage, Message, MessageEntity

from handlers.types import Reply

MAX_TEXT = 4096


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    if not reply.buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(**b) for b in row] for row in keyboard_rows(reply)])


def keyboard_rows(reply: Reply) -> list[list[dict[str, Any]]]:
    """The same keyboard as the Bot API's JSON button rows (for BotApi calls)."""
    return [[{"text": b.label, "callback_data": b.data} for b in row] for row in reply.buttons]


def to_html(reply: Reply) -> str:
    """Text escaped as HTML; codes as <code> (tap to copy), one per line."""
    parts = [html.escape(reply.text)]
    parts += [f"<code>{html.escape(code)}</code>" for code in reply.codes]
    return "\n".join(parts)


def fits(text: str) -> bool:
    return len(text) <= MAX_TEXT


def menu_message(message: MaybeInaccessibleMessage | None) -> int | None:
    """The id of the message a button was pressed on if a menu may move on in it: a text message the bot can
    still see. A message that shows codes is never overwritten (they stay where the buyer found them), nor an
    invoice or a document (they have no text to edit)."""
    if not isinstance(message, Message) or message.text is None:
        return None
    if any(e.type in (MessageEntity.CODE, MessageEntity.PRE) for e in message.entities):
        return None
    return message.message_id

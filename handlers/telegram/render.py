"""Reply → Telegram HTML and inline keyboards; every user- or merchant-supplied string is escaped."""

from __future__ import annotations

import html
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

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

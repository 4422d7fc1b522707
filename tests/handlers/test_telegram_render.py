"""Which message a pressed button's answer may replace (handlers/telegram/render.py menu_message)."""

from __future__ import annotations

from typing import Any

from telegram import Message

from handlers.telegram.render import menu_message


def _message(**fields: Any) -> Message:
    return Message.de_json({"message_id": 42, "date": 1, "chat": {"id": 7, "type": "private"}, **fields}, None)


def test_a_menu_moves_on_in_its_own_message():
    assert menu_message(_message(text="Choose a category")) == 42


def test_codes_invoices_documents_and_unreadable_messages_are_never_replaced():
    codes = _message(text="Your code\nGI60-AAAA", entities=[{"type": "code", "offset": 10, "length": 9}])
    invoice = _message(invoice={"title": "t", "description": "d", "start_parameter": "", "currency": "XTR",
                                "total_amount": 45})
    document = _message(document={"file_id": "f", "file_unique_id": "u"}, caption="codes")
    inaccessible = Message.de_json({"message_id": 42, "date": 0, "chat": {"id": 7, "type": "private"}}, None)
    assert [menu_message(m) for m in (codes, invoice, document, inaccessible, None)] == [None] * 5

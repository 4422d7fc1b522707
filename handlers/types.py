"""The small types every conversation speaks: an Incoming message in, Replies out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Button:
    label: str
    data: str  # ≤ 64 bytes (Telegram callback_data limit)

    def __post_init__(self) -> None:
        if not 1 <= len(self.data.encode()) <= 64:
            raise ValueError("button data must be 1-64 bytes")


@dataclass(frozen=True)
class Attachment:
    filename: str
    path: Path


@dataclass(frozen=True)
class Incoming:
    channel: str
    user_id: str
    chat_id: str
    text: str = ""
    button: str = ""  # the data of a pressed button
    language: str = ""
    attachment: Attachment | None = None
    display_name: str = ""


@dataclass(frozen=True)
class Invoice:
    order_ref: str
    title: str
    description: str
    amount: int
    currency: str


@dataclass(frozen=True)
class Document:
    filename: str
    content: bytes


@dataclass(frozen=True)
class Reply:
    text: str
    buttons: list[list[Button]] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)  # shown monospace / tap-to-copy by the adapter
    invoice: Invoice | None = None
    document: Document | None = None
    #: a PNG shown as an image with `text` as its caption (Telegram sendPhoto); text-only channels show the text
    photo: bytes | None = None

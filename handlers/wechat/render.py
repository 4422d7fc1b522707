"""Reply → WeChat text: numbered buttons (`回复 1 → …`), codes one per line, at most 2,048 bytes a message.

WeChat text messages (passive and customer-service) carry at most 2,048 bytes; longer text is split
on line boundaries. A delivery is one message (the customer-service quota is 5 per 48 h), so codes
that do not fit are summarised and shown in full under My orders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from handlers.types import Invoice, Reply
from locales import Translator

MAX_BYTES = 2048


@dataclass
class Rendered:
    messages: list[str]  # each ≤ MAX_BYTES
    buttons: dict[str, str] = field(default_factory=dict)  # the number to reply → button data
    quantity_sku: str = ""  # the quantity step: any number N the user replies means "N of this SKU"


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def split_text(text: str, limit: int = MAX_BYTES) -> list[str]:
    """Split on line ends into chunks of at most `limit` UTF-8 bytes; an over-long line is cut between characters."""
    chunks: list[str] = []
    current = ""
    for line in text.split("\n"):
        while _size(line) > limit:
            cut = len(line.encode("utf-8")[:limit].decode("utf-8", "ignore"))
            if current:
                chunks.append(current)
                current = ""
            chunks.append(line[:cut])
            line = line[cut:]
        candidate = f"{current}\n{line}" if current else line
        if _size(candidate) > limit:
            chunks.append(current)
            candidate = line
        current = candidate
    if current or not chunks:
        chunks.append(current)
    return chunks


class WeChatRenderer:
    """`render_invoice` is the seam for WeChat Pay: give `pay_link` (order → signed pay-page URL) or override it."""

    def __init__(self, tr: Translator, pay_link: Callable[[Invoice], str] | None = None) -> None:
        self.tr = tr
        self.pay_link = pay_link

    def render_invoice(self, reply: Reply, lang: str) -> str:
        inv = reply.invoice
        assert inv is not None
        total = self.tr.money(lang, inv.amount, inv.currency)
        if self.pay_link is None:
            return reply.text + "\n" + self.tr(lang, "wechat.pay_not_configured", ref=inv.order_ref, total=total)
        return reply.text + "\n" + self.tr(lang, "wechat.pay_link", url=self.pay_link(inv), total=total)

    def body(self, reply: Reply, lang: str) -> list[str]:
        """The lines of one reply without its buttons: text (or invoice), codes plainly, one per line."""
        if reply.photo is not None:  # no images in text replies: the chart's title and where to see it
            return [self.tr(lang, "wechat.chart_not_shown", title=reply.text)]
        lines = [self.render_invoice(reply, lang) if reply.invoice is not None else reply.text]
        lines += reply.codes
        if reply.document is not None and reply.document.filename.endswith(".txt"):
            # WeChat has no file messages: a codes file is shown as its lines
            lines += [line for line in reply.document.content.decode("utf-8").splitlines() if line.strip()]
        elif reply.document is not None:  # a spreadsheet cannot be shown as text: say where to get it
            lines.append(self.tr(lang, "wechat.file_not_shown", name=reply.document.filename))
        return [line for line in lines if line]

    def render(self, replies: list[Reply], lang: str) -> Rendered:
        """One turn: every reply's text, then its buttons numbered on from the previous reply's.

        In the quantity step the number IS the quantity ("4" buys 4, not the fourth button) and the one
        other button (Back) is 0, which is never a quantity."""
        rendered = Rendered([])
        parts: list[str] = []
        for reply in replies:
            lines = self.body(reply, lang)
            flat = [b for row in reply.buttons for b in row]
            quantities = [b for b in flat if b.data.startswith("qty:")]
            if quantities:
                rendered.quantity_sku = quantities[0].data.split(":")[1]
                lines.append(self.tr(lang, "wechat.quantity_hint", example=quantities[0].label))
            for button in flat:
                if button in quantities:
                    rendered.buttons[button.data.rsplit(":", 1)[1]] = button.data
                    continue
                number = "0" if quantities and len(flat) - len(quantities) == 1 else self._next(rendered.buttons)
                rendered.buttons[number] = button.data
                lines.append(self.tr(lang, "wechat.button_line", number=number, label=button.label))
            parts.append("\n".join(lines))
        rendered.messages = split_text("\n\n".join(p for p in parts if p))
        return rendered

    @staticmethod
    def _next(taken: dict[str, str]) -> str:
        number = 1
        while str(number) in taken:
            number += 1
        return str(number)

    def delivery(self, reply: Reply, lang: str) -> str:
        """A delivery as ONE message: as many codes as fit, then where to find the rest."""
        head = [reply.text] if reply.text else []
        codes = list(reply.codes)
        if reply.document is not None:
            codes += [line for line in reply.document.content.decode("utf-8").splitlines() if line.strip()]
        text = "\n".join([*head, *codes])
        if _size(text) <= MAX_BYTES:
            return text
        shown: list[str] = []
        for code in codes:
            note = self.tr(lang, "wechat.codes_truncated", shown=len(shown) + 1, total=len(codes))
            if _size("\n".join([*head, *shown, code, note])) > MAX_BYTES:
                break
            shown.append(code)
        note = self.tr(lang, "wechat.codes_truncated", shown=len(shown), total=len(codes))
        return "\n".join([*head, *shown, note])

"""Merchant code import by pasting text in WeChat: `/import POOL_OR_SKU [cost=N] [supplier=X]` then one code a
line; nothing is committed until the merchant confirms.

WeChat bots cannot receive text files, so the codes come in the message. While waiting for the
confirmation they are kept in the shared store sealed by the vault (codes are never stored in clear).
"""

from __future__ import annotations

import base64
import json
import secrets
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fulfillment.errors import ImportRefused
from fulfillment.importer import ImportSource, import_codes
from handlers.context import ShopContext
from handlers.types import Button, Incoming, Reply
from storage.records import EncryptedCode

PENDING_FOR = timedelta(minutes=10)
PREFIX = "wimp:"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


class PasteImport:
    def __init__(self, ctx: ShopContext) -> None:
        self.ctx = ctx

    @staticmethod
    def wants(text: str) -> bool:
        return text.startswith("/import") and "\n" in text

    def owns(self, data: str) -> bool:
        return data.startswith(PREFIX)

    async def handle(self, msg: Incoming, lang: str) -> list[Reply]:
        first, _, body = msg.text.partition("\n")
        args = first.split()[1:]
        codes = [line.strip() for line in body.splitlines() if line.strip()]
        if not args or not codes:
            raise ImportRefused("paste: /import POOL_OR_SKU [cost=N] [supplier=X], then one code per line")
        opts = dict(a.split("=", 1) for a in args[1:] if "=" in a)
        if not opts.get("cost", "0").isdigit():
            raise ImportRefused("cost must be a whole number of minor units")
        pool = await self.ctx.catalog.find_pool(args[0])
        sealed = self.ctx.vault.seal("\n".join(codes))
        token = secrets.token_hex(6)
        pending = {"pool": pool.slug, "cost": int(opts.get("cost", "0")), "supplier": opts.get("supplier", "")[:64],
                   "user": msg.user_id, "digest": _b64(sealed.digest), "kid": sealed.key_id,
                   "nonce": _b64(sealed.nonce), "ct": _b64(sealed.ciphertext)}
        await self.ctx.store.kv_put(f"wechat:paste:{token}", json.dumps(pending), datetime.now(UTC) + PENDING_FOR)
        rows = [[Button(self.ctx.tr(lang, "wechat.import_confirm_button"), f"{PREFIX}ok:{token}"),
                 Button(self.ctx.tr(lang, "wechat.import_cancel_button"), f"{PREFIX}no:{token}")]]
        return [Reply(self.ctx.tr(lang, "wechat.import_confirm", count=len(codes), pool=pool.slug), rows)]

    async def press(self, msg: Incoming, lang: str) -> list[Reply]:
        if not self.ctx.is_merchant(msg.channel, msg.user_id):
            return [Reply(self.ctx.tr(lang, "error.unknown_command"))]
        action, _, token = msg.button[len(PREFIX):].partition(":")
        now = datetime.now(UTC)
        raw = await self.ctx.store.kv_get(f"wechat:paste:{token}", now)
        data = json.loads(raw) if raw else None
        # the claim makes a confirmation count once, even pressed twice or in two processes
        if data is None or data["user"] != msg.user_id or not await self.ctx.store.claim_once(
                "wechat.paste", token, now + PENDING_FOR, now):
            return [Reply(self.ctx.tr(lang, "wechat.import_expired"))]
        await self.ctx.store.kv_put(f"wechat:paste:{token}", "", now)  # forget the sealed codes
        if action != "ok":
            return [Reply(self.ctx.tr(lang, "wechat.import_cancelled"))]
        text = self.ctx.vault.open(EncryptedCode(0, base64.b64decode(data["digest"]), data["kid"],
                                                 base64.b64decode(data["nonce"]), base64.b64decode(data["ct"])))
        pool = await self.ctx.catalog.find_pool(data["pool"])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pasted.txt"
            path.touch(0o600)
            path.write_text(text + "\n", encoding="utf-8")
            stats = await import_codes(self.ctx.store, self.ctx.vault, pool, ImportSource(path, "txt"),
                                       supplier=data["supplier"], unit_cost=int(data["cost"]))
        await self.ctx.store.audit(msg.channel, msg.user_id, "import", f"pasted {pool.slug}", now)
        lines = [self.ctx.tr(lang, "import.summary", imported=stats.imported, dup_file=stats.duplicate_in_batch,
                             dup_vault=stats.duplicate_in_vault, invalid=len(stats.invalid), pool=pool.slug)]
        lines += [self.ctx.tr(lang, "import.invalid_line", line=no, reason=why) for no, why in stats.invalid[:20]]
        return [Reply("\n".join(lines))]

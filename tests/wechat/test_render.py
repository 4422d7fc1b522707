"""Reply → WeChat text: numbered buttons, 2,048-byte messages, one-message deliveries, invoices."""

from __future__ import annotations

from handlers.types import Button, Document, Invoice, Reply
from handlers.wechat.render import MAX_BYTES, WeChatRenderer, split_text
from locales import Translator

TR = Translator("zh_CN")


def test_split_keeps_lines_whole_and_every_chunk_within_2048_bytes():
    lines = [f"第{i}行 " + "卡" * 40 for i in range(200)]
    chunks = split_text("\n".join(lines))
    assert len(chunks) > 1
    assert all(len(c.encode("utf-8")) <= MAX_BYTES for c in chunks)
    assert "\n".join(chunks).split("\n") == lines


def test_split_cuts_an_over_long_line_between_characters():
    line = "码" * 1500  # 4,500 bytes
    chunks = split_text(line)
    assert [len(c.encode("utf-8")) <= MAX_BYTES for c in chunks] == [True, True, True]
    assert "".join(chunks) == line


def test_buttons_are_numbered_across_the_replies_of_one_answer():
    replies = [Reply("A", [[Button("一", "shop"), Button("二", "help")]]), Reply("B", [[Button("三", "menu")]])]
    rendered = WeChatRenderer(TR).render(replies, "zh_CN")
    assert rendered.messages == ["A\n回复 1 → 一\n回复 2 → 二\n\nB\n回复 3 → 三"]
    assert rendered.buttons == {"1": "shop", "2": "help", "3": "menu"}


def test_in_the_quantity_step_the_number_is_the_quantity_and_back_is_zero():
    quick = [Button(str(q), f"qty:7:{q}") for q in (1, 2, 3, 5)]
    rendered = WeChatRenderer(TR).render([Reply("购买数量？（1–8）", [quick, [Button("返回", "prod:3")]])], "zh_CN")
    assert rendered.messages == ["购买数量？（1–8）\n回复数字即可选择数量，例如 1。\n回复 0 → 返回"]
    assert rendered.buttons == {"1": "qty:7:1", "2": "qty:7:2", "3": "qty:7:3", "5": "qty:7:5", "0": "prod:3"}
    assert rendered.quantity_sku == "7"


def test_invoice_without_a_pay_link_says_payment_is_not_configured():
    reply = Reply("订单 K1", invoice=Invoice("KABCDEFGHJKL", "60 结晶", "d", 600, "CNY"))
    text = WeChatRenderer(TR).render([reply], "zh_CN").messages[0]
    assert "KABCDEFGHJKL" in text
    assert "¥6.00" in text
    assert "在线支付尚未开通" in text


def test_invoice_with_a_pay_link_shows_it():
    class SignedLinks(WeChatRenderer):
        def render_invoice(self, reply, lang):  # another module may override the whole rendering
            return f"{reply.text} → https://pay.example/{reply.invoice.order_ref}"

    reply = Reply("订单", invoice=Invoice("KABCDEFGHJKL", "x", "d", 600, "CNY"))
    assert SignedLinks(TR).render([reply], "zh_CN").messages == ["订单 → https://pay.example/KABCDEFGHJKL"]


def test_delivery_is_one_message_codes_one_per_line():
    text = WeChatRenderer(TR).delivery(Reply("订单 K1 的卡密：", codes=["AAAA-1", "BBBB-2"]), "zh_CN")
    assert text == "订单 K1 的卡密：\nAAAA-1\nBBBB-2"


def test_delivery_too_long_for_one_message_shows_what_fits_and_points_to_my_orders():
    codes = [f"CODE-{i:04d}-" + "X" * 40 for i in range(100)]
    reply = Reply("订单 K1 的卡密：", document=Document("K1.txt", ("\n".join(codes) + "\n").encode()))
    text = WeChatRenderer(TR).delivery(reply, "zh_CN")
    assert len(text.encode("utf-8")) <= MAX_BYTES
    shown = [line for line in text.split("\n") if line.startswith("CODE-")]
    assert shown == codes[:len(shown)]
    assert f"已显示 100 个卡密中的 {len(shown)} 个" in text

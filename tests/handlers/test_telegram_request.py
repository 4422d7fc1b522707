"""handlers/telegram/request.py against the fake Bot API server: wire format, error mapping, uploads, no token leaks."""

from __future__ import annotations

import pytest
from telegram import Bot
from telegram.error import Forbidden, NetworkError, RetryAfter

from fulfillment.delivery import PermanentFailure, RetryLater
from handlers.telegram.channel import TelegramSender
from handlers.telegram.pacing import Pacer
from handlers.telegram.request import AiohttpRequest, BotApi
from handlers.types import Button, Document, Reply
from tests.fakes.loopback import free_port
from tests.fakes.telegram_bot_api import FakeTelegram


@pytest.fixture(autouse=True)
def _timedelta_retry_after(monkeypatch):
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # as bot/telegram.py opts in


@pytest.fixture
async def fake():
    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()


def _bot(base_url: str, token: str) -> Bot:
    return Bot(token, base_url=base_url, base_file_url=base_url, request=AiohttpRequest(pool_size=4),
               get_updates_request=AiohttpRequest(pool_size=1))


async def test_json_call_arrives_as_the_bot_api_expects_and_errors_map_to_ptb_classes(fake):
    async with _bot(fake.base_url, fake.token) as bot:
        api = BotApi(bot)
        result = await api.call("sendMessage", chat_id=42, text="<b>hi</b>", parse_mode="HTML",
                                reply_markup={"inline_keyboard": [[{"text": "Buy", "callback_data": "b:1"}]]},
                                message_thread_id=None)
        assert result["chat"]["id"] == 42
        sent = fake.sent("sendMessage")[-1]
        assert (int(sent["chat_id"]), sent["text"], sent["parse_mode"]) == (42, "<b>hi</b>", "HTML")
        assert sent["reply_markup"] == {"inline_keyboard": [[{"text": "Buy", "callback_data": "b:1"}]]}
        assert "message_thread_id" not in sent  # None means "not sent", as PTB does

        fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
        with pytest.raises(RetryAfter) as limited:
            await api.call("sendMessage", chat_id=42, text="again")
        assert limited.value.retry_after.total_seconds() == 7
        fake.fail_chat(43, 403, "Forbidden: bot was blocked by the user")
        with pytest.raises(Forbidden):
            await api.call("sendMessage", chat_id=43, text="blocked")


async def test_sender_maps_429_to_retry_later_and_403_to_permanent_failure(fake):
    async with _bot(fake.base_url, fake.token) as bot:
        sender = TelegramSender(bot, Pacer(0.0, 1000.0))
        fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
        with pytest.raises(RetryLater):
            await sender.send("44", Reply("codes", codes=["AAA-1"]))
        await sender.send("44", Reply("codes", codes=["AAA-1"], buttons=[[Button("More", "m:1")]]))
        sent = fake.sent("sendMessage")[-1]
        assert "<code>AAA-1</code>" in sent["text"]
        assert sent["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "m:1"
        fake.fail_chat(45, 403, "Forbidden: bot was blocked by the user")
        with pytest.raises(PermanentFailure):
            await sender.send("45", Reply("codes", codes=["AAA-2"]))


async def test_documents_go_as_multipart_through_ptb(fake):
    async with _bot(fake.base_url, fake.token) as bot:
        sender = TelegramSender(bot, Pacer(0.0, 1000.0))
        await sender.send("46", Reply("your codes", document=Document("codes.txt", b"X-1\nX-2\n")))
        sent = fake.sent("sendDocument")[-1]
        assert sent["document"] == {"filename": "codes.txt", "content": b"X-1\nX-2\n"}
        assert sent["caption"] == "your codes"


async def test_unreachable_server_is_a_network_error_that_does_not_show_the_token():
    token = "123456:SECRET-token-value"
    bot = _bot(f"http://127.0.0.1:{free_port()}/bot", token)  # not initialised: that would call getMe
    try:
        with pytest.raises(NetworkError) as failed:
            await BotApi(bot).call("sendMessage", chat_id=1, text="x")
        assert "SECRET" not in str(failed.value)
        assert "SECRET" not in repr(failed.value.__cause__)
    finally:
        await bot.request.shutdown()


async def test_a_request_object_refuses_calls_after_shutdown(fake):
    request = AiohttpRequest()
    bot = Bot(fake.token, base_url=fake.base_url, request=request)
    async with bot:
        await BotApi(bot).call("sendMessage", chat_id=1, text="x")
    with pytest.raises(NetworkError):  # PTB wraps the RuntimeError of a shut-down request
        await BotApi(bot).call("sendMessage", chat_id=1, text="late")

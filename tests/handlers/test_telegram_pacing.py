"""The Telegram sending pace (handlers/telegram/pacing.py), on a clock the test moves."""

from __future__ import annotations

import asyncio

import pytest

from handlers.telegram.pacing import Lane, Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def test_a_chat_gets_its_burst_at_once_then_one_message_a_second():
    pacer = Pacer(1.0, 30.0, burst=4, clock=Clock())
    delays = [pacer.reserve("7") for _ in range(7)]
    assert delays == pytest.approx([0, 0, 0, 0, 1, 2, 3])


def test_the_bucket_refills_while_the_chat_is_quiet():
    clock = Clock()
    pacer = Pacer(1.0, 30.0, burst=4, clock=clock)
    for _ in range(4):
        pacer.reserve("7")
    clock.now += 2.5  # two and a half tokens back
    assert [pacer.reserve("7") for _ in range(3)] == pytest.approx([0, 0, 0.5])


def test_edits_have_their_own_bucket_per_chat():
    clock = Clock()
    pacer = Pacer(1.0, 30.0, burst=4, edit_burst=5, clock=clock)
    for _ in range(4):
        pacer.reserve("7")
    assert [pacer.edits.reserve("7") for _ in range(6)] == pytest.approx([0, 0, 0, 0, 0, 1])


def test_overall_at_most_the_rate_in_any_window_and_at_once_below_it():
    pacer = Pacer(1.0, 30.0, burst=1, clock=Clock())
    delays = [pacer.reserve_global() for _ in range(31)]
    assert delays[:30] == [0.0] * 30  # answers are not spaced 33 ms apart when the bot is quiet
    assert delays[30] == pytest.approx(1.0)


def test_a_chat_waiting_for_its_own_bucket_delays_no_other_chat():
    """A flooding chat has reserved messages seconds ahead; another chat's message still goes at once."""
    clock = Clock()
    pacer = Pacer(1.0, 30.0, burst=4, clock=clock)
    ahead = [pacer.reserve("flood") for _ in range(20)]
    assert max(ahead) == pytest.approx(16)
    assert pacer.reserve("buyer") == 0
    assert pacer.reserve_global() == 0  # the flooder's future messages hold no place in the overall window


async def test_waits_are_counted(monkeypatch):
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("handlers.telegram.pacing.asyncio.sleep", sleep)
    pacer = Pacer(1.0, 30.0, burst=2, clock=Clock())
    for _ in range(3):
        await pacer.wait("7")
    await pacer.wait_edit("7")
    assert (pacer.chat_waits, pacer.global_waits, slept) == (1, 0, [pytest.approx(1.0)])


class Held:
    """asyncio.sleep for the pacer under test: returns only once the test has moved the clock far enough."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.real = asyncio.sleep

    async def sleep(self, seconds: float) -> None:
        until = self.clock.now + seconds
        while self.clock.now < until:
            await self.real(0)

    async def settle(self) -> None:
        for _ in range(50):
            await self.real(0)


async def _queue(pacer: Pacer, released: list[str], name: str, lane: Lane) -> asyncio.Task[None]:
    async def send() -> None:
        await pacer.wait(name, lane)
        released.append(name)

    return asyncio.get_running_loop().create_task(send())


async def test_a_delivery_queued_last_overtakes_the_browsing_queued_for_the_window(monkeypatch):
    clock = Clock()
    held = Held(clock)
    monkeypatch.setattr(asyncio, "sleep", held.sleep)
    pacer = Pacer(1.0, 5.0, burst=1, clock=clock)
    for _ in range(5):
        await pacer.acquire()  # the window (5 a second) is full
    released: list[str] = []
    tasks = [await _queue(pacer, released, f"menu{n}", Lane.BROWSE) for n in range(12)]
    await held.settle()
    tasks.append(await _queue(pacer, released, "codes", Lane.DELIVERY))  # a buyer's codes, queued last
    await held.settle()
    assert released == []
    clock.now += 1.0  # five places free: the codes go first
    await held.settle()
    assert released == ["codes"]
    for n in range(9):  # then the menus in their order, evenly spaced (5 a second), never a lump of five
        clock.now += 0.2 + 1e-9  # (a hair over: the clock's sums of 0.2 are not exact)
        await held.settle()
        assert len(released) == n + 2
    assert released == ["codes", *(f"menu{n}" for n in range(9))]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_broadcasts_are_never_released_before_a_queued_delivery(monkeypatch):
    clock = Clock()
    held = Held(clock)
    monkeypatch.setattr(asyncio, "sleep", held.sleep)
    pacer = Pacer(1.0, 5.0, burst=1, clock=clock)
    for _ in range(5):
        await pacer.acquire()
    released: list[str] = []
    tasks = [await _queue(pacer, released, f"news{n}", Lane.BROADCAST) for n in range(10)]
    tasks.append(await _queue(pacer, released, "menu", Lane.BROWSE))
    await held.settle()
    tasks += [await _queue(pacer, released, f"codes{n}", Lane.DELIVERY) for n in range(2)]
    await held.settle()
    for _ in range(4):
        clock.now += 0.5
        await held.settle()
    assert released[:3] == ["codes0", "codes1", "menu"]
    assert all(name.startswith("news") for name in released[3:])
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_broadcasts_leave_room_so_a_delivery_goes_at_once():
    clock = Clock()
    pacer = Pacer(1.0, 30.0, burst=1, clock=clock)
    for _ in range(24):  # a broadcast takes at most four fifths of the window
        await pacer.acquire(Lane.BROADCAST)
    waiting = asyncio.get_running_loop().create_task(pacer.acquire(Lane.BROADCAST))
    await asyncio.sleep(0)
    assert not waiting.done()  # the 25th broadcast waits for the window
    await asyncio.wait_for(pacer.wait("buyer", Lane.DELIVERY), 0.5)  # the codes do not
    await asyncio.wait_for(pacer.wait("shopper"), 0.5)  # nor a menu
    assert pacer.global_waits == 1
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)


def test_an_instance_keeps_to_its_share_of_the_bots_overall_rate():
    """Three instances sending for one bot: each fills at most a third of Telegram's 30 a second; one alone again
    gets the whole window back, and the places it took in the meantime still count."""
    clock = Clock()
    pacer = Pacer(0.0, 30.0, burst=100, clock=clock)
    pacer.share(3)
    waits = [pacer.reserve_global() for _ in range(12)]
    assert waits[:10] == [0.0] * 10  # ten a second: a third of 30
    assert waits[10] == pytest.approx(1.0)
    assert pacer.paid_broadcasts.size == 334  # a third of 1000 a second, rounded up to whole places
    clock.now += 2.0
    pacer.share(1)
    assert [pacer.reserve_global() for _ in range(30)] == [0.0] * 30
    assert pacer.reserve_global() > 0
    pacer.share(0)  # nobody counted (the lease table was just emptied): never more than the whole rate
    assert pacer.shares == 1

"""The built-in FAQ matcher, built once per shop off the event loop: the composition root makes one and starts
its build (jieba's dictionary: about 2 s of CPU the first time in a process) so the first customer question is
not the one that waits for it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from handlers.faq.matcher import FaqMatcher


class BuiltinMatcher:
    def __init__(self, build: Callable[[], FaqMatcher] = FaqMatcher.default) -> None:
        self._build = build
        self._lock = threading.Lock()  # held while building
        self._start = threading.Lock()  # never held long: prewarm runs on the event loop
        self._matcher: FaqMatcher | None = None
        self._started = False

    def prewarm(self) -> None:
        """Start building in a background thread (once)."""
        with self._start:
            if self._matcher is not None or self._started:
                return
            self._started = True
        threading.Thread(target=self.build, name="faq-prewarm", daemon=True).start()

    def build(self) -> FaqMatcher:
        with self._lock:
            if self._matcher is None:
                self._matcher = self._build()
            return self._matcher

    async def get(self) -> FaqMatcher:
        """The matcher; built now (in a worker thread) if the prewarm has not finished."""
        return self._matcher if self._matcher is not None else await asyncio.to_thread(self.build)

"""The fake Bot API's update queue and getUpdates long polling, as Telegram keeps them.

Telegram keeps one queue per bot, not per connection: an update is forgotten only once a getUpdates
asks for an offset above it (the confirmation). So a bot process started after another one stopped
gets only what was never confirmed, even when it starts with offset 0: no replay of old updates.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from deploycheck.telegram.fake_model import ApiError

MAX_POLL_TIMEOUT = 50.0


class UpdateQueue:
    """Pending updates and the polls waiting for them."""

    def __init__(self) -> None:
        self._pending: list[dict] = []
        self._next_id = 1
        self._wakeup = asyncio.Event()
        self.polls_in_flight = 0
        self.last_poll_end = 0.0
        self.closing = False

    def wake(self) -> None:
        """Release every held poll so it looks again (a new update, an outage, a stop)."""
        self._wakeup.set()
        self._wakeup = asyncio.Event()     # a fresh event: no waiter can miss a set by clearing it

    def push(self, **payload) -> dict:
        update = {"update_id": self._next_id, **payload}
        self._next_id += 1
        self._pending.append(update)
        self.wake()
        return update

    def __len__(self) -> int:
        return len(self._pending)

    def confirm(self, offset: int) -> None:
        """Forget what the offset confirms. A negative offset keeps only the last -offset updates."""
        if offset > 0:
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
        elif offset < 0:
            self._pending = self._pending[offset:]

    def drop_pending(self) -> None:
        """deleteWebhook / setWebhook with drop_pending_updates=True."""
        self._pending = []

    async def poll(self, offset: int, limit: int, timeout: float, is_down: Callable[[], bool]) -> list:
        """Updates at once when some are pending, else wait up to `timeout` s (capped) and answer [].
        `is_down` is asked after each wake-up: an outage answers the held poll with 502, as the
        connection of a real one would fail."""
        self.confirm(offset)
        timeout = max(0.0, min(timeout, MAX_POLL_TIMEOUT))
        self.polls_in_flight += 1
        try:
            deadline = time.monotonic() + timeout
            while not self._pending and not self.closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(self._wakeup.wait(), left)
                except asyncio.TimeoutError:
                    break
                if is_down():
                    raise ApiError(502, "Bad Gateway")
            return self._pending[:max(1, min(limit, 100))]
        finally:
            self.polls_in_flight -= 1
            self.last_poll_end = time.monotonic()

"""Send one text to many chats through the Bot API (deploy 6.3 maintenance notice, rollback 16.6).

A plain aiohttp loop rather than a bot library: we need exactly one method, our own pacing, and
full control over what reaches logs and exceptions (URLs carry the token).
Paced at `rate` messages per second (Telegram allows about 30/s for a bot); a 429 pauses every send
for its retry_after, then the same chat is retried; 403 means the user blocked the bot.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import aiohttp
from deploycheck.failure import CheckFailed

log = logging.getLogger(__name__)
NETWORK_RETRIES = 2


class BroadcastError(CheckFailed):  # a finding like any check's: its message is the cause
    pass


def _redact(text: str, token: str) -> str:
    return text.replace(token, "<token>") if token else text


async def _send_one(session: aiohttp.ClientSession, url: str, chat_id, text: str, token: str,
                    deadline: float) -> str:
    """'delivered', 'blocked' or 'failed' for one chat, waiting out 429s and brief outages."""
    network_errors = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "failed"
        try:
            async with session.post(url, data={"chat_id": str(chat_id), "text": text},
                                    timeout=aiohttp.ClientTimeout(total=min(left, 15.0))) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = {}
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as err:
            network_errors += 1
            log.warning("broadcast: chat %s: network error %s", chat_id, _redact(str(err), token) or type(err).__name__)
            if network_errors > NETWORK_RETRIES:
                return "failed"
            await asyncio.sleep(min(1.0 * network_errors, max(0.0, deadline - time.monotonic())))
            continue
        if status == 200 and body.get("ok"):
            return "delivered"
        if status == 429:
            retry_after = float((body.get("parameters") or {}).get("retry_after", 1))
            if time.monotonic() + retry_after > deadline:
                return "failed"
            log.info("broadcast: Telegram asked to wait %s s", retry_after)
            await asyncio.sleep(retry_after)
            continue
        if status == 403:
            return "blocked"
        if status >= 500 and network_errors < NETWORK_RETRIES:
            network_errors += 1
            await asyncio.sleep(1.0)
            continue
        log.warning("broadcast: chat %s: %s %s", chat_id, status, _redact(str(body.get("description")), token))
        return "failed"


async def broadcast(api_base_url: str, token: str, chat_ids: Iterable, text: str, rate: float = 25,
                    timeout: float = 120.0, counts: dict | None = None) -> dict:
    """Send `text` to every chat at most `rate` per second; give up after `timeout` s in total.

    Returns {"delivered": n, "failed": n, "blocked": n}; chats not reached in time count as failed.
    `api_base_url` is the server root (https://api.telegram.org, or a fake's url). Pass `counts` to watch
    progress while it runs as a task (and to keep the tally if the task is cancelled).
    """
    if not token:
        raise BroadcastError("no bot token given: set TELEGRAM_BOT_TOKEN")
    if rate <= 0:
        raise BroadcastError(f"rate must be positive, got {rate}")
    url = f"{api_base_url.rstrip('/')}/bot{token}/sendMessage"
    counts = counts if counts is not None else {}
    counts.update({"delivered": 0, "failed": 0, "blocked": 0})
    chats = list(chat_ids)
    deadline = time.monotonic() + timeout
    interval = 1.0 / rate
    try:
        async with aiohttp.ClientSession() as session:
            next_at = time.monotonic()
            for chat_id in chats:
                wait = next_at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                outcome = await _send_one(session, url, chat_id, text, token, deadline)
                counts[outcome] += 1
                # never schedule in the past: after a 429 pause the pace restarts instead of bursting
                next_at = max(next_at + interval, time.monotonic())
    except Exception as err:   # never let an URL with the token escape in a traceback
        raise BroadcastError(f"broadcast stopped after {sum(counts.values())} of {len(chats)} chats: "
                             f"{type(err).__name__}: {_redact(str(err), token)}") from None
    return counts

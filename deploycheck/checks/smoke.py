"""The checklist's smoke tests (11.1–11.6) and the response time check (13.4), through the bot's own screens.

What a person does for each item is the bot profile's (checklists/profiles/*.toml, run by
checks.conversation): the same functions drive bot-auto-order v0.7.0's menus and wizards, its latest
version's, or the old reference bot's commands. Each returns the evidence for the checklist's blank plus the
transcript; a failing step raises CheckFailed with the transcript. A step the version does not offer is in
the evidence under "Not Offered" (the blank says so): the caller must then ask for an attestation, never pass
silently. Test data: checks.smoke_data (marked DCSMOKE-, removed afterwards).
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

from deploycheck.checks.conversation import TAIL, Conversation
from deploycheck.checks.smoke_data import SmokeRun
from deploycheck.failure import CheckFailed
from deploycheck.telegram.driver import Driver, describe_all

BLANKS = {"11.1": "Bot Responding", "11.2": "Product Listing", "11.3": "Product Creation",
          "11.4": "Content Addition", "11.5": "Voucher System", "11.6": "Order Flow"}
NOT_OFFERED = "not offered by this bot version"


@dataclass
class SmokeOptions:
    """What the plugin's fixtures still hand out besides the profile: the test data's prefix (the smoke_run
    fixture cleans up by it). Replies, pacing and texts are the bot profile's."""
    reply_timeout: float = 10.0
    store_name: str | None = None
    prefix: str = "DCSMOKE-"


async def item(item_id: str, talk: Conversation, run: SmokeRun | None = None) -> dict:
    """Run one item's steps; the evidence: the blank ("OK", or what is not offered), values read, transcript."""
    outcome = await talk.run_item(item_id, run)
    evidence = outcome.evidence()
    missing = outcome.not_offered
    evidence[BLANKS[item_id]] = "OK" if not missing else f"{NOT_OFFERED}: " + "; ".join(m["what"] for m in missing)
    evidence["Bot Profile"] = talk.profile.name
    shown = {k: v for k, v in outcome.values.items() if k in ("listed_products", "list_pages")}
    return {**evidence, **shown}


async def bot_responds(talk: Conversation | Driver, opts: SmokeOptions | None = None) -> dict:
    """11.1: /start is answered with the welcome and its inline keyboard. Given a bare Driver (16.5, after a
    rollback: the previous release, whose screens no profile here describes), any welcome with an inline
    keyboard will do."""
    if isinstance(talk, Conversation):
        return await item("11.1", talk)
    opts = opts or SmokeOptions()
    talk.drain()
    started = time.monotonic()
    await talk.send("/start")
    messages = await talk.collect(opts.reply_timeout)
    if not messages:
        raise CheckFailed(f"after /start the bot showed nothing at all for {opts.reply_timeout:g} s; expected a "
                          "welcome with an inline keyboard. Check that the bot runs and polls, and that nothing "
                          "else consumes its updates (a second instance, a webhook).")
    inline = [t for m in messages for t in m.button_texts]
    if not inline:
        raise CheckFailed(f"after /start the user saw {describe_all(messages)}; expected an inline keyboard "
                          "under the welcome, there is none")
    return {"Bot Responding": "yes", "reply_ms": round((messages[0].received_at - started) * 1000, 1),
            "inline_buttons": inline, "welcome": next((m.text for m in messages if m.text), "")[:160]}


async def product_listing(talk: Conversation) -> dict:
    """11.2: every page of the product list; each product's stock and price as the database has them."""
    return await item("11.2", talk)


async def product_creation(talk: Conversation, run: SmokeRun) -> dict:
    """11.3: the admin creates a test product; the same code again is refused clearly, nothing written."""
    return await item("11.3", talk, run)


async def content_addition(talk: Conversation, run: SmokeRun) -> dict:
    """11.4: content added to a product raises its stock; a duplicate is refused (where the version offers it)."""
    return await item("11.4", talk, run)


async def voucher_limit(talk: Conversation, run: SmokeRun) -> dict:
    """11.5: a voucher with max_uses=2 made in the admin menu; redeemed up to its limit where the version can."""
    return await item("11.5", talk, run)


async def order_flow(talk: Conversation, run: SmokeRun) -> dict:
    """11.6: an order paid and delivered (content used, stock down, sold up); an inactive product not orderable."""
    return await item("11.6", talk, run)


# -- 13.4 -----------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: with few samples p95 is the slowest, which is the honest reading."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def response_time(talk: Conversation) -> dict:
    """13.4: the profile's timed steps (the welcome after /start: not the sticker, not a spam warning), repeated
    `tries` times, paced; p95 must stay under the item's limit (2 s)."""
    spec = talk.profile.item("13.4")
    times, transcript = [], []
    for attempt in range(1, spec.tries + 1):
        try:
            outcome = await talk.run_item("13.4")
        except CheckFailed as exc:
            raise CheckFailed(f"13.4 try {attempt} of {spec.tries} (earlier tries took "
                              f"{[round(t, 3) for t in times]} s): {exc}", exc.evidence) from None
        times += outcome.timings
        transcript += outcome.transcript
    if not times:
        raise CheckFailed(f"13.4: bot profile {talk.profile.name} times no step (mark the welcome's step "
                          "timed = true)")
    p50, p95 = statistics.median(times), percentile(times, 95)
    evidence = {"p50_ms": round(p50 * 1000, 1), "p95_ms": round(p95 * 1000, 1), "tries": len(times),
                "limit_s": spec.limit, "Transcript": transcript, "Bot Profile": talk.profile.name}
    if p95 >= spec.limit:
        raise CheckFailed(f"13.4: the bot answers too slowly: p95 {p95:.2f} s over {len(times)} tries (limit "
                          f"{spec.limit:g} s; p50 {p50:.2f} s; each: {[round(t, 2) for t in times]} s). The user "
                          "waits that long for every answer; check CPU, memory and query times (13.1–13.3). "
                          f"Transcript (last {TAIL} lines):\n" + "\n".join(transcript[-TAIL:]), evidence)
    return {"Bot responds within 2 seconds": f"yes (p95 {p95 * 1000:.0f} ms)", **evidence}

"""The product list as a person reads it: open it, take every page (pressing the next-page button, paced),
split each page into products with the profile's `split` and `entry` patterns, and compare each product's
stock and price with the database; or find one test product (for ordering) and make sure another is not
listed. Used by checks.conversation for a `list` step.

A profile's [list]: open (steps), page (a page's pattern), next (the next-page button), split (between
products), entry (named groups name, price, stock, and optionally code and index), page_size, limit (how many
products the bot lists at most), query (the products the bot should list, in its order: code, name,
price_cents, stock).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from deploycheck.checks import smoke_data
from deploycheck.infra.db import readonly
from deploycheck.telegram.driver import Message


@dataclass
class Entry:
    page: int
    name: str
    code: str | None
    index: str | None
    price_cents: int | None
    stock: int | None


def cents(text: str | None) -> int | None:
    """'35.000,00' or 'Rp 25.000' -> cents ('.' groups thousands, ',' starts the decimals)."""
    if text is None:
        return None
    whole, _, decimals = re.sub(r"[^\d,]", "", text).partition(",")
    return int(whole or 0) * 100 + int((decimals + "00")[:2])


def entries(messages: list[Message], listing: dict) -> list[Entry]:
    found = []
    for page, message in enumerate(messages, 1):
        for part in re.split(listing.get("split", r"\n\s*\n"), message.text):
            match = re.search(listing["entry"], part, re.M)
            if match is None:
                continue
            groups = match.groupdict()
            stock = groups.get("stock")
            found.append(Entry(page, (groups.get("name") or "").strip(), groups.get("code"), groups.get("index"),
                               cents(groups.get("price")), int(re.sub(r"\D", "", stock)) if stock else None))
    return found


async def pages(conv, n, step, person) -> list[Message]:
    """Open the list with the profile's `open` steps, then press `next` until there is none."""
    listing = conv.profile.listing
    first = None
    for i, opener in enumerate(listing.get("open", ()), 1):
        first = await conv.step(f"{n}.{i}", opener) or first
    shown = [first] if first is not None else []
    shown += [m for m in await person.driver.collect(conv.profile.settle, conv.profile.settle)
              if _page(m, listing, conv, person)]
    max_pages = int(listing.get("max_pages", 30))
    while len(shown) < max_pages and listing.get("next"):
        button = next((t for t in shown[-1].button_texts if re.search(listing["next"], t)), None)
        if button is None:
            break
        await person.pace(conv.profile.gap)
        conv.note(f"{n:>2} {person.role} presses [{button}]")
        await person.driver.click(button)
        shown.append(await conv.expect(n, step, person, listing["page"]))
    return shown


def _page(message: Message, listing: dict, conv, person) -> bool:
    conv._saw(person, message)
    return bool(re.search(listing["page"], message.text))


async def listed(conv) -> list[dict]:
    async with readonly(conv.db):
        return [dict(r) for r in await conv.db.fetch(conv.profile.listing["query"])]


def compare(found: list[Entry], rows: list[dict]) -> list[str]:
    """Each product the bot should list against what it shows: listed, stock, price. By code when the list
    shows codes, else by name (in order, so two products of one name pair up one to one)."""
    problems, left = [], list(found)
    for row in rows:
        entry = next((e for e in left if (e.code == row.get("code") if e.code else e.name == row["name"])), None)
        label = f"{row['name']} ({row['code']})" if row.get("code") else row["name"]
        if entry is None:
            problems.append(f"{label} is active but not listed")
            continue
        left.remove(entry)
        if entry.stock is None:
            problems.append(f"{label}: no stock shown")
        elif entry.stock != row["stock"]:
            problems.append(f"{label}: the user saw stock {entry.stock}, the database has {row['stock']}")
        if entry.price_cents is not None and entry.price_cents != row["price_cents"]:
            problems.append(f"{label}: the user saw price {entry.price_cents / 100:,.2f}, the database has "
                            f"{row['price_cents'] / 100:,.2f} rupiah")
    problems += [f"{e.name} is listed (page {e.page}) but is not an active product in the database" for e in left]
    return problems


async def read(conv, n, step, person) -> Message | None:
    mode = step.get("list")
    if mode not in ("compare", "find"):
        raise conv.fail(n, step, f"list = {mode!r}: the list step is 'compare' or 'find'")
    attempts = 2 if mode == "compare" else 1     # a live shop may sell between our read and the bot's: twice
    for attempt in range(1, attempts + 1):
        shown = await pages(conv, n, step, person)
        found = entries(shown, conv.profile.listing)
        conv.note(f"    {len(shown)} page(s), {len(found)} product(s) read")
        if mode == "find":
            return _find(conv, n, step, found, len(shown))
        problems = compare(found, await listed(conv))
        if not problems:
            conv.outcome.values.update({"listed_products": len(found), "list_pages": len(shown)})
            return shown[-1] if shown else None
        conv.note(f"    attempt {attempt}: " + "; ".join(problems[:8]))
    more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
    raise conv.fail(n, step, f"the product list does not match the database over {len(shown)} page(s): "
                             f"{'; '.join(problems[:8])}{more}. Check 12.2 (stock synchronization)")


def _find(conv, n, step, found: list[Entry], pages_read: int) -> None:
    values = conv.outcome.values
    absent = step.get("absent")
    if absent:
        shown = [e for e in found if e.name == values[f"{absent}_name"]]
        if shown:
            raise conv.fail(n, step, f"the inactive test product {values[f'{absent}_name']!r} is listed (page "
                                     f"{shown[0].page}): the user can open and order it (is_active = false)")
    wanted = values[f"{step.get('find')}_name"]
    entry = next((e for e in found if e.name == wanted), None)
    if entry is None:
        raise conv.fail(n, step, f"the test product {wanted!r} is not on any of the {pages_read} page(s) the "
                                 f"user read ({len(found)} products)")
    values[f"{step.get('find')}_index"] = entry.index or ""
    conv.note(f"    {wanted!r} is number {entry.index} on page {entry.page}")


async def fill_last_page(conv, n, step) -> bool:
    """Some bots (v0.7.0) put number buttons only on a full page, so a product on a short last page cannot be
    opened: add marked filler products until the new one ends a full page. Past the bot's `limit` the new
    product is not listed at all: then ordering through the list is not offered for this shop, which is
    recorded, and False says the item stops there."""
    listing = conv.profile.listing
    size, limit = int(listing.get("page_size", 5)), int(listing.get("limit", 10**6))
    count = len(await listed(conv))
    if count + 1 > limit:
        conv._not_offered(n, step, None, what=f"opening a new product from the list: the bot lists only the "
                                               f"first {limit} active products and this shop has {count}")
        return False
    fillers = (-(count + 1)) % size
    for i in range(1, fillers + 1):
        await smoke_data.create_test_product(conv.db, conv.run, f"F{i}", contents=1)
    if fillers:
        conv.note(f"{n:>2} {fillers} filler test product(s) written so the test product ends a full page")
    return True

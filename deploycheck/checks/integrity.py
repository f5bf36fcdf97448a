"""Data integrity (12.1-12.3) and, beyond the checklist under 12.2, stock kept. Each query returns the
violating rows (dbt's rule): zero rows pass, the first rows are the evidence."""
from __future__ import annotations

import asyncpg

from deploycheck import attest
from deploycheck.checks.expected import EXAMPLES, ROLLBACK, short
from deploycheck.checks.state import DUPLICATE_CONTENTS, STOCK_MISMATCHES
from deploycheck.failure import CheckFailed
from deploycheck.infra.db import readonly, violations

ORPHANS = """
    SELECT 'order_items without product' AS kind, oi.id::text AS row_id, oi.product_id::text AS points_to
    FROM order_items oi WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.id = oi.product_id)
    UNION ALL
    SELECT 'order_items without order', oi.id::text, oi.order_id::text
    FROM order_items oi WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = oi.order_id)
    UNION ALL
    SELECT 'product_contents without product', pc.id::text, pc.product_id::text
    FROM product_contents pc WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.id = pc.product_id)
    UNION ALL
    SELECT 'product_contents pointing to a missing order', pc.id::text, pc.used_by_order_id::text
    FROM product_contents pc WHERE pc.used_by_order_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = pc.used_by_order_id)
    UNION ALL
    SELECT 'orders without user', o.id::text, o.user_id::text
    FROM orders o WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = o.user_id)
    UNION ALL
    SELECT 'payments without order', pm.id::text, pm.order_id::text
    FROM payments pm WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = pm.order_id)"""


async def check_duplicates(conn: asyncpg.Connection) -> dict:
    """12.1: no content twice (each row: content md5 prefix, copies, ids; never the content, a credential)."""
    count, rows = await violations(conn, DUPLICATE_CONTENTS, EXAMPLES)
    evidence = {"Duplicates": count}
    if count:
        evidence["Duplicate examples"] = rows
        raise CheckFailed(f"Duplicates: expected 0, found {count} contents stored more than once (first: content ids "
                          f"{rows[0]['content_ids']}). Each copy can be sold to two customers: resolve them (keep one, "
                          "move the others to the quarantine table) before the bot sells them, " + ROLLBACK + ".",
                          evidence)
    return evidence


async def check_stock_sync(conn: asyncpg.Connection) -> dict:
    """12.2: products.stock equals the product's unused contents, for every product."""
    count, rows = await violations(conn, STOCK_MISMATCHES, EXAMPLES)
    evidence = {"Mismatches": count}
    if count:
        evidence["Mismatch examples"] = rows
        first = ", ".join(f"{r['code']} stock {r['stock']} vs {r['unused_contents']} unused" for r in rows[:3])
        raise CheckFailed(f"Mismatches: expected 0, found {count} products whose stock differs from their unused "
                          f"contents ({first}). The bot shows and sells by products.stock: recount it (UPDATE products "
                          "SET stock = unused contents), then run this check again.", evidence)
    return evidence


async def check_stock_kept(conn: asyncpg.Connection, before: dict, attested=None) -> dict:
    """Beyond the checklist: products that had stock before (preflight 5.3 "stock") and have none now.
    A recount sends admin-typed stock with no contents behind it to zero; that fails unless the 12.2
    attestation (attest.Attestation) names each such product."""
    had = {int(k): int(v) for k, v in before.items() if v is not None and int(v) > 0}
    async with readonly(conn):
        found = await conn.fetch("""
            SELECT b.product_id, p.code, b.before, p.stock AS now,
                   CASE WHEN p.id IS NULL THEN 'product gone' ELSE 'no stock' END AS what
            FROM unnest($1::int[], $2::int[]) AS b(product_id, before)
            LEFT JOIN products p ON p.id = b.product_id
            WHERE coalesce(p.stock, 0) <= 0 ORDER BY b.before DESC, b.product_id""", list(had), list(had.values()))
    count, rows = len(found), [dict(r) for r in found[:20]]
    evidence = {"Products Lost Stock": count}
    if count:
        evidence["Lost stock"] = rows
        listed = short((f"{r['code'] or r['product_id']} (was {r['before']})" for r in rows), 6)
        lost = [{"code": r["code"], "id": r["product_id"]} for r in found]
        problem = attest.acceptance_problem("12.2", attested, lost)
        if not problem:
            evidence["Lost stock accepted"] = attested.text
            return evidence
        if attested is None:
            raise CheckFailed(f"{count} products had stock before the migration and have none now: {listed}. "
                              "Customers no longer see them for sale; usually an admin typed their stock with no "
                              "contents behind it and v0.7.0 recounts stock from unused contents. Upload their "
                              "contents, or if the owner accepts it, attest it by name in the --attestations file: "
                              + attest.file_entry("12.2", [str(p["code"] or p["id"]) for p in lost]), evidence)
        raise CheckFailed(problem, evidence)
    return evidence


async def check_orphans(conn: asyncpg.Connection) -> dict:
    """12.3: order items without product or order, contents without product or pointing to a missing order,
    orders without user, payments without order."""
    count, rows = await violations(conn, ORPHANS, EXAMPLES)
    evidence = {"Orphans": count}
    if count:
        async with readonly(conn):
            kinds = {r[0]: r[1] for r in await conn.fetch(f"SELECT kind, count(*) FROM ({ORPHANS}) o GROUP BY kind")}
        evidence.update({"Orphans by kind": kinds, "Orphan examples": rows})
        raise CheckFailed(f"Orphans: expected 0, found {count} ({', '.join(f'{n} {k}' for k, n in kinds.items())}). "
                          "A foreign key was dropped, disabled or never validated: restore the referenced rows from "
                          f"the preflight backup and re-add the foreign key, {ROLLBACK}.", evidence)
    return evidence



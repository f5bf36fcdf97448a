"""Performance (13.1-13.3, 15.5): the bot process's CPU and memory sampled over a few seconds, and each
critical query's plan (can it use its index?)."""
from __future__ import annotations

import asyncio
import json

import asyncpg
import psutil

from deploycheck.checks.expected import ROLLBACK, norm
from deploycheck.failure import CheckFailed
from deploycheck.infra.db import readonly

MB = 1024 ** 2


async def sample(pids: list[int], seconds: float = 3.0) -> dict:
    """CPU percent over the interval and resident memory of the bot's processes (children included)."""
    processes = []
    for pid in pids:
        try:
            main = psutil.Process(pid)
            processes += [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    if not processes:
        raise CheckFailed(f"no bot process found (pids {pids}); is the bot running?")
    for process in processes:
        process.cpu_percent(None)  # the first reading only starts the interval
    await asyncio.sleep(seconds)
    cpu = rss = 0.0
    for process in processes:
        try:
            cpu += process.cpu_percent(None)
            rss += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return {"CPU": round(cpu, 1), "RSS": round(rss / MB, 1), "Processes": len(processes),
            "Sampled Seconds": seconds}


# ---------------------------------------------------------------------------- 13.3 query plans
def plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def describe_plan(plan: dict) -> str:
    """The scans of a plan: "Index Scan using idx_x on t", "Seq Scan on t"."""
    scans = []
    for node in plan_nodes(plan):
        if "Index Name" in node or "Relation Name" in node:
            text = node["Node Type"]
            if "Index Name" in node:
                text += f" using {node['Index Name']}"
            if "Relation Name" in node:
                text += f" on {node['Relation Name']}"
            scans.append(text + (" (disabled)" if node.get("Disabled") else ""))
    return ", ".join(scans) or plan.get("Node Type", "?")


async def query_args(conn: asyncpg.Connection, query: dict) -> list:
    """A critical query's $1: a real value from its `sample` query, else its `fallback`."""
    if "$1" not in query["sql"]:
        return []
    value = await conn.fetchval(query["sample"]) if query.get("sample") else None
    return [value if value is not None else query.get("fallback")]


async def check_query_plan(conn: asyncpg.Connection, query: dict) -> dict:
    """13.3 for one critical query: the natural plan and timing are recorded (a sequential scan on a small
    table is right); with sequential scans discouraged the plan must use one of the query's indexes."""
    sql, wanted = query["sql"], query["indexes"]
    async with readonly(conn):
        args = await query_args(conn, query)
        natural = json.loads(await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args))[0]
        await conn.execute("SET LOCAL enable_seqscan = off")
        forced = json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))[0]
    used = {n["Index Name"] for n in plan_nodes(forced["Plan"]) if "Index Name" in n}
    evidence = {query["name"]: f"{describe_plan(natural['Plan'])}, {natural.get('Execution Time', 0):.2f} ms; "
                               f"seqscan off: {describe_plan(forced['Plan'])}"}
    if not used & set(wanted):
        raise CheckFailed(f"{query['name']}: the plan cannot use {' or '.join(wanted)} (with sequential scans "
                          f"discouraged it is: {describe_plan(forced['Plan'])}). The index is missing, invalid or does "
                          "not match the query (see 8.2): create it with CREATE INDEX CONCURRENTLY as the migration "
                          f"defines it, {ROLLBACK}. Query: {norm(sql)}", evidence)
    return evidence

"""Performance (13.1-13.3, 15.5): the bot's processes' CPU and memory sampled over a few seconds on the bot's
host (its /proc, read through the host: never this machine's, unless it is the host), and each critical
query's plan (can it use its index?)."""
from __future__ import annotations

import asyncio
import json
import shlex

import asyncpg

from deploycheck.checks.expected import ROLLBACK, norm
from deploycheck.failure import CheckFailed
from deploycheck.infra.db import LOCK_TIMEOUT, STATEMENT_TIMEOUT, readonly
from deploycheck.infra.host import BotHost

MB = 1024 ** 2
# One snapshot of every process (its stat line: pid, comm, ppid, utime, stime, rss) and the host's uptime,
# twice, `seconds` apart, in one command: the interval is the host's own, not an ssh round trip's.
SNAPSHOT = ("snap() { echo \"@uptime $(cut -d' ' -f1 /proc/uptime)\"; for f in /proc/[0-9]*/stat; do "
            "read -r line < \"$f\" 2>/dev/null && echo \"$line\"; done; }; "
            "echo \"@tck $(getconf CLK_TCK) $(getconf PAGESIZE)\"; snap; sleep {seconds}; echo @second; snap")


def parse_snapshots(text: str) -> tuple[dict, dict, dict]:
    """The host's clock ticks and page size, and per snapshot {pid: (ppid, cpu ticks, rss pages)} with uptime."""
    units, snaps = {}, [{}, {}]
    which = 0
    for line in text.splitlines():
        if line.startswith("@tck"):
            tck, page = line.split()[1:3]
            units = {"tck": int(tck), "page": int(page)}
        elif line == "@second":
            which = 1
        elif line.startswith("@uptime"):
            snaps[which]["uptime"] = float(line.split()[1])
        elif ")" in line:  # a command name may hold spaces and parentheses: the fields start after the last ")"
            pid, fields = int(line.split(" ", 1)[0]), line.rsplit(")", 1)[1].split()
            snaps[which][pid] = (int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[21]))
    return units, snaps[0], snaps[1]


def with_children(roots: list[int], snap: dict) -> list[int]:
    """The bot's processes and every process under them (a launcher's child, a worker)."""
    found, queue = [], [pid for pid in roots if pid in snap]
    while queue:
        pid = queue.pop(0)
        if pid not in found:
            found.append(pid)
            queue += [p for p, row in snap.items() if p != "uptime" and row[0] == pid]
    return found


def command_lines(host: BotHost, pids: list[int]) -> dict[int, str]:
    """Each process's command line, read on the host: the evidence that the right processes were sampled."""
    script = "; ".join(f"printf '%s ' {p}; tr '\\0' ' ' < /proc/{p}/cmdline 2>/dev/null; echo" for p in pids)
    lines = host.run(script, timeout=15).stdout.splitlines()
    return {int(pid): rest.strip()[:300] for pid, _, rest in (line.partition(" ") for line in lines) if pid.isdigit()}


async def sample(host: BotHost, pids: list[int], seconds: float = 3.0) -> dict:
    """CPU percent over the interval and resident memory of the bot's processes (children included), read from
    the host's /proc; each process named by its command line."""
    command = SNAPSHOT.replace("{seconds}", shlex.quote(f"{seconds:g}"))
    result = await asyncio.to_thread(host.run, command, int(seconds) + 30)
    units, first, second = parse_snapshots(result.stdout)
    if not units or "uptime" not in second:
        raise CheckFailed(f"could not read /proc on {host.name} (exit {result.rc}: {result.stderr.strip()[-200:]}); "
                          "CPU and memory are read from the host's /proc (Linux)")
    sampled = [pid for pid in with_children(pids, first) if pid in second]
    if not sampled:
        raise CheckFailed(f"no bot process found on {host.name} (pids {pids}); is the bot running there?")
    elapsed = max(second["uptime"] - first["uptime"], 0.01)
    names = command_lines(host, sampled)
    rows = []
    for pid in sampled:
        ticks = second[pid][1] - first[pid][1]
        rows.append({"PID": pid, "Command": names.get(pid, "?"),
                     "CPU": round(100 * ticks / units["tck"] / elapsed, 1),
                     "RSS": round(second[pid][2] * units["page"] / MB, 1)})
    return {"CPU": round(sum(r["CPU"] for r in rows), 1), "RSS": round(sum(r["RSS"] for r in rows), 1),
            "Processes": rows, "Sampled Seconds": round(elapsed, 2), "Sampled On": host.name}


async def bot_usage(service, host: BotHost, pids: list[int], seconds: float = 3.0) -> dict:
    """13.1, 13.2, 15.5: the service's processes sampled on the bot's host. A rehearsal's bot runs on this
    machine: its process ids mean something on the host only when the host is this machine; elsewhere the
    figures would be of whatever process has that id there, so that is said instead of measured."""
    if not pids:
        raise CheckFailed(f"{service.name} ({service.kind}) reports no running process on {host.name}: is it "
                          "running? (a compose service's container must be running for docker to name its process)")
    if service.kind == "process" and not await asyncio.to_thread(host.is_this_machine):
        raise CheckFailed(f"the rehearsal's bot runs on this machine, and {host.name} is another machine: its "
                          "processes cannot be sampled there. Rehearse with --host local (or an ssh host that is "
                          "this machine); against production the service's own processes are sampled on the host")
    return await sample(host, pids, seconds)


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


async def _forced_plan(conn: asyncpg.Connection, sql: str, args: list) -> dict:
    """The plan with sequential scans discouraged: which indexes the query can use (inside readonly)."""
    await conn.execute("SET LOCAL enable_seqscan = off")
    return json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))[0]


MAX_ALTERNATIVES = 5  # indexes tried per query: more would be a query the release over-indexes


async def indexes_usable(copy: asyncpg.Connection, query: dict) -> set[str]:
    """The indexes a critical query can use with sequential scans discouraged, on the migrated copy (5.3; never
    production: it drops indexes, in a transaction it rolls back): the one its plan takes, then, that one dropped,
    the next, and so on. The planner picks among them by the statistics, which differ between the copy and
    production after the window (bot-auto-order's "active products of a category" takes idx_products_active on
    the copy and idx_products_category on production), so 13.3 accepts any of them."""
    usable: set[str] = set()
    transaction = copy.transaction()
    await transaction.start()
    try:
        await copy.execute(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'; "
                           f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        args = await query_args(copy, query)
        for _ in range(MAX_ALTERNATIVES):
            forced = await _forced_plan(copy, query["sql"], args)
            used = {n["Index Name"] for n in plan_nodes(forced["Plan"]) if "Index Name" in n} - usable
            if not used:
                break
            usable |= used
            try:
                async with copy.transaction():  # a savepoint: an index a constraint needs cannot be dropped
                    for name in used:
                        await copy.execute(f'DROP INDEX "{name.replace(chr(34), chr(34) * 2)}"')
            except asyncpg.PostgresError:
                break
    finally:
        await transaction.rollback()
    return usable


async def check_query_plan(conn: asyncpg.Connection, query: dict) -> dict:
    """13.3 for one critical query: the natural plan and timing are recorded (a sequential scan on a small
    table is right); with sequential scans discouraged the plan must use one of the query's indexes (those
    the release's migration gave it on the copy, or the expected file's)."""
    sql, wanted = query["sql"], query["indexes"]
    async with readonly(conn):
        args = await query_args(conn, query)
        natural = json.loads(await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args))[0]
        forced = await _forced_plan(conn, sql, args)
    used = {n["Index Name"] for n in plan_nodes(forced["Plan"]) if "Index Name" in n}
    evidence = {query["name"]: f"{describe_plan(natural['Plan'])}, {natural.get('Execution Time', 0):.2f} ms; "
                               f"seqscan off: {describe_plan(forced['Plan'])}"}
    if not wanted:  # a query this release does not index (its bot may not run it): nothing regressed, said so
        evidence["Index"] = "none: the release's migration gives this query no index (on the rehearsal's copy either)"
        return evidence
    if not used & set(wanted):
        raise CheckFailed(f"{query['name']}: the plan cannot use {' or '.join(wanted)} (with sequential scans "
                          f"discouraged it is: {describe_plan(forced['Plan'])}). The index is missing, invalid or does "
                          "not match the query (see 8.2): create it with CREATE INDEX CONCURRENTLY as the migration "
                          f"defines it, {ROLLBACK}. Query: {norm(sql)}", evidence)
    return evidence

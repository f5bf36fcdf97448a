"""How long the v0.6 baseline takes to generate, and the v0.7.0 migration to run, at a few scales.

    python benchmarks/bench_migration.py                 # scales 1 and 1000, throwaway embedded server
    python benchmarks/bench_migration.py --scale 1 --scale 100 --dsn postgresql://.../postgres

Prints figures, asserts nothing. The migration is run the way the checklist runs it (step 7.3), as a
subprocess: once with --dry-run (what preflight predicts), once for real (what the window costs); then
where the real run's time went, its slowest statements by the runner's own timings ("timings" in its
--json summary). With --prebuilt the migration's plain indexes are first built CONCURRENTLY, as preflight
does before the window (3.3+indexes), so the figures are the window's.
The issue's budget: generating scale 1000 well under a minute, the migration under 60 s.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import time
import uuid
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's deploycheck, not an installed one
from deploycheck.infra.embedded import EmbeddedPostgres  # noqa: E402
from deploycheck.resources import ROOT  # noqa: E402  (the migration, its runner, the generator)

RUNNER = ROOT / "scripts" / "run_migration.py"
MIGRATION = ROOT / "scripts" / "migrations" / "001_fix_schema_constraints.sql"


def _generator():
    spec = importlib.util.spec_from_file_location("bench_generator", ROOT / "fixtures" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dsn_for(admin_dsn: str, database: str) -> str:
    return admin_dsn.rsplit("/", 1)[0] + "/" + database


async def _runner(dsn: str, *args: str) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTGRES_")}
    env["DATABASE_URL"] = dsn
    t = time.monotonic()
    proc = await asyncio.create_subprocess_exec(sys.executable, str(RUNNER), *args, "--json", str(MIGRATION),
                                                env=env, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 900)
    wall = time.monotonic() - t
    summary = json.loads(out.decode().strip().splitlines()[-1])
    if proc.returncode != 0:
        raise SystemExit(f"runner exit {proc.returncode}: {summary.get('error')}")
    return wall, summary


async def bench(admin_dsn: str, scale: float, prebuilt: bool) -> dict:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = _dsn_for(admin_dsn, name)
    try:
        conn = await asyncpg.connect(dsn)
        t = time.monotonic()
        counts = await _generator().generate(conn, scale=scale)
        generate_s = time.monotonic() - t
        size = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
        if prebuilt:
            from deploycheck.checks.window import build_before_window
            _, problems = await build_before_window(conn, MIGRATION.read_text(), build=True)
            if problems:
                raise SystemExit(f"3.3+indexes: {problems}")
        await conn.close()
        dry_wall, dry = await _runner(dsn, "--dry-run")
        real_wall, real = await _runner(dsn)
        return {"scale": scale, "contents": counts["product_contents"], "orders": counts["orders"],
                "size": size, "generate_s": generate_s, "dry_run_s": dry_wall, "migrate_s": real_wall,
                "migrate_tx_ms": real["duration_ms"], "quarantined": real["rows_quarantined"],
                "stock_changes": real["stock_changes"], "to_zero": len(real["products_to_zero"]),
                "slowest": sorted(real.get("timings", []), key=lambda t: t["seconds"], reverse=True)[:8]}
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main_async(args) -> None:
    print(f"{'scale':>6} {'contents':>9} {'orders':>7} {'db size':>8} {'generate':>9} {'dry run':>8} "
          f"{'migrate':>8} {'(in tx)':>8} {'quarant.':>8} {'stock chg':>9} {'to zero':>7}")
    results = []
    for scale in args.scale or [1, 1000]:
        r = await bench(args.admin_dsn, scale, args.prebuilt)
        results.append(r)
        print(f"{r['scale']:>6g} {r['contents']:>9} {r['orders']:>7} {r['size']:>8} {r['generate_s']:>8.1f}s "
              f"{r['dry_run_s']:>7.1f}s {r['migrate_s']:>7.1f}s {r['migrate_tx_ms'] / 1000:>7.1f}s "
              f"{r['quarantined']:>8} {r['stock_changes']:>9} {r['to_zero']:>7}", flush=True)
    for r in results:
        print(f"\nscale {r['scale']:g}: the slowest statements of the real run (the runner's timings, in its transaction)")
        for t in r["slowest"]:
            print(f"  {t['seconds']:7.3f} s  {'line ' + str(t['line']) if t['line'] else '':>9}  {t['statement'][:90]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, action="append", help="repeatable; default 1 and 1000")
    p.add_argument("--dsn", help="an admin DSN of a server to use (default: a throwaway embedded server)")
    p.add_argument("--prebuilt", action="store_true",
                   help="build the migration's plain indexes CONCURRENTLY first, as preflight does (3.3+indexes)")
    args = p.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    if args.dsn:
        args.admin_dsn = args.dsn
        asyncio.run(main_async(args))
        return
    with EmbeddedPostgres() as pg:
        print(f"embedded PostgreSQL {pg.version} (fsync off)")
        args.admin_dsn = pg.dsn
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()

"""A fleet rehearsal against the same tenants rehearsed one after another: the ratio, and where the time goes.

    python benchmarks/bench_fleet.py                               # 20 tenants, the full rehearsal each
    python benchmarks/bench_fleet.py --tenants 20 --pytest-args "-m preflight"
    python benchmarks/bench_fleet.py --tenants 5 --waves 1,4 --per-server 4

Prints figures, asserts nothing. In one run, on this machine:
- fleet: `pytest --fleet-rehearsal N --waves W` (one throwaway server, a database and a stand-in bot per
  tenant, waves through pytest-xdist, at most --per-server tenants at once);
- serial: N plain single-tenant rehearsals (`pytest`), one after another, each on its own throwaway server.
Both with `--bot-run-seconds 0` (the phases' own time, not monitoring's wait for the bot's jobs), their own
--reports-dir in a temporary folder, and the same extra pytest arguments.

Where the time goes, from the ledgers the runs write: for each wave, its span (first tenant's start to last
tenant's end) and how many tenants ran at once; per phase, the mean time a tenant spent in it (the sum of its
items' durations) in the fleet and in the serial runs: the fleet's tenants share 2 cores, so each one's
phases take longer while more of them run at once.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from statistics import mean

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("preflight", "deploy", "postdeploy", "smoke", "monitor", "rollback")


def pytest_command(reports: Path, deployment_id: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "-p", "deploycheck.pytest_plugin",
            "-q", "-p", "no:randomly", "--bot-run-seconds", "0", "--reports-dir", str(reports),
            "--deployment-id", deployment_id, *extra]


def timed(command: list[str], log: Path) -> float:
    start = time.perf_counter()
    with open(log, "w") as out:
        subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False)
    return time.perf_counter() - start


def last_entry(folder: Path) -> dict | None:
    ledger = folder / "ledger.jsonl"
    if not ledger.is_file():
        return None
    return json.loads(ledger.read_text().splitlines()[-1])


def phase_seconds(entry: dict) -> dict[str, float]:
    found: dict[str, float] = defaultdict(float)
    for item in entry["items"].values():
        found[item["phase"]] += item["duration"]
    return found


def at(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--waves", default="1,all")
    parser.add_argument("--per-server", type=int, default=4)
    parser.add_argument("--pytest-args", default="", help="added to both (e.g. -m preflight)")
    args = parser.parse_args()
    extra = shlex.split(args.pytest_args)
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    print(f"{args.tenants} tenants, waves {args.waves}, at most {args.per_server} per server; extra: "
          f"{args.pytest_args or '(none: the full rehearsal)'}; logs in {work}", flush=True)

    fleet_wall = timed(pytest_command(work / "fleet", "fleet", [
        "--fleet-rehearsal", str(args.tenants), "--waves", args.waves, "--per-server", str(args.per_server),
        *extra]), work / "fleet.log")
    fleet = {f"shop{n}": last_entry(work / "fleet" / f"fleet--shop{n}") for n in range(1, args.tenants + 1)}
    print(f"fleet:  {fleet_wall:7.1f} s wall", flush=True)

    serial, serial_wall = {}, 0.0
    for n in range(1, args.tenants + 1):
        serial_wall += timed(pytest_command(work / "serial", f"single-{n}", extra), work / f"single-{n}.log")
        serial[n] = last_entry(work / "serial" / f"single-{n}")
        print(f"serial: {n}/{args.tenants} done, {serial_wall:7.1f} s so far", flush=True)

    verdicts = lambda entries: ", ".join(f"{v} {sum(1 for e in entries if (e or {}).get('verdict', 'no ledger') == v)}"
                                         for v in sorted({(e or {}).get("verdict", "no ledger") for e in entries}))
    print(f"\nfleet:  {fleet_wall:7.1f} s  ({verdicts(fleet.values())})")
    print(f"serial: {serial_wall:7.1f} s  ({verdicts(serial.values())})")
    print(f"serial / fleet: {serial_wall / fleet_wall:.2f}x")

    print("\nwaves (span from the first tenant's start to the last tenant's end, from their ledgers):")
    by_wave: dict[int, list[dict]] = defaultdict(list)
    for entry in filter(None, fleet.values()):
        by_wave[entry["fleet"]["wave"]].append(entry)
    spans = 0.0
    for wave, entries in sorted(by_wave.items()):
        span = max(at(e["ended"]) for e in entries) - min(at(e["started"]) for e in entries)
        spans += span
        batches = -(-len(entries) // args.per_server)  # one server: --per-server tenants at a time
        print(f"  wave {wave}: {len(entries):3d} tenants  {span:7.1f} s  ({batches} run(s) of at most "
              f"{args.per_server} at once)")
    print(f"  outside the waves' runs (server start, each wave's pytest and xdist start-up, the summary): "
          f"{fleet_wall - spans:.1f} s")

    print("\nmean seconds per tenant in each phase (the sum of its items' durations):")
    print(f"  {'phase':<11} {'fleet':>8} {'serial':>8}")
    fleet_phases = [phase_seconds(e) for e in fleet.values() if e]
    serial_phases = [phase_seconds(e) for e in serial.values() if e]
    for phase in PHASES:
        if any(phase in p for p in fleet_phases + serial_phases):
            print(f"  {phase:<11} {mean(p.get(phase, 0) for p in fleet_phases or [{}]):8.1f} "
                  f"{mean(p.get(phase, 0) for p in serial_phases or [{}]):8.1f}")


if __name__ == "__main__":
    main()

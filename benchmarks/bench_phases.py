"""The full dress rehearsal, timed: wall time of plain `pytest`, the time of each phase, and the downtime.

    python benchmarks/bench_phases.py                     # scale 1 (issue 7: under 3 minutes)
    python benchmarks/bench_phases.py --scale 1000        # ~1M product contents (issues 4 and 5)
    python benchmarks/bench_phases.py --scales 1,1000     # both, then a one-line-per-scale summary

Prints figures, asserts nothing. Each scale is one plain `pytest` run (self-tests excluded, as plain
pytest excludes them) in a subprocess, with its own --reports-dir in a temporary folder and its own
--deployment-id, on its own throwaway embedded PostgreSQL: preflight, deploy, postdeploy, smoke,
monitor, rollback, then the redeploy round (deploy and postdeploy again).

What is measured:
- wall: the pytest subprocess from start to exit (collection, every phase, reports, record signing).
- per phase, from the run's ledger entry: the sum of its items' durations (setup + call + teardown
  of every case; deploy and postdeploy add both rounds there, as the ledger aggregates per item).
- per phase and round, from a trace this script's own observer plugin writes (`-p bench_phases`; it
  only reads the reports pytest already makes): the same sums split by round, and the span from the
  phase's first case start to its last case end. Phases interleave in checklist order (8.x postdeploy
  runs between 7.x and 9.x deploy; 13.4 smoke between 13.3 and 14.x postdeploy), so spans overlap.
- downtime: item 10.5's evidence "Total Downtime Seconds" (6.4 "Downtime Started", the bot's stop time,
  to 10.4 "Ready At"), per round from the trace; the ledger keeps only the last round's. Beside it, the
  window as the trace sees it: 6.1's call start to 10.4's call end, split into its parts (each the sum of
  its items' cases inside the window): stop (6.1, 6.2), notice (6.3: until a handful of messages are
  delivered; the rest go out during the migration), migration (7.3, the runner), checks (6.4, 7.1, 7.2,
  7.4, 7.5, 9.x, and in the rehearsal 8.x, which runs between 7.x and 9.x in checklist order), start to
  ready (10.1-10.4); "other" is the time between cases. Then 5.3's prediction of the window (the
  migration timed on the restored copy plus the rest) and how far the measured window is from it.
Session fixtures (the embedded server, the generated baseline, the reference bot) are set up in the
setup of the first case that needs them, so their time is in that item's, and so that phase's, figure:
the slowest cases are listed to show where it went.

Issue targets: scale 1 rehearsal under 180 s (issue 7); the window at scale 1000 12 s or less, stop to
ready (issue 18), and 5.3's prediction within 20% of it. At scale 1000 the generated shop has 50,000 users,
about 47,000 of them reachable: 6.3 starts the maintenance message to them at 25 a second and goes on as
soon as a handful are delivered; the rest go out in the background until 10.1 stops them.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("preflight", "deploy", "postdeploy", "smoke", "monitor", "rollback")
ROUND_NAMES = {1: "", 2: "redeploy"}
TRACE_ENV = "BENCH_PHASES_TRACE"
EVIDENCE_KEPT = {"5.3", "6.3", "6.4", "7.5", "10.4", "10.5", "16.1", "16.4"}
REHEARSAL_TARGET_S = 180
DOWNTIME_TARGET_S = 12
PREDICTION_TOLERANCE = 0.20
# The window's parts, by item (what is not listed is "checks"); see the docstring.
WINDOW_PARTS = {"stop": ("6.1", "6.2"), "notice": ("6.3",), "migration": ("7.3",),
                "start to ready": ("10.1", "10.2", "10.3", "10.4")}
PART_NAMES = ("stop", "notice", "migration", "checks", "start to ready", "other")


# -- the observer plugin, loaded into the pytest subprocess with `-p bench_phases` ------------------------

@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if os.environ.get(TRACE_ENV):
        callspec = getattr(item, "callspec", None)
        report.bench_round = callspec.params.get("rehearsal_round", 1) if callspec else 1
        entry = getattr(item, "checklist_item", None)
        report.bench_phase = entry.phase if entry else None
    return report


def pytest_runtest_logreport(report):
    path = os.environ.get(TRACE_ENV)
    if not path:
        return
    item_id = getattr(report, "item_id", None)
    line = {"nodeid": report.nodeid, "item": item_id, "phase": getattr(report, "bench_phase", None),
            "round": getattr(report, "bench_round", 1), "when": report.when, "outcome": report.outcome,
            "start": report.start, "stop": report.stop, "duration": report.duration}
    if item_id in EVIDENCE_KEPT and report.when == "call":
        line["evidence"] = getattr(report, "evidence", {})
    if report.failed:
        text = getattr(report, "crash_message", None) or (report.longreprtext.strip().splitlines() or [""])[-1]
        line["message"] = text[:500]
    with open(path, "a", encoding="utf-8") as trace:
        trace.write(json.dumps(line, default=str) + "\n")


# -- the benchmark -----------------------------------------------------------------------------------------

def run_rehearsal(scale: float, workdir: Path, timeout: float, extra: list[str] = ()) -> dict:
    deployment_id = f"bench-phases-scale{scale:g}-{time.strftime('%Y%m%dT%H%M%S')}"
    reports_dir, trace, log = workdir / "reports", workdir / "trace.jsonl", workdir / "pytest.log"
    env = {k: v for k, v in os.environ.items()
           if k != "DATABASE_URL" and not k.startswith("POSTGRES_")}  # never a live target
    env[TRACE_ENV] = str(trace)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "pytest", "-p", "bench_phases", "-p", "no:cacheprovider", "-q",
           "--scale", f"{scale:g}", "--reports-dir", str(reports_dir), "--deployment-id", deployment_id,
           "--bot-run-seconds", "0", *extra]  # the phases' own time: not monitoring's wait for the bot's jobs
    began_epoch, began = time.time(), time.monotonic()
    with open(log, "w", encoding="utf-8") as out:
        try:
            code = subprocess.run(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = None
    wall = time.monotonic() - began
    ended_epoch = time.time()
    folder = reports_dir / deployment_id
    ledger_path = folder / "ledger.jsonl"
    entry = json.loads(ledger_path.read_text().strip().splitlines()[-1]) if ledger_path.exists() else None
    cases = [json.loads(l) for l in trace.read_text().splitlines()] if trace.exists() else []
    lines = log.read_text(errors="replace").strip().splitlines()
    summary = next((l.strip("= ") for l in reversed(lines) if (" passed" in l or " failed" in l or " error" in l)
                    and " in " in l), lines[-1] if lines else "no output")
    return {"scale": scale, "deployment_id": deployment_id, "exit": code, "wall": wall, "began": began_epoch,
            "ended": ended_epoch, "entry": entry, "cases": cases, "summary": summary, "log": log,
            "folder": folder, "log_tail": lines[-15:], "extra": list(extra)}


def analyse(run: dict) -> dict:
    entry, cases = run["entry"] or {}, run["cases"]
    items = entry.get("items", {})
    ledger_sum = defaultdict(float)
    for result in items.values():
        ledger_sum[result["phase"]] += result["duration"]
    by_round = defaultdict(lambda: {"sum": 0.0, "start": None, "stop": None, "items": set()})
    for case in cases:
        if not case["phase"]:
            continue
        bucket = by_round[(case["round"], case["phase"])]
        bucket["sum"] += case["duration"]
        bucket["items"].add(case["item"])
        bucket["start"] = case["start"] if bucket["start"] is None else min(bucket["start"], case["start"])
        bucket["stop"] = case["stop"] if bucket["stop"] is None else max(bucket["stop"], case["stop"])
    downtime = {}
    for rnd in (1, 2):
        calls = {c["item"]: c for c in cases if c["round"] == rnd and c["when"] == "call"}
        if "10.5" not in calls and "6.1" not in calls:
            continue
        evidence = calls.get("10.5", {}).get("evidence", {})
        window = (calls["10.4"]["stop"] - calls["6.1"]["start"]) if "6.1" in calls and "10.4" in calls else None
        broadcast = calls.get("6.3", {})
        downtime[rnd] = {"evidence": evidence.get("Total Downtime Seconds"), "window": window,
                         "parts": window_parts(cases, rnd, calls) if window is not None else {},
                         "delivered": broadcast.get("evidence", {}).get("Delivered"),
                         "recipients": broadcast.get("evidence", {}).get("Recipients"),
                         "predicted": evidence.get("Predicted (preflight, 5.3)"),
                         "off_by": evidence.get("Measured vs Predicted"),
                         "predicted_migration": evidence.get("Predicted (migration, preflight)"),
                         "migration": calls.get("7.5", {}).get("evidence", {}).get("Migration Time")}
    first = min((c["start"] for c in cases), default=None)
    last = max((c["stop"] for c in cases), default=None)
    slowest = sorted(cases, key=lambda c: c["duration"], reverse=True)[:6]
    failed = [(i, items[i].get("message")) for i in entry.get("failed_items", [])]
    if not entry:  # no ledger (interrupted or crashed): what the trace saw fail, and where it stopped
        failed = [(c["item"] or c["nodeid"], f"{c['when']}: {c.get('message')}") for c in cases if c["outcome"] == "failed"]
    return {"ledger_sum": dict(ledger_sum), "by_round": dict(by_round), "downtime": downtime,
            "startup": (first - run["began"]) if first else None, "tests": (last - first) if first else None,
            "finish": (run["ended"] - last) if last else None, "slowest": slowest, "failed": failed,
            "verdict": ("INTERRUPTED" if run["exit"] == 2 else "TIMED OUT" if run["exit"] is None
                        else entry.get("verdict", "no ledger entry")), "ledger_downtime":
            items.get("10.5", {}).get("evidence", {}).get("Total Downtime Seconds")}


def window_parts(cases: list[dict], rnd: int, calls: dict) -> dict:
    """The window (6.1's call start to 10.4's call end) split into its parts: each the sum of its items' cases
    (setup, call, teardown) inside the window; "other" is what lies between cases."""
    began, ended = calls["6.1"]["start"], calls["10.4"]["stop"]
    part_of = {item: name for name, items in WINDOW_PARTS.items() for item in items}
    parts = dict.fromkeys(PART_NAMES, 0.0)
    for case in cases:
        if case["round"] == rnd and case["start"] >= began - 0.001 and case["stop"] <= ended + 0.001:
            parts[part_of.get(case["item"], "checks")] += case["duration"]
    parts["other"] = max(0.0, (ended - began) - sum(parts.values()))
    return parts


def _s(value, width: int = 8) -> str:
    return f"{value:>{width - 1}.1f}s" if isinstance(value, (int, float)) else f"{'—':>{width}}"


def print_run(run: dict, a: dict) -> None:
    scale = run["scale"]
    status = "exit 0" if run["exit"] == 0 else ("TIMED OUT" if run["exit"] is None else f"exit {run['exit']}")
    target = f" (issue 7 target: under {REHEARSAL_TARGET_S} s)" if scale == 1 else ""
    how = "pytest " + " ".join(run["extra"]) if run["extra"] else "plain pytest"
    print(f"\n== scale {scale:g}: {how}, wall {run['wall']:.1f} s{target}; {status}; {run['summary']}; "
          f"verdict {a['verdict']}")
    last = run["cases"][-1] if run["cases"] else None
    if last and last["when"] == "setup" and last["outcome"] == "passed":  # a case was running when it ended
        print(f"   ENDED DURING {last['item']} {last['nodeid']}: its call had run {a['finish']:.1f} s "
              f"(exit {run['exit']}{', interrupted' if run['exit'] == 2 else ''}); the figures below stop there")
    elif a["tests"] is not None and not run["entry"]:
        print(f"   no ledger entry: the run ended {a['finish']:.1f} s after its last finished case "
              f"({last['item']} {last['when']}, {last['nodeid']})")
    elif a["tests"] is not None:
        print(f"   startup (interpreter, plugins, collection) {a['startup']:.1f} s, cases {a['tests']:.1f} s, "
              f"finish (reports, record signing, exit) {a['finish']:.1f} s")
    print(f"   {'phase':<11} {'round':<10} {'items':>5} {'Σ cases':>8} {'span':>8} {'from':>8} {'to':>8} "
          f"{'ledger Σ':>9}")
    first = min((b["start"] for b in a["by_round"].values()), default=0)
    for rnd in (1, 2):
        for phase in PHASES:
            bucket = a["by_round"].get((rnd, phase))
            if not bucket:
                continue
            ledger = a["ledger_sum"].get(phase) if rnd == 1 else None
            both = " (both rounds)" if rnd == 1 and (2, phase) in a["by_round"] else ""
            print(f"   {phase:<11} {'1' if rnd == 1 else '2 redeploy':<10} {len(bucket['items']):>5} {_s(bucket['sum'])} "
                  f"{_s(bucket['stop'] - bucket['start'])} {_s(bucket['start'] - first)} {_s(bucket['stop'] - first)} "
                  f"{_s(ledger, 9)}{both}")
    if not a["by_round"] and a["ledger_sum"]:  # no trace: the ledger alone
        for phase in PHASES:
            print(f"   {phase:<11} {'both':<10} {'':>5} {'':>8} {'':>8} {'':>8} {'':>8} {_s(a['ledger_sum'].get(phase), 9)}")
    for rnd, d in sorted(a["downtime"].items()):
        if d["evidence"] is None and d["window"] is None:
            continue
        goal = f" (issue 18 target at scale 1000: {DOWNTIME_TARGET_S} s or less)" if scale >= 1000 else ""
        print(f"   downtime, {ROUND_NAMES[rnd] or 'deploy'} round: 10.5 Total Downtime Seconds "
              f"{d['evidence'] if d['evidence'] is not None else '—'} s (6.4 stop to 10.4 ready); "
              f"6.1 start to 10.4 end {_s(d['window'], 1).strip()}{goal}")
        if d["parts"]:
            print("     window split: " + ", ".join(f"{name} {d['parts'][name]:.2f} s" for name in PART_NAMES))
        if d["recipients"] is not None:
            print(f"     6.3 went on after {d['delivered']} of {d['recipients']} users had the notice (the rest "
                  "during the migration, at 25 messages/s, until 10.1)")
        print(f"     migration (7.5) {d['migration'] or '—'}, on the restored copy (5.3) {d['predicted_migration'] or '—'}")
        print(f"     predicted window (5.3) {d['predicted'] if d['predicted'] is not None else '—'} s; measured vs "
              f"predicted {d['off_by'] or '—'} (target within {PREDICTION_TOLERANCE:.0%})")
    if a["ledger_downtime"] is not None:
        print(f"   ledger 10.5 Total Downtime Seconds (last round only): {a['ledger_downtime']} s")
    if a["slowest"]:
        print("   slowest cases: " + "; ".join(
            f"{c['item'] or '?'} {c['when']} {c['duration']:.1f}s" + (f" [{ROUND_NAMES[c['round']]}]" if c["round"] == 2 else "")
            for c in a["slowest"]))
    for item_id, message in a["failed"]:
        print(f"   FAILED {item_id}: {message}")
    if run["exit"] != 0 and not a["failed"]:
        print("   pytest output (end):\n" + "\n".join("     " + l for l in run["log_tail"]))


def print_summary(results: list[tuple[dict, dict]]) -> None:
    print(f"\n{'scale':>6} {'wall':>8} {'preflight':>9} {'deploy':>8} {'postdep.':>8} {'smoke':>8} {'monitor':>8} "
          f"{'rollback':>8} {'redeploy':>8} {'postdep.2':>9} {'downtime':>9} {'downtime2':>9} {'verdict':>8}")
    for run, a in results:
        def phase(rnd, name, width=8, a=a):
            bucket = a["by_round"].get((rnd, name))
            return _s(bucket["sum"] if bucket else None, width)
        d1, d2 = a["downtime"].get(1, {}).get("evidence"), a["downtime"].get(2, {}).get("evidence")
        print(f"{run['scale']:>6g} {_s(run['wall'])} {phase(1, 'preflight', 9)} {phase(1, 'deploy')} "
              f"{phase(1, 'postdeploy')} {phase(1, 'smoke')} {phase(1, 'monitor')} {phase(1, 'rollback')} "
              f"{phase(2, 'deploy')} {phase(2, 'postdeploy', 9)} {_s(d1, 9)} {_s(d2, 9)} {a['verdict']:>8}")
    print("(phase columns: sum of the phase's case durations in that round; downtime: 10.5 evidence, stop to ready)")
    print(f"\nthe window, stop to ready (6.1 start to 10.4 end), and its parts; target at scale 1000: "
          f"{DOWNTIME_TARGET_S} s or less, predicted within {PREDICTION_TOLERANCE:.0%}")
    print(f"{'scale':>6} {'round':>8} {'window':>7} " + " ".join(f"{name:>14}" for name in PART_NAMES)
          + f" {'predicted':>9} {'off by':>7}")
    for run, a in results:
        for rnd, d in sorted(a["downtime"].items()):
            if d["window"] is None:
                continue
            off = (d["window"] - d["predicted"]) / d["predicted"] if d["predicted"] else None
            print(f"{run['scale']:>6g} {ROUND_NAMES[rnd] or 'deploy':>8} {_s(d['window'], 7)} "
                  + " ".join(_s(d["parts"].get(name), 14) for name in PART_NAMES)
                  + f" {_s(d['predicted'], 9)} {f'{off:+.0%}' if off is not None else '—':>7}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, help="one scale (default 1)")
    p.add_argument("--scales", help="comma-separated scales, run one after another, e.g. 1,1000")
    p.add_argument("--timeout", type=float, default=3600, help="per rehearsal, seconds (default 3600)")
    p.add_argument("--keep", action="store_true", help="keep each run's temporary folder (reports, trace, log)")
    p.add_argument("--pytest-args", default="", help="more pytest arguments, e.g. \"--deselect tests/deploy/test_maintenance.py::"
                   "test_maintenance_message_posted\" (no longer the plain rehearsal; -k or -m also drop the "
                   "redeploy round)")
    args = p.parse_args()
    scales = [float(s) for s in args.scales.split(",")] if args.scales else [args.scale or 1.0]
    extra = shlex.split(args.pytest_args)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
          + (f"pytest {' '.join(extra)} (NOT the plain rehearsal)" if extra else "plain pytest") + f" per scale, in {ROOT}")
    results = []
    for scale in scales:
        workdir = Path(tempfile.mkdtemp(prefix=f"bench-phases-{scale:g}-"))
        run = run_rehearsal(scale, workdir, args.timeout, extra)
        analysis = analyse(run)
        print_run(run, analysis)
        if args.keep or run["exit"] != 0:
            print(f"   kept: {workdir} (reports/{run['deployment_id']}/, trace.jsonl, pytest.log)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        results.append((run, analysis))
        sys.stdout.flush()
    print_summary(results)


if __name__ == "__main__":
    main()

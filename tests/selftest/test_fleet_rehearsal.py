"""The fleet rehearsal, whole: five shops on one throwaway PostgreSQL server, each with its own database,
stand-in bot, fake Telegram and fake Pakasir, in waves of 1 then 4 through pytest-xdist, every phase of the
checklist per tenant. shop3 (wave 2) holds the planted fault, a payment its migration refuses: its wave is
NO-GO, its wave-mates keep their own verdicts, and the canary stays deployed (its own GO)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deploycheck.record.ledger import Ledger
from deploycheck.record.verify import verify

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_fault_in_the_second_wave_halts_it_and_the_canary_stays_deployed(tmp_path):
    reports = tmp_path / "reports"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "-p", "deploycheck.pytest_plugin",
         "-q", "--fleet-rehearsal", "5", "--waves", "1,4", "--fleet-rehearsal-fault", "3",
         "--bot-run-seconds", "0", "--reports-dir", str(reports), "--deployment-id", "fleet"],
        cwd=ROOT, capture_output=True, text=True, timeout=1500)
    out = done.stdout
    assert done.returncode == 1, out[-3000:]
    summary = json.loads((reports / "fleet" / "fleet.json").read_text())
    assert {t["name"]: (t["wave"], t["verdict"]) for t in summary["tenants"]} == {
        "shop1": (1, "GO"), "shop2": (2, "GO"), "shop3": (2, "NO-GO"), "shop4": (2, "GO"), "shop5": (2, "GO")}, out[-3000:]
    assert summary["verdict"] == "NO-GO" and summary["halted_at_wave"] == 2
    assert ("fleet NO-GO: 4 on the release (GO), 1 NO-GO, 0 not started of 5 tenants; halted at wave 2 "
            "(NO-GO: shop3); the earlier waves stay on the release") in out
    canary = Ledger(reports / "fleet--shop1" / "ledger.jsonl").read()[-1]
    # The canary went through every phase, including the rollback and the redeploy after it: deployed.
    assert canary["verdict"] == "GO" and canary["redeployed_after_rollback"]
    assert set(canary["phases"]) == {"preflight", "deploy", "postdeploy", "smoke", "monitor", "rollback"}
    assert verify(reports, "fleet--shop1").ok  # its own signed record
    bad = Ledger(reports / "fleet--shop3" / "ledger.jsonl").read()[-1]
    assert bad["fleet"] == {"id": "fleet", "run": bad["fleet"]["run"], "wave": 2, "tenant": "shop3"}
    assert bad["items"]["5.3"]["outcome"] == "failed" and "negative amount" in bad["items"]["5.3"]["message"]
    assert bad["items"]["7.3"]["outcome"] == "not run"  # its window never ran: its database was not touched
    assert "test_migration_rehearsed_on_restored_copy[shop3]" in out  # the tenant in the failing test's id

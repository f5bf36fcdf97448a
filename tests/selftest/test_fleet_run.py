"""The fleet wired into the plugin: `pytest --fleet FILE` runs waves, each wave one pytest run through
pytest-xdist, every checklist test once per tenant with the tenant in its id, each tenant its own ledger and
deployment id, the rollout halted at the first NO-GO and the untouched tenants listed as not started.

Small inner tests stand for the checklist items here (no database, no bot): what is proven is the rollout's
machinery. The fleet rehearsal (real PostgreSQL, a stand-in bot per tenant) is test_fleet_rehearsal.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from deploycheck.record.ledger import Ledger

FLEET = """
[defaults]
host = "local"
service = "systemd:bot-auto-order"

[[tenant]]
name = "shop-a"
database_url = "postgresql://bot:Secr3t-a@db1.internal:5432/db_shop_a"

[[tenant]]
name = "shop-b"
database_url = "postgresql://bot:Secr3t-b@db1.internal:5432/db_shop_b"

[[tenant]]
name = "shop-c"
database_url = "postgresql://bot:Secr3t-c@db2.internal:5432/db_shop_c"

[[tenant]]
name = "shop-d"
database_url = "postgresql://bot:Secr3t-d@db2.internal:5432/db_shop_d"
"""

# 1.1 stands for a whole phase: it records the tenant's deployment it was given (its database and service, from
# the `deployment` fixture: nothing process-wide is rebound) and fails for the tenant named BAD_TENANT.
TESTS = """
import os
import time
import pytest

@pytest.mark.item("1.1")
def test_access(run, deployment, request, evidence):
    evidence["tenant"] = run.tenant
    evidence["bound"] = {"deployment": run.deployment_id, "database": run.redactor.text(deployment.database),
                         "service": deployment.service_name, "worker": request.config.workerinput["workerid"]}
    assert run.tenant != os.environ.get("BAD_TENANT"), f"{run.tenant} is the bad tenant"
    if run.tenant == os.environ.get("SLOW_TENANT"):
        print("SLOW TENANT STARTED", flush=True)
        time.sleep(60)

@pytest.mark.item("6.1")
def test_stop_bot():
    pass

@pytest.mark.item("16.1")
def test_stop_bot_immediately():
    pass
"""


def fleet_project(project, bad: str | None = None, monkeypatch=None):
    (project.path / "fleet.toml").write_text(FLEET)
    (project.path / "tests" / "test_items.py").write_text(textwrap.dedent(TESTS))
    if bad:
        monkeypatch.setenv("BAD_TENANT", bad)
    return project


def entries(project, tenant: str) -> list[dict]:
    return Ledger(project.path / "reports" / f"fleet-1--{tenant}" / "ledger.jsonl").read()


def summary_of(project) -> dict:
    return json.loads((project.path / "reports" / "fleet-1" / "fleet.json").read_text())


def verdicts(project) -> dict:
    return {row["name"]: (row["wave"], row["verdict"]) for row in summary_of(project)["tenants"]}


def test_waves_run_each_tenant_on_its_own_worker_with_its_own_ledger(project, monkeypatch):
    fleet_project(project)
    result = project.runpytest_subprocess("--fleet", "fleet.toml", "--waves", "1,3", "-m", "preflight", "-k",
                                          "access", "--deployment-id", "fleet-1", "-v")
    assert result.ret == 0, result.stdout.str()
    out = result.stdout.str()
    assert "wave 1: shop-a ===" in out and "wave 2: shop-b, shop-c, shop-d ===" in out
    for name in ("shop-b", "shop-c", "shop-d"):  # the tenant in the test id, on a worker of its own
        assert f"test_access[{name}]" in out
    assert verdicts(project) == {"shop-a": (1, "GO"), "shop-b": (2, "GO"), "shop-c": (2, "GO"), "shop-d": (2, "GO")}
    workers = set()
    for name in ("shop-a", "shop-b", "shop-c", "shop-d"):
        (entry,) = entries(project, name)
        assert entry["deployment_id"] == f"fleet-1--{name}" and entry["fleet"]["tenant"] == name
        bound = entry["items"]["1.1"]["evidence"]["bound"]
        assert bound["deployment"] == f"fleet-1--{name}"
        assert bound["database"].endswith(f"/db_{name.replace('-', '_')}") and "Secr3t" not in bound["database"]
        workers.add((entry["fleet"]["wave"], bound["worker"]))
    assert len(workers) == 4  # no worker ran two tenants
    assert "Secr3t" not in out


def test_a_no_go_in_a_wave_halts_the_rollout_and_later_tenants_stay_untouched(project, monkeypatch):
    fleet_project(project, bad="shop-b", monkeypatch=monkeypatch)
    result = project.runpytest_subprocess("--fleet", "fleet.toml", "--waves", "1,2,all", "-m", "preflight", "-k",
                                          "access", "--deployment-id", "fleet-1")
    assert result.ret == 1
    assert verdicts(project) == {"shop-a": (1, "GO"), "shop-b": (2, "NO-GO"), "shop-c": (2, "GO"),
                                 "shop-d": (3, "not started")}
    assert summary_of(project)["halted_at_wave"] == 2
    assert "fleet NO-GO: 2 on the release (GO), 1 NO-GO, 1 not started of 4 tenants; halted at wave 2" \
        in result.stdout.str()
    assert not (project.path / "reports" / "fleet-1--shop-d").exists()  # never started: nothing ran for it
    assert "shop-b is the bad tenant" in entries(project, "shop-b")[0]["items"]["1.1"]["message"]


def test_a_tenant_whose_preflight_is_missing_is_refused_its_window(project):
    """-m deploy --execute per tenant: each tenant's own ledger must hold its GO preflight; the canary has
    none, so its window is refused (not run, NO-GO) and no other tenant starts."""
    fleet_project(project)
    result = project.runpytest_subprocess("--fleet", "fleet.toml", "-m", "deploy", "-k", "stop_bot",
                                          "--execute", "--deployment-id", "fleet-1")
    assert result.ret == 1
    assert verdicts(project) == {"shop-a": (1, "NO-GO"), "shop-b": (2, "not started"),
                                 "shop-c": (2, "not started"), "shop-d": (2, "not started")}
    item = entries(project, "shop-a")[0]["items"]["6.1"]
    assert item["outcome"] == "not run" and "no preflight has been recorded for this deployment" in item["message"]


def test_rollback_rolls_back_the_tenants_that_moved_and_only_those(project, monkeypatch):
    fleet_project(project, bad="shop-b", monkeypatch=monkeypatch)
    project.runpytest_subprocess("--fleet", "fleet.toml", "--waves", "1,2,all", "-m", "preflight", "-k", "access",
                                 "--deployment-id", "fleet-1")
    result = project.runpytest_subprocess("--fleet", "fleet.toml", "-m", "rollback", "-k", "immediately",
                                          "--execute", "--deployment-id", "fleet-1")
    assert result.ret == 0, result.stdout.str()
    assert verdicts(project) == {"shop-a": (1, "rolled back"), "shop-b": (2, "rolled back"),
                                 "shop-c": (2, "rolled back"), "shop-d": (3, "not started")}
    assert not (project.path / "reports" / "fleet-1--shop-d").exists()


def test_fleet_errors_are_usage_errors_that_say_what_to_do(project):
    (project.path / "fleet.toml").write_text('[[tenant]]\nname = "a"\ndatabse_url = "postgresql://x@h/db_a"\n')
    result = project.runpytest_subprocess("--fleet", "fleet.toml", "-m", "preflight")
    assert result.ret == 4
    assert "unknown key(s) databse_url" in result.stdout.str()
    (project.path / "fleet.toml").write_text(FLEET)
    result = project.runpytest_subprocess("--fleet", "fleet.toml")
    assert result.ret == 4 and "a fleet of live shops needs a phase" in result.stdout.str()
    result = project.runpytest_subprocess("--fleet-rehearsal", "2", "--fleet-rehearsal-fault", "3")
    assert result.ret == 4 and "name a tenant from 1 to 2" in result.stdout.str()


def test_the_tenant_leads_every_test_id_and_names_its_worker_unit():
    from deploycheck.fleet.plugin import tenant_in_id
    names = ["shop1", "shop10", "shop-a"]
    assert tenant_in_id("tests/deploy/test_x.py::test_x[shop10-redeploy]", names) == "shop10"
    assert tenant_in_id("tests/deploy/test_x.py::test_x[shop1-redeploy]", names) == "shop1"
    assert tenant_in_id("checklists/v0.7.0.toml::2.2[shop-a]", names) == "shop-a"
    assert tenant_in_id("tests/deploy/test_x.py::test_x", names) is None


def test_ctrl_c_in_a_wave_halts_there_and_the_wave_ends_incomplete(project, monkeypatch):
    """Ctrl-C reaches the driver and the wave's run (one process group): the run records its tenant as
    incomplete (NO-GO), the driver waits for that, starts nothing more and says where it stopped."""
    fleet_project(project)
    monkeypatch.setenv("SLOW_TENANT", "shop-b")
    driver = subprocess.Popen([sys.executable, "-m", "pytest", "--fleet", "fleet.toml", "--waves", "1,1,all", "-m",
                               "preflight", "-k", "access", "--deployment-id", "fleet-1", "-s"],
                              cwd=project.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    seen = []
    for line in driver.stdout:
        seen.append(line)
        if "wave 2: shop-b" in line:
            break
    time.sleep(8)  # the worker is in shop-b's slow test by now
    os.killpg(driver.pid, signal.SIGINT)
    out = "".join(seen) + driver.communicate(timeout=120)[0]
    assert driver.returncode == 1, out[-3000:]
    assert verdicts(project) == {"shop-a": (1, "GO"), "shop-b": (2, "NO-GO"), "shop-c": (3, "not started"),
                                 "shop-d": (3, "not started")}, out[-3000:]
    assert summary_of(project)["halted_at_wave"] == 2
    assert "interrupted" in entries(project, "shop-b")[0]["incomplete"]

"""The fleet's driver: the rollout, wave by wave, each wave one pytest run through pytest-xdist.

`pytest --fleet FILE --waves 1,5,all -m deploy --execute` does not run a session itself: it plans the waves and
runs each as `pytest <the same arguments> --fleet-wave RUN/N/NAMES -n <tenants>`, one run after
another (pytest-xdist runs a wave's tenants at once; within a wave, `waves.batches` keeps at most --per-server
tenants of one PostgreSQL server, and one per bot token, at a time). Each tenant's verdict is read back from
its own ledger, where its worker wrote it; a tenant whose ledger has no entry of this run is NO-GO. The first
NO-GO halts the rollout: later waves never start. The summary goes to the terminal and to
reports/<fleet id>/fleet.json.

`-m rollback` alone rolls back the tenants the last rollout moved (GO, or NO-GO part way), read from that
fleet.json; tenants never started are left alone.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from deploycheck.fleet import rehearsal, summary, waves
from deploycheck.fleet.inventory import load_fleet
from deploycheck.fleet.tenants import FleetError, Tenant
from deploycheck.infra import targets
from deploycheck.infra.embedded import EmbeddedError
from deploycheck.pytest_plugin import deployment_id_of
from deploycheck.record.ledger import Ledger, LedgerError


WAVE_ENV = pytest.StashKey[dict]()  # the environment of the waves' runs (a fleet rehearsal's server in it)


def say(line: str = "") -> None:
    print(line, flush=True)


def main(config: pytest.Config) -> int:
    option = config.option
    if option.fleet and option.fleet_rehearsal:
        return usage("give --fleet FILE (a real fleet) or --fleet-rehearsal N (a rehearsal), not both")
    if option.fleet_rehearsal is not None and option.fleet_rehearsal < 1:
        return usage(f"--fleet-rehearsal {option.fleet_rehearsal}: rehearse at least 1 tenant")
    if option.fleet_rehearsal_fault and not 1 <= option.fleet_rehearsal_fault <= (option.fleet_rehearsal or 0):
        return usage(f"--fleet-rehearsal-fault {option.fleet_rehearsal_fault}: name a tenant from 1 to "
                     f"{option.fleet_rehearsal or 0} of --fleet-rehearsal")
    if option.fleet and option.target in ("auto", "live") and not option.markexpr:
        return usage("a fleet of live shops needs a phase: -m preflight, then -m deploy --execute, ... "
                     "(plain pytest is the rehearsal: --fleet-rehearsal N)")
    fleet_id = deployment_id_of(config)
    root = config.rootpath / option.reports_dir
    try:
        server = start_server(option) if option.fleet_rehearsal else None
    except RuntimeError as exc:
        return usage(f"fleet rehearsal: {exc}")
    # the waves' runs find the rehearsal's server in their environment; this process's own is left as it is
    env = {**os.environ, rehearsal.SERVER_ENV: server.admin_dsn} if server else None
    config.stash[WAVE_ENV] = env
    try:
        tenants = load_tenants(config) if not server else rehearsal.tenants(option.fleet_rehearsal, server.admin_dsn)
        rollout = waves.Rollout(waves.plan(tenants, option.waves))
        if rolling_back(config):
            roll_back(config, rollout, tenants, root, fleet_id)
        else:
            waves.run(rollout, lambda wave: run_wave(config, wave, root, fleet_id))
    except (FleetError, waves.WaveError) as exc:
        return usage(str(exc))
    except Interrupted as stop:
        halt(rollout, stop.results)
    finally:
        if server:
            server.stop()
    return report(rollout, root / fleet_id)


def load_tenants(config: pytest.Config) -> list[Tenant]:
    """The fleet the options name: a --fleet file or folder, or --fleet-rehearsal's shops on the shared server."""
    option = config.option
    if option.fleet_rehearsal:
        # The driver started the server; without it (e.g. --collect-only of a wave) only the names matter.
        server = os.environ.get(rehearsal.SERVER_ENV, "postgresql://rehearsal@localhost/postgres")
        return rehearsal.tenants(option.fleet_rehearsal, server)
    return load_fleet(option.fleet, group=option.fleet_group)


def usage(message: str) -> int:
    say(f"ERROR: {message}")
    return pytest.ExitCode.USAGE_ERROR


def start_server(option):
    """A fleet rehearsal's one throwaway server; the waves' runs find it in their environment."""
    say("fleet rehearsal: starting one throwaway PostgreSQL server for every tenant")
    try:
        server = targets.open_embedded(option.pg_bindir, option.pg_version)
    except (targets.TargetError, EmbeddedError) as exc:
        raise RuntimeError(str(exc)) from None
    return server


def rolling_back(config: pytest.Config) -> bool:
    words = (config.option.markexpr or "").replace("(", " ").replace(")", " ").split()
    return words == ["rollback"]


def run_wave(config: pytest.Config, wave: waves.Wave, root: Path, fleet_id: str) -> dict[str, waves.Result]:
    """One pytest run per batch of the wave, tenants of a batch at once; their verdicts from their ledgers."""
    results: dict[str, waves.Result] = {}
    parts = waves.batches(wave.tenants, per_server=config.option.per_server)
    for number, batch in enumerate(parts, start=1):
        names = [tenant.name for tenant in batch]
        part = f" (batch {number} of {len(parts)})" if len(parts) > 1 else ""
        say(f"\n=== fleet {fleet_id}: wave {wave.number}{part}: {', '.join(names)} ===")
        try:
            results.update(run_batch(config, wave.number, batch, root, fleet_id))
        except Interrupted as stop:
            stop.results = {**results, **stop.results}  # the batches before it finished
            raise
    return results


def run_batch(config: pytest.Config, wave: int, batch: list[Tenant], root: Path, fleet_id: str) -> dict:
    run = uuid.uuid4().hex
    command = [sys.executable, "-m", "pytest", *config.invocation_params.args,
               f"--fleet-wave={run}/{wave}/{','.join(t.name for t in batch)}", f"--deployment-id={fleet_id}",
               "-n", str(len(batch))]
    # Not subprocess.run: on Ctrl-C it kills the wave's run at once, which then cannot write its tenants'
    # ledgers (or stop their bots). The run got the Ctrl-C too and ends its tenants as incomplete: wait for it.
    process = subprocess.Popen(command, cwd=config.invocation_params.dir, env=config.stash.get(WAVE_ENV, None))
    try:
        process.wait()
    except KeyboardInterrupt:
        say("interrupted: waiting for the wave's run to record its tenants as incomplete (Ctrl-C again: stop it)")
        try:
            process.wait()
        except KeyboardInterrupt:
            process.terminate()
            process.wait()
        raise Interrupted({t.name: verdict_of(root, fleet_id, t, run) for t in batch}) from None
    return {tenant.name: verdict_of(root, fleet_id, tenant, run) for tenant in batch}


class Interrupted(Exception):
    """Ctrl-C during a wave: its tenants' verdicts as far as they got; no later wave or batch starts."""

    def __init__(self, results: dict):
        super().__init__("interrupted")
        self.results = results


def verdict_of(root: Path, fleet_id: str, tenant: Tenant, run: str) -> waves.Result:
    """The tenant's verdict as its own ledger has it for this run; no entry (a crashed worker) is NO-GO."""
    folder = root / f"{fleet_id}--{tenant.name}"
    try:
        entries = Ledger(folder / "ledger.jsonl").read()
    except LedgerError as exc:
        say(f"{tenant.name}: {exc}")
        entries = []
    mine = [entry for entry in entries if (entry.get("fleet") or {}).get("run") == run]
    verdict = mine[-1]["verdict"] if mine else waves.NO_GO
    return waves.Result(verdict, folder.name, str(folder))


def roll_back(config: pytest.Config, rollout: waves.Rollout, tenants: list[Tenant], root: Path,
              fleet_id: str) -> None:
    """Roll back, at once, every tenant the last rollout moved; the others stay as they were."""
    last = root / fleet_id / "fleet.json"
    if not last.is_file():
        raise FleetError(f"-m rollback of fleet {fleet_id}: no {last} (no rollout of this deployment id to roll "
                         "back; give its --deployment-id)")
    data = json.loads(last.read_text())
    before = {row["name"]: row for row in data["tenants"]}
    moved = [t for t in tenants if before.get(t.name, {}).get("verdict") in (waves.GO, waves.NO_GO)]
    for state in rollout.rows():  # where the last rollout left each tenant
        row = before.get(state.name, {})
        state.wave = row.get("wave", state.wave)
        state.verdict, state.deployment_id, state.reports = (row.get("verdict", waves.NOT_STARTED),
                                                             row.get("deployment_id"), row.get("reports"))
    rollout.started = len(rollout.waves)
    if not moved:
        say(f"fleet {fleet_id}: no tenant moved in the last rollout; nothing to roll back")
        return
    results = run_wave(config, waves.Wave(0, tuple(moved)), root, fleet_id)
    for tenant in moved:
        if results[tenant.name].verdict == waves.GO:
            rollout.rolled_back(tenant.name)
        else:
            say(f"{tenant.name}: rollback NO-GO; see {results[tenant.name].reports}")
    if rollout.names_with(waves.NO_GO):  # a tenant still NO-GO (its rollback failed) keeps the fleet NO-GO
        rollout.halted_at = data.get("halted_at_wave") or 1


def halt(rollout: waves.Rollout, results: dict) -> None:
    """After Ctrl-C: the tenants that ran get what their ledgers say (NO-GO when nothing), those of later batches
    stay not started, and the rollout is halted at that wave, so its summary says where it stopped."""
    for state in rollout.rows():
        if state.verdict == waves.RUNNING and state.name in results:
            rollout.record(state.name, results[state.name])
        elif state.verdict == waves.RUNNING:  # a later batch of the wave: never started
            state.verdict = waves.NOT_STARTED
        rollout.halted_at = rollout.halted_at or (state.wave if state.name in results else None)


def report(rollout: waves.Rollout, folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fleet.json").write_text(summary.render_json(rollout), encoding="utf-8")
    say("\n" + summary.render_text(rollout) + f"fleet summary: {folder / 'fleet.json'}")
    return pytest.ExitCode.OK if rollout.verdict in (waves.GO, waves.ROLLED_BACK) else pytest.ExitCode.TESTS_FAILED

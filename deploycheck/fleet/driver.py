"""The fleet's driver: the rollout, wave by wave, each wave one pytest run through pytest-xdist.

`pytest --fleet FILE --waves 1,5,all -m deploy --execute` does not run a session itself: it plans the waves and
runs each as `pytest <the same arguments> --fleet-wave RUN/N/NAMES -n <tenants>`, one run after
another (pytest-xdist runs a wave's tenants at once; within a wave, `waves.batches` keeps at most --per-server
tenants of one PostgreSQL server, and one per bot token, at a time). Each tenant's verdict is read back from
its own ledger, where its worker wrote it; a tenant whose ledger has no entry of this run is NO-GO. The first
NO-GO halts the rollout: later waves never start. The summary goes to the terminal and to
reports/<fleet id>/fleet.json.

`-m rollback` alone rolls back the tenants the last rollout moved (GO, or NO-GO part way), read from that
fleet.json; tenants never started, and NO-GO ones none of whose actions ran (a window refused for the tenant's
own NO-GO preflight), are left alone.

A fleet of Docker shops (`--fleet deployments/`, service compose:bot each): the release image is built here once,
before the first wave, and every wave gets it by id (`release_once`). The waves never get this shell's
DATABASE_URL or POSTGRES_*: each tenant brings its own database (`wave_env`).
"""
from __future__ import annotations

import dataclasses
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
from deploycheck.failure import CheckFailed
from deploycheck.infra import bot_image, targets
from deploycheck.infra.dsn import POSTGRES_VARS
from deploycheck.infra.embedded import EmbeddedError
from deploycheck.pytest_plugin import deployment_id_of
from deploycheck.pytest_plugin.release_fixtures import release_tag
from deploycheck.record.ledger import Ledger, LedgerError


WAVE_ENV = pytest.StashKey[dict]()  # the environment of the waves' runs (a fleet rehearsal's server in it)
WAVE_ARGS = pytest.StashKey[list]()  # what the driver adds to every wave's command line (--release-image)
# One database's settings: a fleet's tenants each bring their own (bot.env, the fleet file), so these are never
# passed to a wave: 7.1-7.3 would hand them to every tenant's migration runner (checks.window.migration_env
# takes the operator's own first), and all but one tenant would migrate, or refuse, another shop's database.
DATABASE_ENV = ("DATABASE_URL", *POSTGRES_VARS)


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
    config.stash[WAVE_ENV] = wave_env(server)
    try:
        tenants = load_tenants(config) if not server else rehearsal.tenants(option.fleet_rehearsal, server.admin_dsn)
        if not server:
            one_kind(tenants, option.fleet)
        rollout = waves.Rollout(waves.plan(tenants, option.waves))
        if rolling_back(config):
            roll_back(config, rollout, tenants, root, fleet_id)
        else:
            config.stash[WAVE_ARGS] = [] if server else release_once(config, tenants, root / fleet_id)
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


def wave_env(server) -> dict:
    """The waves' environment: a rehearsal's server in it; for real tenants this shell's, less DATABASE_ENV."""
    if server:
        return {**os.environ, rehearsal.SERVER_ENV: server.admin_dsn}
    dropped = [name for name in DATABASE_ENV if name in os.environ]
    if dropped:
        say(f"fleet: {', '.join(dropped)} of this shell not passed to the waves: each tenant's database is its own "
            "(its bot.env's DATABASE_URL, or the fleet file's database_url)")
    return {name: value for name, value in os.environ.items() if name not in DATABASE_ENV}


def one_kind(tenants: list[Tenant], source) -> None:
    """A wave's run has one checklist, said the Docker way or the host's way: refuse a fleet mixing the two."""
    docker = [t.name for t in tenants if t.service.partition(":")[0] == "compose"]
    others = [t.name for t in tenants if t.name not in docker]
    if docker and others:
        raise FleetError(f"{source}: mixes Docker shops (compose: {', '.join(docker[:3])}) and shops on a host "
                         f"service ({', '.join(others[:3])}): run them as two fleets (two files, or --fleet-group)")


def phases_of(markexpr: str | None) -> set[str]:
    return set((markexpr or "").replace("(", " ").replace(")", " ").split())


def release_once(config: pytest.Config, tenants: list[Tenant], folder: Path) -> list[str]:
    """A fleet of Docker shops: the release image built once, here, before the first wave, and given to every
    wave as --release-image by its id. Left to the tenants, each one's preflight would build its own (the
    release_image fixture): once per tenant, several at once on one daemon within a wave, and nothing would
    make them one image. By id, not by tag: every tenant checks, and later deploys (its ledger's 3.2+image),
    the very image built here, whatever the tag names by the time its wave starts; the tag, the commit and the
    bases it was really built on are kept in <fleet>/release-image.json. Only when it is needed and can be
    done here: preflight among the phases, no --release-image, a --bot-dir, every tenant a Docker shop on this
    machine. A build that fails here is not the fleet's error: the canary's preflight builds it again and is
    NO-GO with docker's own lines (3.2+image), which halts the rollout."""
    option = config.option
    if option.release_image or not option.bot_dir or "preflight" not in phases_of(option.markexpr) \
            or not all(t.service.partition(":")[0] == "compose" and t.host == "local" for t in tenants):
        return []
    bases = dict(given.partition("=")[::2] for given in option.base_image)
    if not all(bases) or not all(bases.values()):
        return []  # each tenant's preflight says what is wrong with --base-image
    say(f"fleet: building the release image once for its {len(tenants)} tenants")
    try:
        built = bot_image.build_release(config.invocation_params.dir / option.bot_dir, option.release_ref,
                                        release_tag(option.release_ref), bases, say)
    except CheckFailed as exc:
        say(f"fleet: the release image did not build ({str(exc).splitlines()[0]}): the canary's preflight "
            "builds it again and says why (3.2+image)")
        return []
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "release-image.json").write_text(json.dumps(dataclasses.asdict(built), indent=2) + "\n",
                                               encoding="utf-8")
    say(f"fleet: release image {built.tag} {built.id} from {built.ref} ({built.commit[:12]}), built on "
        f"{'; '.join(built.bases.values()) or 'its own FROM'}; every wave gets --release-image {built.id}")
    return [f"--release-image={built.id}"]


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
    command = [sys.executable, "-m", "pytest", *config.invocation_params.args, *config.stash.get(WAVE_ARGS, []),
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
    for tenant in [t for t in moved if nothing_moved(before[t.name], fleet_id)]:
        say(f"{tenant.name}: left alone: NO-GO before any action of its window ran (refused, or held back), so "
            "nothing of it moved; its database is not restored from the backup")
        moved.remove(tenant)
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
    failed = []
    for tenant in moved:
        if results[tenant.name].verdict == waves.GO:
            rollout.rolled_back(tenant.name)
        else:
            failed.append(tenant.name)
            say(f"{tenant.name}: rollback NO-GO; see {results[tenant.name].reports}")
    if failed:  # a tenant still NO-GO because its rollback failed keeps the fleet NO-GO (one left alone does not)
        rollout.halted_at = data.get("halted_at_wave") or 1


def nothing_moved(row: dict, fleet_id: str) -> bool:
    """Did none of this NO-GO tenant's actions run in the last rollout (its window refused for its own NO-GO
    preflight, or held back by a check that failed first)? Its newest ledger entry of this fleet has actions, all
    "not run". Anything else (an action that ran or erred, a crashed worker, no entry) counts as moved part way."""
    if row.get("verdict") != waves.NO_GO or not row.get("reports"):
        return False
    try:
        entries = Ledger(Path(row["reports"]) / "ledger.jsonl").read()
    except (LedgerError, OSError):
        return False
    mine = [entry for entry in entries if (entry.get("fleet") or {}).get("id") == fleet_id]
    actions = [item for item in (mine[-1].get("items") or {}).values() if item.get("kind") == "action"] if mine else []
    return bool(actions) and all(item.get("outcome") == "not run" for item in actions)


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

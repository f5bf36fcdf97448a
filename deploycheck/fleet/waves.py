"""Waves of a rollout, the rule that moves it from one wave to the next, and the resources tenants share.

`--waves 1,5,all` means: a wave of 1 tenant (the canary, the fleet's first), then a wave of the next 5, then
all the rest. A wave starts only when every tenant of the wave before it is GO; one NO-GO halts the rollout:
the rest of its wave still finish and report their verdicts (they ran concurrently), later waves never
start and their tenants stay "not started", untouched.

Tenants of a wave run concurrently, but some share what a release strains: one PostgreSQL server (restores,
migrations and pg_dump at once), one Telegram bot token (one rate limit; two pollers on one token also
steal each other's updates). `batches` splits a wave so that at most N tenants of one server and one tenant
per token run at a time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from deploycheck.fleet.tenants import Tenant

GO, NO_GO, ROLLED_BACK, NOT_STARTED, RUNNING = "GO", "NO-GO", "rolled back", "not started", "running"
DEFAULT_WAVES = "1,all"


class WaveError(ValueError):
    """A wave spec that cannot be planned, or a rollout step out of order: the message says what to do."""


@dataclass(frozen=True)
class Wave:
    number: int  # from 1: wave 1 is the canary
    tenants: tuple[Tenant, ...]

    @property
    def names(self) -> list[str]:
        return [tenant.name for tenant in self.tenants]


@dataclass
class TenantState:
    """Where one tenant stands: a row of the fleet summary."""

    name: str
    wave: int
    verdict: str = NOT_STARTED
    deployment_id: str | None = None
    reports: str | None = None


@dataclass(frozen=True)
class Result:
    """What a wave's run reports for one tenant."""

    verdict: str
    deployment_id: str | None = None
    reports: str | None = None


def parse_waves(spec: str) -> list[int | None]:
    """'1,5,all' -> [1, 5, None]: wave sizes, None for all the rest (allowed last only)."""
    sizes: list[int | None] = []
    words = [word.strip().lower() for word in str(spec).split(",")]
    for position, word in enumerate(words):
        if word == "all" and position == len(words) - 1:
            sizes.append(None)
        elif word.isdigit() and int(word) > 0:
            sizes.append(int(word))
        else:
            raise WaveError(f"--waves {spec}: {word or 'an empty entry'!r} is not a wave size: give positive "
                            "numbers of tenants, optionally ending with all (e.g. 1,5,all)")
    return sizes


def plan(tenants: list[Tenant], spec: str = DEFAULT_WAVES) -> list[Wave]:
    """The waves, in fleet order: the first tenant is the canary. Sizes beyond the fleet are cut short; a
    spec that leaves tenants out is refused (a rollout that silently skips shops is not a rollout)."""
    if not tenants:
        raise WaveError("the fleet has no tenants: nothing to plan")
    waves, start = [], 0
    for size in parse_waves(spec):
        if start >= len(tenants):
            break
        end = len(tenants) if size is None else min(start + size, len(tenants))
        waves.append(Wave(len(waves) + 1, tuple(tenants[start:end])))
        start = end
    if start < len(tenants):
        raise WaveError(f"--waves {spec} covers {start} of {len(tenants)} tenants: end it with all "
                        f"(e.g. {spec},all) so every tenant is in a wave")
    return waves


@dataclass
class Rollout:
    """The state machine of a rollout over planned waves. It only records: running the waves is the caller's."""

    waves: list[Wave]
    states: dict[str, TenantState] = field(init=False)
    started: int = field(init=False, default=0)      # how many waves have started
    halted_at: int | None = field(init=False, default=None)

    def __post_init__(self):
        self.states = {t.name: TenantState(t.name, wave.number) for wave in self.waves for t in wave.tenants}

    def next_wave(self) -> Wave | None:
        """The wave that may start now, or None (halted, the current wave not all GO yet, or done)."""
        if self.halted_at is not None or self.started >= len(self.waves):
            return None
        if self.started and any(self.states[n].verdict != GO for n in self.waves[self.started - 1].names):
            return None
        return self.waves[self.started]

    def start(self, wave: Wave) -> None:
        if wave != self.next_wave():
            raise WaveError(f"wave {wave.number} cannot start: {self.why_not(wave)}")
        for name in wave.names:
            self.states[name].verdict = RUNNING
        self.started += 1

    def why_not(self, wave: Wave) -> str:
        if self.halted_at is not None:
            return f"the rollout halted at wave {self.halted_at} (NO-GO: {', '.join(self.names_with(NO_GO))})"
        if wave.number <= self.started:
            return "it has started already"
        if wave.number > self.started + 1 or wave not in self.waves:
            return f"wave {self.started + 1} of this rollout comes next"
        waiting = [n for n in self.waves[self.started - 1].names if self.states[n].verdict != GO]
        return f"wave {self.started} is not all GO yet (waiting for {', '.join(waiting)})"

    def record(self, name: str, result: Result) -> None:
        state = self.state(name)
        if state.verdict != RUNNING:
            raise WaveError(f"tenant {name!r} is {state.verdict}, not running: only a running tenant gets a verdict")
        if result.verdict not in (GO, NO_GO):
            raise WaveError(f"tenant {name!r}: verdict {result.verdict!r}: use {GO} or {NO_GO}")
        state.verdict, state.deployment_id, state.reports = result.verdict, result.deployment_id, result.reports
        if result.verdict == NO_GO and self.halted_at is None:
            self.halted_at = state.wave

    def rolled_back(self, name: str) -> None:
        """A tenant that moved (GO, or NO-GO part way through its window) is back on the previous release."""
        state = self.state(name)
        if state.verdict not in (GO, NO_GO):
            raise WaveError(f"tenant {name!r} is {state.verdict}: only a tenant that ran can be rolled back")
        state.verdict = ROLLED_BACK

    def state(self, name: str) -> TenantState:
        if name not in self.states:
            raise WaveError(f"no tenant {name!r} in this rollout: name one of {', '.join(self.states)}")
        return self.states[name]

    def names_with(self, verdict: str) -> list[str]:
        return [state.name for state in self.states.values() if state.verdict == verdict]

    @property
    def verdict(self) -> str:
        """GO only when every tenant is GO; NO-GO once any was; else rolled back or still running."""
        if self.halted_at is not None:
            return NO_GO
        if all(state.verdict == GO for state in self.states.values()):
            return GO
        return ROLLED_BACK if self.names_with(ROLLED_BACK) else RUNNING

    def rows(self) -> list[TenantState]:
        return list(self.states.values())


def run(rollout: Rollout, run_wave: Callable[[Wave], dict[str, Result]]) -> Rollout:
    """Drive the rollout: each wave that may start is run by `run_wave` (e.g. one pytest-xdist run of its
    tenants), its verdicts recorded; stop at the first NO-GO. A tenant the run did not report is NO-GO: no
    verdict is no evidence that it is safe to go on."""
    while (wave := rollout.next_wave()) is not None:
        rollout.start(wave)
        results = run_wave(wave)
        for name in wave.names:
            rollout.record(name, results.get(name) or Result(NO_GO))
    return rollout


def shared_groups(tenants: list[Tenant]) -> dict[str, list[str]]:
    """Resources more than one tenant uses: 'postgres:<server>' and 'telegram:<token fingerprint>'."""
    found: dict[str, list[str]] = {}
    for tenant in tenants:
        keys = [f"postgres:{tenant.database_server}"]
        if tenant.token_fingerprint:
            keys.append(f"telegram:{tenant.token_fingerprint}")
        for key in keys:
            found.setdefault(key, []).append(tenant.name)
    return {key: names for key, names in found.items() if len(names) > 1}


def batches(tenants: list[Tenant] | tuple[Tenant, ...], per_server: int = 2, per_token: int = 1) -> list[list[Tenant]]:
    """Split a wave into batches to run one after another: in each, at most `per_server` tenants of one
    PostgreSQL server and `per_token` of one bot token. First fit, so the fleet's order is kept where it can be."""
    if per_server < 1 or per_token < 1:
        raise WaveError(f"per_server={per_server}, per_token={per_token}: each limit must be 1 or more")
    result: list[list[Tenant]] = []
    for tenant in tenants:
        for batch in result:
            on_server = sum(t.database_server == tenant.database_server for t in batch)
            on_token = sum(bool(tenant.token_fingerprint) and t.token_fingerprint == tenant.token_fingerprint
                           for t in batch)
            if on_server < per_server and on_token < per_token:
                batch.append(tenant)
                break
        else:
            result.append([tenant])
    return result

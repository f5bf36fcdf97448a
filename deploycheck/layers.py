"""The layers of deploycheck, top to bottom, in one place: a module imports from its own layer and the ones
below it, never from a layer above, and no modules import each other round a loop (a cycle). The self-test
tests/selftest/test_layers.py reads every module's imports with `ast` and fails, naming the modules, on an
upward import or a cycle.

Each layer is a set of module prefixes: `deploycheck.checks` is that package and every module in it. A
module belongs to the layer of its longest matching prefix, so one module can sit apart from its package:
the fleet driver runs pytest sessions of its own, with the plugin, so it sits above the plugin, while the
rest of the fleet (tenants, waves, summary) sits below it. `deploycheck` itself (the package's empty
`__init__`) is only that module, not a prefix of everything.

A new module of an existing package needs nothing here; a new package or top-level module gets a line, in
the layer that what it imports and what imports it put it in.
"""
from __future__ import annotations

ROOT = "deploycheck"

LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    # Programs and plugins over the plugin: `python -m deploycheck` (records, signatures), and `pytest --fleet`
    # (the fleet's driver, one run per wave, and the fleet's own pytest plugin).
    ("entry points", frozenset({"deploycheck.__main__", "deploycheck.fleet.driver", "deploycheck.fleet.plugin"})),
    # The pytest plugin: options, state, collection, safety, recorder, report, fixtures.
    ("plugin", frozenset({"deploycheck.pytest_plugin"})),
    # A fleet's tenants, waves and summary (what the plugin parametrizes by; the driver above runs them).
    ("fleet", frozenset({"deploycheck.fleet"})),
    # Pure checks, one module per checklist section: inputs in, evidence out, or CheckFailed.
    ("checks", frozenset({"deploycheck.checks"})),
    # The rehearsal's bot: its checkout, environment and processes, the fake gateway, the old reference bot.
    ("rehearsal", frozenset({"deploycheck.rehearsal"})),
    # What the checks and the rehearsal stand on: database, host, services, targets; the fake Bot API, the
    # drivers, the launcher and its outbound guard; the ledger and the signed record.
    ("infra, telegram, record", frozenset({"deploycheck.infra", "deploycheck.telegram", "deploycheck.record"})),
    # Imported by everything: the checklist data, attestations, the one way to fail, redaction.
    ("base", frozenset({ROOT, "deploycheck.checklist", "deploycheck.attest", "deploycheck.failure",
                        "deploycheck.redact", "deploycheck.layers", "deploycheck.resources"})),
)


def _matches(prefix: str, module: str) -> bool:
    return module == prefix or (prefix != ROOT and module.startswith(prefix + "."))


def layer_of(module: str) -> int | None:
    """The index of `module`'s layer in LAYERS (0 is the top), by its longest matching prefix; None when no
    layer places it."""
    found = [(len(prefix), index) for index, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
             if _matches(prefix, module)]
    return max(found)[1] if found else None


def name_of(index: int) -> str:
    return LAYERS[index][0]

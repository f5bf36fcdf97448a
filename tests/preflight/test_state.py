"""Current state documentation (5.1-5.3), recorded for later phases, and the migration rehearsed on the
restored copy before anyone stops the bot."""
from datetime import datetime, timezone
from pathlib import Path

import pytest

from deploycheck import attest
from deploycheck.checks import contract, monitor, state
from deploycheck.checks import window as deploy
from deploycheck.checks.expected import load_expected
from deploycheck.checks.locks import lint, lock_rows
from deploycheck.infra import catalog as schema
from deploycheck.infra.db import connect, violations
from deploycheck.infra.tunnel import host_side
from deploycheck.rehearsal.checkout import MIGRATION, RUNNER


@pytest.mark.item("5.1")
async def test_row_counts_recorded(db, evidence):
    """The six blanks, every table's count and the schema: postdeploy (8.4) and rollback (16.5) compare."""
    evidence.update(state.named_counts(await schema.row_counts(db)))
    evidence["schema"] = await schema.snapshot(db)
    evidence["Recorded At"] = (await db.fetchval("SELECT now()")).isoformat()  # the database's clock


@pytest.mark.item("5.2")
async def test_existing_duplicates_recorded(db, evidence):
    count, first = await violations(db, state.DUPLICATE_CONTENTS)
    evidence.update({"Duplicate Contents": count, "First Duplicates": first})  # the migration will fix them


@pytest.mark.item("5.3")
async def test_stock_consistency_recorded(db, evidence):
    count, first = await violations(db, state.STOCK_MISMATCHES)
    evidence.update({"Stock Mismatches": count, "First Mismatches": first,
                     "stock": await state.stock_per_product(db)})  # the migration will fix them


def migration_files(host, bot_dir: str) -> tuple[str, str]:
    """The release's migration and runner, on the bot's host: 5.3 runs them there, as 7.3 will."""
    migration, runner = f"{bot_dir.rstrip('/')}/{MIGRATION}", f"{bot_dir.rstrip('/')}/{RUNNER}"
    assert host.file(migration).is_file and host.file(runner).is_file, (
        f"the migration rehearsal needs the release's {MIGRATION} and {RUNNER} under {bot_dir} on {host.name}: "
        "is the release checked out there (3.2, 3.3)?")
    return migration, runner


@pytest.mark.item("5.3+locks")
async def test_lock_impact_listed(db, host, bot_dir, tmp_path, evidence):
    """The statements that take heavy locks, with each table's size. Under 5.3, not 3.3: a lint or database
    problem is no "migration script not found". The migration is read through the host, linted here."""
    migration, _ = migration_files(host, bot_dir)
    local = tmp_path / Path(MIGRATION).name
    local.write_text(host.file(migration).content_string)
    findings = await lint(local)
    sizes = {r["relname"]: r["bytes"] for r in await db.fetch(
        "SELECT relname, pg_total_relation_size(oid) AS bytes FROM pg_class WHERE relkind IN ('r', 'p')")}
    evidence["Exclusive Locks"] = lock_rows(findings, sizes)


@pytest.mark.item("5.3")
async def test_migration_rehearsed_on_restored_copy(host, target, bot_dir, release, recorded, run, evidence):
    """The release's migration, applied by the release's own runner (step 7.3's command) to the copy 4.3
    restored: predicted downtime, objects added, products that will go out of stock. The runner gets the
    copy's POSTGRES_* variables only (bot-auto-order's runner reads no DATABASE_URL), so it cannot reach the
    production database."""
    restored = recorded("4.3").get("Restored Copy")
    if not restored:
        pytest.fail("no restored copy to rehearse on: 4.3 (restore test) must pass in this run", pytrace=False)
    migration, _ = migration_files(host, bot_dir)
    prebuilt = tuple(name for name, _, _ in deploy.plain_indexes(host.file(migration).content_string))
    copy = await connect(restored)
    try:
        before, objects_before = await state.catalog_of_products(copy), await schema.snapshot(copy)
        rows_before = await schema.row_counts(copy)
        # Run on the host, as 7.3 will: the copy's address as the host reaches it (through a tunnel: its own end)
        code, output, seconds = await deploy.run_migration(
            host, release, MIGRATION, RUNNER, deploy.migration_env(True, host_side(target, restored)),
            run.redactor.text)
        after = await state.catalog_of_products(copy)
        # What the release's own migration did, measured: what postdeploy will hold production to. A migration
        # that failed rolled back and did nothing to hold production to.
        measured = await contract.measure(copy, objects_before, rows_before, contract.stamp(
            run.deployment_id, datetime.now(timezone.utc)), prebuilt) if code == 0 else None
    finally:
        await copy.close()
    to_zero = state.products_to_zero(before, after)
    evidence.update(deploy.predicted_window(seconds))
    if measured:
        evidence["Contract"] = measured
        evidence["Objects Added"] = len(contract.made(measured))
    evidence.update({"Predicted Downtime (migration)": f"{seconds:.1f} s",
                     "Products To Zero": to_zero, "Ran On": host.name, "Ran With": release.where, "Runner Output (end)": output[-1500:]})
    if deploy.runner_prompt(output):
        evidence.update({"Runner Prompt": deploy.runner_prompt(output), "Answer Given": deploy.ANSWER})
    errors = "\n".join(deploy.error_lines(output)) or output[-2000:]
    if code != 0:
        pytest.fail(f"the migration failed on the restored copy (exit {code}); it would fail in production too:\n"
                    f"{errors}", pytrace=False)
    # The checklist's floors (8.1's 4+, 8.2's 25+, 8.3's audit_log) are known here, before anyone stops the bot:
    # a release short of one is NO-GO now unless the owner accepted it (the same attestation passes 8.x later).
    short_of = contract.floor_problems(measured, run.attestations)
    if short_of:
        pytest.fail("the release's migration does not meet the checklist on the restored copy:\n  "
                    + "\n  ".join(short_of), pytrace=False)
    if to_zero:
        accepted = run.attestations.get("5.3")
        if accepted:
            evidence.update({"Owner Acceptance": accepted.text, "Accepted Products": list(accepted.products or ())})
        # The owner accepts products by name: one not named is a decision nobody made.
        problem = attest.acceptance_problem("5.3", accepted, to_zero)
        if problem:
            pytest.fail(problem, pytrace=False)


@pytest.mark.item("5.1")
async def test_query_timings_recorded(db, evidence):
    """The critical queries' times before the release: monitoring (15.11) compares with them."""
    evidence["Query Timings"] = {q["name"]: await monitor.timing_ms(db, q) for q in load_expected()["query"]}

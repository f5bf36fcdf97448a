"""8.4 and 12.1-12.3: no rows lost since preflight, no duplicate contents, stock in sync and kept,
no orphans. Each query returns the violating rows; the first are the evidence."""
import pytest

from deploycheck.checks import integrity, verify
from deploycheck.pytest_plugin.findings import findings, into


@pytest.mark.item("8.4")
async def test_row_counts_match_pre_migration(db, expected, evidence, recorded, run):
    """Against the counts right before the migration (6.2, the bot stopped): what the running bot wrote or
    deleted since preflight is not loss. Preflight's (5.1) only when the window counted nothing."""
    window = recorded("6.2")
    if window.get("tables") is not None:
        before, at = window["tables"], window.get("Counted At")
        evidence["Counted Before"] = f"in the window with the bot stopped (6.2, {at})"
    else:
        with findings(evidence):
            before = verify.preflight(recorded, "5.1", "tables", run.deployment_id)
        at = recorded("5.1").get("Recorded At")
        evidence["Counted Before"] = f"at preflight (5.1, {at}): the window counted nothing"
    after = recorded("7.3").get("Rows After")
    evidence["Counted After"] = "right after the migration (7.3)" if after is not None else "now"
    await into(evidence, verify.check_row_counts(db, expected, before, at, after))


@pytest.mark.item("12.1")
async def test_no_duplicate_contents(db, evidence):
    await into(evidence, integrity.check_duplicates(db))


@pytest.mark.item("12.2")
async def test_stock_matches_unused_contents(db, evidence):
    await into(evidence, integrity.check_stock_sync(db))


# Beyond the checklist: the recount that makes 12.2 pass is what can send stock to zero.
@pytest.mark.item("12.2+stock")
async def test_no_product_lost_its_stock(db, evidence, recorded, run):
    with findings(evidence):
        before = verify.preflight(recorded, "5.3", "stock", run.deployment_id)
    given = run.attestations.get("12.2")
    if given:
        evidence.update(given.evidence())
    await into(evidence, integrity.check_stock_kept(db, before, given))


@pytest.mark.item("12.3")
async def test_no_orphans(db, evidence):
    await into(evidence, integrity.check_orphans(db))

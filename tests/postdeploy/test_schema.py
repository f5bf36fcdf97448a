"""8.1-8.3: production against what the release's migration did on the rehearsal's copy (5.3's contract) or
the release's expected file (--expected), with the checklist's own counts as a floor; and, under 8.4 (no
data lost), the schema diff against preflight's snapshot.

One case per kind of object, not one per object: the objects are known only once 5.3 has run, which in
plain pytest is after collection. Each object is in the case's evidence, each problem in its message."""
import pytest

from deploycheck.checks import verify
from deploycheck.pytest_plugin.findings import findings, into


@pytest.mark.item("8.1")
async def test_constraints_applied(db, expected, evidence):
    await into(evidence, verify.check_constraints(db, expected))


@pytest.mark.item("8.1")
async def test_constraints_count(db, expected, run, evidence):
    await into(evidence, verify.check_constraint_count(db, expected, run.attestations.get("8.1")))


@pytest.mark.item("8.2")
async def test_indexes_created(db, expected, evidence):
    await into(evidence, verify.check_indexes(db, expected))


@pytest.mark.item("8.2")
async def test_indexes_count(db, expected, run, evidence):
    await into(evidence, verify.check_index_count(db, expected, run.attestations.get("8.2")))


@pytest.mark.item("8.3")
async def test_audit_log(db, expected, run, evidence):
    await into(evidence, verify.check_audit_log(db, expected, run.attestations.get("8.3")))


@pytest.mark.item("8.3")
async def test_tables_added(db, expected, evidence):
    await into(evidence, verify.check_tables(db, expected))


# A dropped column or constraint is data or a rule lost, which is what 8.4 "Verify data integrity" guards;
# 8.1-8.3 check what was added.
@pytest.mark.item("8.4")
async def test_schema_diff(db, expected, evidence, recorded, run):
    with findings(evidence):
        before = verify.preflight(recorded, "5.1", "schema", run.deployment_id)
    await into(evidence, verify.check_schema_diff(db, expected, before))

"""8.1-8.3: what v0.7.0 must leave in the schema (checklists/v0.7.0-expected.toml), one case per object;
and, under 8.4 (no data lost), the schema diff against preflight's snapshot."""
import pytest

from deploycheck.checks import verify
from deploycheck.checks.expected import load_expected
from deploycheck.pytest_plugin.findings import findings, into

EXPECTED = load_expected()
SCHEMA = EXPECTED["schema"]


@pytest.mark.item("8.1")
@pytest.mark.parametrize("constraint", EXPECTED["constraint"], ids=lambda c: c["name"])
async def test_constraint_applied(db, evidence, constraint):
    await into(evidence, verify.check_constraint(db, constraint, SCHEMA))


@pytest.mark.item("8.1")
async def test_constraints_count(db, evidence):
    await into(evidence, verify.check_constraint_count(db, EXPECTED))


@pytest.mark.item("8.2")
@pytest.mark.parametrize("index", EXPECTED["index"], ids=lambda i: i["name"])
async def test_index_created(db, evidence, index):
    await into(evidence, verify.check_index(db, index, SCHEMA))


@pytest.mark.item("8.2")
async def test_indexes_count(db, evidence):
    await into(evidence, verify.check_index_count(db, EXPECTED))


@pytest.mark.item("8.3")
async def test_audit_log(db, evidence):
    await into(evidence, verify.check_audit_log(db, EXPECTED))


# A dropped column or constraint is data or a rule lost, which is what 8.4 "Verify data integrity" guards;
# 8.1-8.3 check what was added.
@pytest.mark.item("8.4")
async def test_schema_diff(db, evidence, recorded, run):
    with findings(evidence):
        before = verify.preflight(recorded, "5.1", "schema", run.deployment_id)
    await into(evidence, verify.check_schema_diff(db, EXPECTED, before))

"""13.3: each critical query can use its index; the natural plan and timing are recorded."""
import pytest

from deploycheck.checks import performance
from deploycheck.checks.expected import load_expected
from deploycheck.pytest_plugin.findings import into

EXPECTED = load_expected()


@pytest.mark.item("13.3")
@pytest.mark.parametrize("query", EXPECTED["query"], ids=lambda q: q["name"])
async def test_critical_query_uses_its_index(db, evidence, query):
    await into(evidence, performance.check_query_plan(db, query))

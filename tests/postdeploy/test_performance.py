"""13.3: each critical query can use its index; the natural plan and timing are recorded."""
import pytest

from deploycheck.checks import postdeploy
from deploycheck.checks.postdeploy import into

EXPECTED = postdeploy.load_expected()


@pytest.mark.item("13.3")
@pytest.mark.parametrize("query", EXPECTED["query"], ids=lambda q: q["name"])
async def test_critical_query_uses_its_index(db, evidence, query):
    await into(evidence, postdeploy.check_query_plan(db, query))

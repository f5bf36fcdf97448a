"""13.3: each critical query can use the index the release gives it (the one its plan used on the
rehearsal's migrated copy, or the expected file's); the natural plan and timing are recorded. The queries
are the bot's own, the same for every release: the parametrization is theirs, their indexes the release's."""
import pytest

from deploycheck.checks import performance
from deploycheck.checks.expected import load_expected
from deploycheck.pytest_plugin.findings import into

QUERIES = load_expected()["query"]


@pytest.mark.item("13.3")
@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q["name"])
async def test_critical_query_uses_its_index(db, expected, evidence, query):
    release = {q["name"]: q for q in expected.get("query", [])}
    await into(evidence, performance.check_query_plan(db, release.get(query["name"], query)))

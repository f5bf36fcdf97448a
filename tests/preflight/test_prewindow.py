"""Beyond the checklist, before the backup: the migration's plain indexes built with CREATE INDEX CONCURRENTLY
while the old bot runs (it keeps reading and writing), so the window does not spend its time on them; the
migration's own CREATE INDEX IF NOT EXISTS then finds them built. The backup (4.1) and the copy 5.3 migrates
have them too, so 5.3 predicts the window as it will be."""
import pytest

from deploycheck.checks import window as deploy
from deploycheck.rehearsal.checkout import MIGRATION


@pytest.mark.item("3.3+indexes", observes=True)
async def test_plain_indexes_built_before_the_window(db, host, bot_dir, execute, evidence):
    path = f"{bot_dir.rstrip('/')}/{MIGRATION}"
    migration = host.file(path)
    assert migration.is_file, f"the release's migration {path} is not on {host.name}: 3.3 says why"
    rows, problems = await deploy.build_before_window(db, migration.content_string, build=execute)
    evidence.update({"Indexes": rows, "Valid Before The Window": sum(r["State"].endswith("valid") for r in rows),
                     "Left To The Window": [r["Index"] for r in rows if r["State"].startswith("left")]})
    what_next = ("fix the cause and run preflight again (the migration would build what is missing in the window, "
                 "which then takes longer)" if execute else
                 "run preflight with --execute to build them now (CONCURRENTLY: the bot keeps reading and writing), "
                 "or attest 3.3+indexes to leave them to the window, which then takes longer")
    assert not problems, ("the migration's plain indexes are not all built and valid before the window:\n  "
                          + "\n  ".join(problems) + f"\n{what_next}")

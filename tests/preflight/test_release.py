"""Beyond the checklist: the release is started before the window, on the copy 5.3 migrated, behind a fake
Telegram, and the read-only smoke checks run against it (11.1 welcome, 11.2 every list page against the
copy's data, 13.4 response time) through the bot's profile. A release whose bot does not import or does not
answer is NO-GO days before anyone stops production."""
import pytest

from deploycheck.checks import smoke
from deploycheck.checks.conversation import Conversation
from deploycheck.failure import CheckFailed

READ_ONLY = (("11.1", smoke.bot_responds), ("11.2", smoke.product_listing), ("13.4", smoke.response_time))


@pytest.mark.item("5.3+release")
async def test_release_starts_and_answers(release_trial, bot_profile, evidence):
    evidence.update(release_trial.evidence)
    if release_trial.problem:
        pytest.fail(release_trial.problem, pytrace=False)
    if release_trial.user is None:  # its code imports, but it was never started: not a pass
        pytest.fail("the release's code imports, but it was not started: 5.3 left no migrated copy to start it "
                    "on (see 5.3)", pytrace=False)
    talk = Conversation(bot_profile, {"user": release_trial.user, "admin": release_trial.admin}, release_trial.db)
    failures = []
    for item_id, check in READ_ONLY:
        try:
            found = await check(talk)
        except CheckFailed as exc:
            failures.append(f"{item_id}: {exc}")
            continue
        evidence[f"{item_id} on the release"] = {k: v for k, v in found.items() if k != "Transcript"}
    if failures:
        pytest.fail("the release's bot, started on the migrated copy, fails what the smoke items will check "
                    "after the window:\n" + "\n".join(failures), pytrace=False)

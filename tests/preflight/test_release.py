"""Beyond the checklist: the release is started before the window, on the copy 5.3 migrated, behind a fake
Telegram, and answers /start. A release whose bot does not import or does not answer is NO-GO days before
anyone stops production. (The full conversations are the smoke items', after the window.)"""
import pytest

REPLY_TIMEOUT = 15


@pytest.mark.item("5.3+release")
async def test_release_starts_and_answers(release_trial, evidence):
    evidence.update(release_trial.evidence)
    if release_trial.problem:
        pytest.fail(release_trial.problem, pytrace=False)
    if release_trial.user is None:
        return  # no migrated copy to start it on (5.3 failed and says why); its code imports
    await release_trial.user.send("/start")
    seen = await release_trial.user.collect(timeout=REPLY_TIMEOUT)
    evidence["Answer to /start"] = [m.describe() for m in seen][:3]
    if not seen:
        pytest.fail(f"the release's bot started on the migrated copy but did not answer /start within "
                    f"{REPLY_TIMEOUT} s: read its log, and the smoke items will fail the same way", pytrace=False)

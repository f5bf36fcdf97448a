"""Fixtures of the smoke items that talk through a bot profile: bot_profile, conversation,
offered. A pytest plugin module, registered by deploycheck.pytest_plugin; it relies on the plugin's run state
and on bot_fixtures' bot_user and admin_user.

The profile is --bot-profile NAME|FILE, or chosen from the checkout's layout: bot-auto-order's (src/main.py)
gets the v0.7.0 profile, deploycheck's reference bot (bot/main.py) the reference profile.
"""
from __future__ import annotations

import pytest

from deploycheck.checks import conversation_profile
from deploycheck.checks.conversation import Conversation
from deploycheck.checks.smoke import NOT_OFFERED
from deploycheck.pytest_plugin.state import EVIDENCE, STATE

LAYOUTS = (("src/main.py", "bot-auto-order-v0.7.0"), ("bot/main.py", "deploycheck-reference"))


def _profile_name(request) -> str:
    given = request.config.option.bot_profile
    if given:
        return given
    deployment = request.getfixturevalue("deployment")
    if not deployment.rehearsal and not deployment.bot_dir:
        pytest.fail("the smoke tests need to know the bot's screens: give --bot-profile NAME|FILE (shipped: "
                    f"{', '.join(conversation_profile.available())}) or --bot-dir, whose layout chooses one",
                    pytrace=False)
    bot_dir = request.getfixturevalue("bot_dir")
    host = request.getfixturevalue("host")
    for marker, name in LAYOUTS:
        if host.file(f"{str(bot_dir).rstrip('/')}/{marker}").exists:
            return name
    pytest.fail(f"cannot tell the bot's version from {bot_dir} (no src/main.py, no bot/main.py): give "
                "--bot-profile NAME|FILE", pytrace=False)


@pytest.fixture(scope="session")
def bot_profile(request) -> conversation_profile.Profile:
    """The bot profile the smoke items follow (checklists/profiles/*.toml)."""
    try:
        return conversation_profile.load(_profile_name(request))
    except conversation_profile.ProfileError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def conversation(request, bot_profile, bot_user, admin_user, db, fake_gateway, fake_bot_api):
    """A user and an admin talking to the bot through the profile, with the deployment database to check, and
    in a rehearsal the fake gateway where the bot under test is paid (None against production: an order is
    paid by hand and attested). In a rehearsal the fake Telegram's own log of what each of them received
    joins the item's evidence, beside the transcript."""
    yield Conversation(bot_profile, {"user": bot_user, "admin": admin_user}, db, fake_gateway)
    if fake_bot_api is not None:
        request.node.stash[EVIDENCE].update({
            "Telegram Log (user)": fake_bot_api.received_by(bot_user.user_id)[-40:],
            "Telegram Log (admin)": fake_bot_api.received_by(admin_user.user_id)[-40:]})


@pytest.fixture
def offered(request):
    """offered(evidence) -> evidence. A step this bot version does not offer makes the item a manual one:
    attested, it passes with the attestation beside what the bot showed; not attested, it fails against
    production and is skipped (not passed) in a rehearsal, saying what is missing."""
    state = request.config.stash[STATE]
    entry = getattr(request.node, "checklist_item", None)

    def check(evidence: dict) -> dict:
        missing = evidence.get("Not Offered")
        if not missing:
            return evidence
        attestation = state.attestations.get(entry.id) if entry else None
        if attestation:
            return {**evidence, **attestation.evidence()}
        request.node.stash[EVIDENCE].update(evidence)
        what = "; ".join(f"{m['what']} (the bot showed: {m['bot showed']})" for m in missing)
        item_id = entry.id if entry else "this item"
        message = (f"{item_id}: {NOT_OFFERED} ({evidence.get('Bot Profile')}): {what}. The steps it offers "
                   f"passed. Do the rest by hand where possible and attest it: --attest {item_id}=\"...\"")
        if state.rehearsal:
            pytest.skip(message + ". Rehearsal: skipped, not passed; the rehearsal's attestation file may "
                        "attest it")
        pytest.fail(message, pytrace=False)
    return check

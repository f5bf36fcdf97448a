"""Smoke tests (11.1–11.6) and the response time check (13.4): a user and an admin go through the bot's own
screens, as the bot profile (--bot-profile, or the checkout's) describes them.

The checks live in deploycheck.checks.smoke; each test hands it the conversation and records the evidence,
the transcript included. A step the bot version does not offer needs an attestation (`offered`). Write
flows (11.3–11.6) create marked test data and remove it at the end (smoke_run); against a live target they
run only with --execute (checklist data: writes = true).
"""
import pytest

from deploycheck.checks import smoke

# Until deploycheck.pytest_plugin registers profile_fixtures in its PARTS, this brings its fixtures; drop it then.


@pytest.mark.item("11.1")
async def test_bot_responds_to_start(conversation, offered, evidence):
    evidence.update(offered(await smoke.bot_responds(conversation)))


@pytest.mark.item("11.2")
async def test_product_listing(conversation, offered, evidence):
    evidence.update(offered(await smoke.product_listing(conversation)))


@pytest.mark.item("11.3")
async def test_product_creation(conversation, smoke_run, offered, evidence):
    evidence.update(offered(await smoke.product_creation(conversation, smoke_run)))


@pytest.mark.item("11.4")
async def test_content_addition(conversation, smoke_run, offered, evidence):
    evidence.update(offered(await smoke.content_addition(conversation, smoke_run)))


@pytest.mark.item("11.5")
async def test_voucher_system(conversation, smoke_run, offered, evidence):
    evidence.update(offered(await smoke.voucher_limit(conversation, smoke_run)))


@pytest.mark.item("11.6")
async def test_order_flow(conversation, smoke_run, offered, evidence):
    evidence.update(offered(await smoke.order_flow(conversation, smoke_run)))


@pytest.mark.item("13.4")
async def test_response_time(conversation, evidence):
    evidence.update(await smoke.response_time(conversation))

"""Smoke tests (11.1–11.6) and the response time check (13.4): a user and an admin talk to the bot.

The checks live in deploycheck.checks.smoke; each test hands it the drivers and records the evidence.
Write flows (11.3–11.6) create marked test data and remove it at the end (smoke_run); against a live
target they run only with --execute (checklist data: writes = true).
"""
import pytest

from deploycheck.checks import smoke


@pytest.mark.item("11.1")
async def test_bot_responds_to_start(bot_user, smoke_options, evidence):
    evidence.update(await smoke.bot_responds(bot_user, smoke_options))


@pytest.mark.item("11.2")
async def test_product_listing(bot_user, db, smoke_options, evidence):
    evidence.update(await smoke.product_listing(bot_user, db, smoke_options))


@pytest.mark.item("11.3")
async def test_product_creation(admin_user, smoke_db, smoke_run, smoke_options, evidence):
    evidence.update(await smoke.product_creation(admin_user, smoke_db, smoke_run, smoke_options))


@pytest.mark.item("11.4")
async def test_content_addition(admin_user, smoke_db, smoke_run, smoke_options, evidence):
    evidence.update(await smoke.content_addition(admin_user, smoke_db, smoke_run, smoke_options))


@pytest.mark.item("11.5")
async def test_voucher_system(bot_user, admin_user, smoke_db, smoke_run, smoke_options, evidence):
    evidence.update(await smoke.voucher_limit(bot_user, admin_user, smoke_db, smoke_run, smoke_options))


@pytest.mark.item("11.6")
async def test_order_flow(bot_user, smoke_db, smoke_run, smoke_options, evidence):
    evidence.update(await smoke.order_flow(bot_user, smoke_db, smoke_run, smoke_options))


@pytest.mark.item("13.4")
async def test_response_time(bot_user, smoke_options, evidence):
    evidence.update(await smoke.response_time(bot_user, smoke_options))

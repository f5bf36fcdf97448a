"""Telegram for the smoke tests: a fake Bot API server, user drivers, a launcher, broadcast, the reference bot.

Nothing here imports Telethon at import time: the live back end is an optional extra (`live`).
"""
from deploycheck.telegram.fake_api import FakeBotAPI
from deploycheck.telegram.driver import Button, Driver, FakeDriver, Message, NoReply
from deploycheck.telegram.live_driver import LiveDriver

__all__ = ["Button", "Driver", "FakeBotAPI", "FakeDriver", "LiveDriver", "Message", "NoReply"]

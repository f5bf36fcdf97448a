"""A real Telegram user account as a Driver (Telethon, the optional `live` extra): the smoke checks
against production. Kept apart from driver.py, which holds the common Driver and the FakeDriver.
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from deploycheck.telegram.driver import Button, ButtonNotFound, Driver, Message


class LiveDriverError(RuntimeError):
    pass


class LiveDriver(Driver):
    """A real Telegram user account (Telethon StringSession) talking to the deployed bot.

    Secrets come from the environment and are never logged or shown: TELEGRAM_API_ID,
    TELEGRAM_API_HASH, TELEGRAM_SESSION. Messages are spaced (`spacing` s) so the bot's anti-spam
    does not trip; use a dedicated test account.
    """

    settle = 2.0

    def __init__(self, bot_username: str, api_id: int, api_hash: str, session: str,
                 spacing: float = 1.5, settle: float = 2.0, connect_timeout: float = 20.0):
        super().__init__()
        self.bot_username = bot_username.lstrip("@")
        self._api_id, self._api_hash, self._session = api_id, api_hash, session
        self.spacing, self.settle, self.connect_timeout = spacing, settle, connect_timeout
        self._client = None
        self._bot = None
        self._last_send = 0.0
        self._raw: dict[int, Any] = {}     # message id -> Telethon message, for clicks
        self.first_name = ""

    @classmethod
    def from_env(cls, bot_username: str | None = None, session_var: str = "TELEGRAM_SESSION",
                 **kwargs: Any) -> "LiveDriver":
        names = ["TELEGRAM_API_ID", "TELEGRAM_API_HASH", session_var]
        missing = [n for n in names if not os.environ.get(n)]
        bot_username = bot_username or os.environ.get("TELEGRAM_BOT_USERNAME")
        if not bot_username:
            missing.append("TELEGRAM_BOT_USERNAME")
        if missing:
            raise LiveDriverError(
                f"the live smoke tests need a Telegram user account; missing: {', '.join(missing)}. "
                "Set TELEGRAM_API_ID and TELEGRAM_API_HASH (my.telegram.org), TELEGRAM_SESSION (a Telethon "
                "StringSession of a dedicated test account) and TELEGRAM_BOT_USERNAME.")
        try:
            api_id = int(os.environ["TELEGRAM_API_ID"])
        except ValueError:
            raise LiveDriverError("TELEGRAM_API_ID must be an integer (from my.telegram.org)") from None
        return cls(bot_username, api_id, os.environ["TELEGRAM_API_HASH"], os.environ[session_var], **kwargs)

    def __repr__(self) -> str:   # never the session or the api hash
        return f"<LiveDriver to @{self.bot_username}>"

    async def start(self) -> "LiveDriver":
        if self._client is not None:
            return self
        try:
            from telethon import TelegramClient, events
            from telethon.sessions import StringSession
        except ImportError:
            raise LiveDriverError("Telethon is not installed: pip install 'deploycheck[live]'") from None
        try:
            session = StringSession(self._session)
        except Exception:
            raise LiveDriverError("TELEGRAM_SESSION is not a valid Telethon StringSession "
                                  "(its value is not shown)") from None
        client = TelegramClient(session, self._api_id, self._api_hash, timeout=10, request_retries=2)
        await asyncio.wait_for(client.connect(), self.connect_timeout)
        if not await asyncio.wait_for(client.is_user_authorized(), self.connect_timeout):
            await client.disconnect()
            raise LiveDriverError("TELEGRAM_SESSION is not logged in (expired or revoked); create a new "
                                  "StringSession for the test account")
        self._client = client
        self._bot = await asyncio.wait_for(client.get_input_entity(self.bot_username), self.connect_timeout)
        me = await client.get_me()
        self.first_name = me.first_name or ""
        client.add_event_handler(self._on_message, events.NewMessage(chats=self._bot, incoming=True))
        client.add_event_handler(self._on_edit, events.MessageEdited(chats=self._bot, incoming=True))
        return self

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.disconnect()
            self._client = None

    def _convert(self, msg: Any, is_edit: bool) -> Message:
        markup = msg.reply_markup
        buttons, keyboard = [], []
        kind = type(markup).__name__ if markup is not None else ""
        if kind == "ReplyInlineMarkup":
            for row in markup.rows:
                buttons.append([Button(b.text, (b.data.decode(errors="replace") if getattr(b, "data", None)
                                                else None), getattr(b, "url", None)) for b in row.buttons])
        elif kind == "ReplyKeyboardMarkup":
            keyboard = [[b.text for b in row.buttons] for row in markup.rows]
        self._raw[msg.id] = msg
        kind = "sticker" if msg.sticker else "photo" if msg.photo else "document" if msg.document else "message"
        return Message(msg.raw_text or "", buttons, keyboard, is_edit=is_edit, message_id=msg.id, kind=kind)

    async def _on_message(self, event: Any) -> None:
        self._received(self._convert(event.message, False))

    async def _on_edit(self, event: Any) -> None:
        self._received(self._convert(event.message, True))

    async def _space(self) -> None:
        wait = self._last_send + self.spacing - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_send = time.monotonic()

    async def send(self, text: str) -> None:
        await self.start()
        await self._space()
        await asyncio.wait_for(self._client.send_message(self._bot, text), 30)

    async def _press(self, message: Message, button: Button) -> None:
        await self.start()
        await self._space()
        raw = self._raw.get(message.message_id)
        if raw is None:
            raise ButtonNotFound(f"button {button.text!r}: its message is no longer known")
        try:
            answer = await asyncio.wait_for(raw.click(text=button.text), 30)
        except Exception as err:   # a slow callback answer times out although the press worked
            if type(err).__name__ not in ("BotResponseTimeoutError", "TimeoutError"):
                raise
            return
        if answer is not None and getattr(answer, "message", None):
            self._received(Message(answer.message, kind="alert", show_alert=bool(getattr(answer, "alert", False))))

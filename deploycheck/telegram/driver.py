"""A user talking to the bot: one interface, two back ends.

`FakeDriver` plays a user of the fake Bot API; `LiveDriver` is a real Telegram account through
Telethon (the optional `live` extra). A smoke check only uses `send`, `click`, `next_message`,
`collect` and `drain`, so the same check runs in a rehearsal and against production.
"""
from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any


class NoReply(AssertionError):
    """The bot did not answer in time: what the user sees is silence."""


class ButtonNotFound(AssertionError):
    """The user looked for a button that is not on screen."""


@dataclass
class Button:
    text: str
    data: str | None = None      # callback data; None for url or other buttons
    url: str | None = None


@dataclass
class Message:
    """What the user sees of one bot message (or of an edit, or of a callback alert)."""
    text: str
    buttons: list[list[Button]] = field(default_factory=list)     # inline keyboard rows
    reply_keyboard: list[list[str]] = field(default_factory=list)  # reply keyboard sent with it
    is_edit: bool = False
    is_alert: bool = False
    message_id: int | None = None
    received_at: float = field(default_factory=time.monotonic)

    @property
    def button_texts(self) -> list[str]:
        return [b.text for row in self.buttons for b in row]

    def describe(self) -> str:
        """A one-line picture for failure messages: text, then the buttons."""
        kind = "alert" if self.is_alert else "edit" if self.is_edit else "message"
        text = self.text if len(self.text) <= 300 else self.text[:300] + "…"
        parts = [f"{kind} {text!r}"]
        if self.buttons:
            parts.append(f"inline buttons {self.button_texts}")
        if self.reply_keyboard:
            parts.append(f"reply keyboard {[t for row in self.reply_keyboard for t in row]}")
        return ", ".join(parts)


def describe_all(messages: list[Message]) -> str:
    return "nothing" if not messages else "; ".join(m.describe() for m in messages)


class Driver:
    """The common part: a queue of what the bot showed, waiting and collecting on it."""

    settle = 0.3     # quiet time after which a burst of bot messages is considered complete

    def __init__(self) -> None:
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.seen: list[Message] = []            # everything shown so far, for click()
        self.reply_keyboard: list[list[str]] = []  # the keyboard currently under the input field

    # back ends override these two
    async def send(self, text: str) -> None:
        raise NotImplementedError

    async def _press(self, message: Message, button: Button) -> None:
        raise NotImplementedError

    async def start(self) -> "Driver":
        return self

    async def stop(self) -> None:
        pass

    def _received(self, message: Message) -> None:
        if message.reply_keyboard:
            self.reply_keyboard = message.reply_keyboard
        self.seen.append(message)
        self._inbox.put_nowait(message)

    async def next_message(self, timeout: float = 10.0) -> Message:
        try:
            return await asyncio.wait_for(self._inbox.get(), timeout)
        except asyncio.TimeoutError:
            raise NoReply(f"the bot showed nothing within {timeout:g} s") from None

    async def collect(self, timeout: float = 10.0, settle: float | None = None) -> list[Message]:
        """Wait up to `timeout` for the first message, then take more until `settle` s pass quietly.
        Returns [] when nothing came (the caller says what that means)."""
        settle = self.settle if settle is None else settle
        try:
            messages = [await self.next_message(timeout)]
        except NoReply:
            return []
        while True:
            try:
                messages.append(await asyncio.wait_for(self._inbox.get(), settle))
            except asyncio.TimeoutError:
                return messages

    def drain(self) -> list[Message]:
        """Forget what arrived and was not read yet (so a step only sees its own answers)."""
        out = []
        while not self._inbox.empty():
            out.append(self._inbox.get_nowait())
        return out

    def find_button(self, pattern: str) -> tuple[Message | None, str] | None:
        """The newest inline button whose text matches `pattern` (a regex, searched), or a reply
        keyboard button; (message, text) with message None for a reply keyboard button."""
        for message in reversed(self.seen):
            for button in (b for row in message.buttons for b in row):
                if re.search(pattern, button.text):
                    return message, button.text
        for text in (t for row in self.reply_keyboard for t in row):
            if re.search(pattern, text):
                return None, text
        return None

    def visible_buttons(self) -> list[str]:
        inline = self.seen[-1].button_texts if self.seen else []
        return inline + [t for row in self.reply_keyboard for t in row]

    async def click(self, button_text: str) -> None:
        """Tap the newest inline button with exactly this text; a reply keyboard button sends its text."""
        for message in reversed(self.seen):
            for button in (b for row in message.buttons for b in row):
                if button.text == button_text:
                    await self._press(message, button)
                    return
        if any(button_text == t for row in self.reply_keyboard for t in row):
            await self.send(button_text)
            return
        raise ButtonNotFound(f"no button {button_text!r} on screen; the user sees buttons "
                             f"{self.visible_buttons()}")


def _inline_rows(markup: Any) -> list[list[Button]]:
    if not isinstance(markup, dict):
        return []
    return [[Button(b.get("text", ""), b.get("callback_data"), b.get("url")) for b in row]
            for row in markup.get("inline_keyboard", [])]


def _keyboard_rows(markup: Any) -> list[list[str]]:
    if not isinstance(markup, dict):
        return []
    return [[b if isinstance(b, str) else b.get("text", "") for b in row] for row in markup.get("keyboard", [])]


class FakeDriver(Driver):
    """A user of the fake Bot API: one user id and first name, the private chat with the bot."""

    def __init__(self, api, user_id: int, first_name: str, username: str | None = None, settle: float = 0.3):
        super().__init__()
        self.api, self.user_id, self.first_name, self.settle = api, user_id, first_name, settle
        if user_id not in api.users:
            api.add_user(user_id, first_name, username)
        self._pump: asyncio.Task | None = None

    async def start(self) -> "FakeDriver":
        if self._pump is None:
            self._pump = asyncio.create_task(self._read_outbox())
        return self

    async def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None

    async def _read_outbox(self) -> None:
        outbox = self.api.outbox(self.user_id)
        while True:
            out = await outbox.get()
            m = out.message
            if out.kind == "alert":
                self._received(Message(m["text"], is_alert=True))
                continue
            markup = m.get("sent_reply_markup")
            self._received(Message(text=m.get("text") or m.get("caption") or "", buttons=_inline_rows(markup),
                                   reply_keyboard=_keyboard_rows(markup), is_edit=out.kind == "edit",
                                   message_id=m["message_id"]))

    async def send(self, text: str) -> None:
        await self.start()
        self.api.send_user_message(self.user_id, text)

    async def _press(self, message: Message, button: Button) -> None:
        if button.data is None:
            raise ButtonNotFound(f"button {button.text!r} is a link ({button.url}), not a callback button")
        await self.start()
        self.api.press_button(self.user_id, message.message_id, button.data)

    def __repr__(self) -> str:
        return f"<FakeDriver user {self.user_id} {self.first_name!r}>"


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
        return Message(msg.raw_text or "", buttons, keyboard, is_edit=is_edit, message_id=msg.id)

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
            self._received(Message(answer.message, is_alert=True))

"""A user talking to the bot: one interface, two back ends.

`FakeDriver` plays a user of the fake Bot API; `LiveDriver` is a real Telegram account through
Telethon (the optional `live` extra). A smoke check only uses `send`, `click`, `next_message`,
`collect`, `drain`, `current` and `wait_for_edit`, so the same check runs in a rehearsal and
against production.

Everything a person sees arrives as a Message: a text, a photo (its caption as text), a sticker
(kind "sticker", empty text), an edit of an earlier message (is_edit, same message_id), and a
callback answer's text (kind "alert", e.g. the anti-spam "⛔️ Stop spamming!"). Edits and deletions
also change `current(message_id)`, the message as it stands on screen now.
"""
from __future__ import annotations

import asyncio
import dataclasses
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


KINDS = ("message", "photo", "sticker", "document", "alert")


@dataclass
class Message:
    """What the user sees of one bot message (or of an edit, or of a callback alert).

    `kind`: "message" (text), "photo" or "document" (text is the caption), "sticker" (no text), or
    "alert" (a callback answer's text; `show_alert` when it was a pop-up rather than a toast)."""
    text: str
    buttons: list[list[Button]] = field(default_factory=list)     # inline keyboard rows
    reply_keyboard: list[list[str]] = field(default_factory=list)  # reply keyboard sent with it
    is_edit: bool = False
    is_alert: bool = False
    message_id: int | None = None
    received_at: float = field(default_factory=time.monotonic)
    kind: str = "message"
    show_alert: bool = False
    deleted: bool = False         # set on the copy in Driver.current() once the bot deleted it

    def __post_init__(self) -> None:
        # is_alert and kind say the same thing; either may be given (is_alert came first)
        if self.is_alert:
            self.kind = "alert"
        self.is_alert = self.kind == "alert"

    @property
    def button_texts(self) -> list[str]:
        return [b.text for row in self.buttons for b in row]

    def describe(self) -> str:
        """A one-line picture for failure messages: text, then the buttons."""
        kind = "edit" if self.is_edit and not self.is_alert else self.kind
        text = self.text if len(self.text) <= 300 else self.text[:300] + "…"
        parts = [f"{kind} {text!r}" if text or kind != "sticker" else kind]
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
        self.seen: list[Message] = []            # everything shown so far, in order (history)
        self.reply_keyboard: list[list[str]] = []  # the keyboard currently under the input field
        self.screen: dict[int, Message] = {}     # message id -> the message as it stands now
        self._changed = asyncio.Event()          # replaced by a fresh one on every arrival

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
        if message.message_id is not None and not message.is_alert:
            self.screen[message.message_id] = message
        self.seen.append(message)
        self._inbox.put_nowait(message)
        self._wake()

    def _deleted(self, message_id: int) -> None:
        """The bot deleted a message: it leaves the screen (no new message: a person sees it vanish)."""
        shown = self.screen.get(message_id)
        if shown is not None:
            self.screen[message_id] = dataclasses.replace(shown, deleted=True, buttons=[],
                                                          received_at=time.monotonic())
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def current(self, message_id: int) -> Message | None:
        """The message as the user sees it now: its latest edit, `deleted` once the bot deleted it."""
        return self.screen.get(message_id)

    async def wait_for_edit(self, message: "Message | int", timeout: float = 10.0,
                            since: float | None = None) -> Message:
        """The first edit of `message` received after it (or after `since`, a monotonic time; for a
        bare message id, after this call). Does not consume the inbox. NoReply when none comes."""
        message_id = message if isinstance(message, int) else message.message_id
        if since is None:
            since = time.monotonic() if isinstance(message, int) else message.received_at
        deadline = time.monotonic() + timeout
        while True:
            changed = self._changed
            for seen in self.seen:
                if seen.is_edit and seen.message_id == message_id and seen.received_at > since:
                    return seen
            left = deadline - time.monotonic()
            if left <= 0:
                shown = self.current(message_id)
                raise NoReply(f"message {message_id} was not edited within {timeout:g} s; it shows "
                              f"{shown.describe() if shown else 'nothing (never received)'}")
            try:
                await asyncio.wait_for(changed.wait(), left)
            except asyncio.TimeoutError:
                pass

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

    def _on_screen(self) -> list[Message]:
        """Messages newest first, each as it stands now (an edit replaces its buttons, a deletion
        removes them), each once: a button the bot took away cannot be pressed, as in Telegram."""
        out, done = [], set()
        for message in reversed(self.seen):
            if message.message_id is None:
                out.append(message)
            elif message.message_id not in done:
                done.add(message.message_id)
                out.append(self.screen.get(message.message_id, message))
        return out

    def find_button(self, pattern: str) -> tuple[Message | None, str] | None:
        """The newest inline button whose text matches `pattern` (a regex, searched), or a reply
        keyboard button; (message, text) with message None for a reply keyboard button."""
        for message in self._on_screen():
            for button in (b for row in message.buttons for b in row):
                if re.search(pattern, button.text):
                    return message, button.text
        for text in (t for row in self.reply_keyboard for t in row):
            if re.search(pattern, text):
                return None, text
        return None

    def visible_buttons(self) -> list[str]:
        latest = self._on_screen()
        inline = latest[0].button_texts if latest else []
        return inline + [t for row in self.reply_keyboard for t in row]

    async def click(self, button_text: str) -> None:
        """Tap the newest inline button with exactly this text; a reply keyboard button sends its text."""
        for message in self._on_screen():
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
                self._received(Message(m["text"], kind="alert", show_alert=bool(m.get("show_alert"))))
            elif out.kind == "delete":
                self._deleted(m["message_id"])
            else:
                markup = m.get("sent_reply_markup")
                kind = next((k for k in ("photo", "sticker", "document") if k in m), "message")
                self._received(Message(text=m.get("text") or m.get("caption") or "", buttons=_inline_rows(markup),
                                       reply_keyboard=_keyboard_rows(markup), is_edit=out.kind == "edit",
                                       message_id=m["message_id"], kind=kind))

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


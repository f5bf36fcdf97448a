"""The fake Bot API's state: who can be written to, and what each user received.

Kept apart from the HTTP server (fake_api.py) and the methods (fake_methods.py) so each stays small.
A shop can have tens of thousands of users: they are kept as a set of ids (or answered by a
resolver callable), and a chat object is only made when the bot first writes to one of them.
"""
from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

MAX_TEXT = 4096
MAX_CAPTION = 1024
BLOCKED = "Forbidden: bot was blocked by the user"
CHAT_NOT_FOUND = "Bad Request: chat not found"


class ApiError(Exception):
    """An error answer of the Bot API: HTTP status, description, optional retry_after."""

    def __init__(self, code: int, description: str, retry_after: int | None = None):
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after

    def body(self) -> dict:
        out = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            out["parameters"] = {"retry_after": self.retry_after}
        return out


@dataclass
class Call:
    """One request the bot made: method, decoded parameters, HTTP status answered, monotonic time."""
    method: str
    params: dict
    status: int
    at: float


@dataclass
class Output:
    """Something the bot did that a played user sees: kind is message, edit, delete or alert."""
    kind: str
    message: dict
    at: float = field(default_factory=time.monotonic)


def plain_text(text: str, parse_mode: str | None) -> str:
    """What the user reads: Telegram strips the markup and keeps entities; we only strip."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        return html.unescape(re.sub(r"<[^>]+>", "", text))
    if mode == "markdownv2":
        return re.sub(r"\\(.)", r"\1", text)
    return text


# A resolver answers for a chat id the fake was not told about: "ok" (a shop user Telegram would
# deliver to), "blocked" (403) or None (400 chat not found).
Resolver = Callable[[int], "str | None"]


class Directory:
    """The people the bot may write to: played users (add_user), the shop's users (add_users, cheap
    for 50,000 ids) and, for anything else, an optional resolver. Blocked ones answer 403."""

    def __init__(self) -> None:
        self.users: dict[int, dict] = {}      # played users: they can also send and press
        self.chats: dict[int, dict] = {}      # chat objects, made on first use for shop users
        self.blocked: set[int] = set()
        self.shop: set[int] = set()
        self.names: dict[int, str] = {}
        self.resolver: Resolver | None = None

    def add_user(self, user_id: int, first_name: str, username: str | None = None,
                 last_name: str | None = None) -> dict:
        user = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "id"}
        chat = {"id": user_id, "type": "private", "first_name": first_name}
        if username:
            user["username"] = chat["username"] = username
        if last_name:
            user["last_name"] = last_name
        self.users[user_id] = user
        self.chats[user_id] = chat
        return user

    def add_users(self, ids: Iterable[int], blocked: Iterable[int] = (),
                  names: dict[int, str] | None = None) -> None:
        """The shop's users (users.telegram_id): Telegram delivers to them; `blocked` ones answer 403."""
        self.shop.update(int(i) for i in ids)
        blocked = {int(i) for i in blocked}
        self.shop |= blocked
        self.blocked |= blocked
        self.names.update(names or {})

    def status(self, chat_id: Any) -> str | None:
        """"ok", "blocked" or None (unknown to Telegram)."""
        if not isinstance(chat_id, int):
            return None
        if chat_id in self.blocked:
            return "blocked"
        if chat_id in self.chats or chat_id in self.shop:
            return "ok"
        return self.resolver(chat_id) if self.resolver is not None else None

    def chat_for_send(self, chat_id: Any) -> int:
        """The chat id the bot may write to, or the ApiError Telegram would answer."""
        if chat_id is None:
            raise ApiError(400, "Bad Request: chat_id is empty")
        state = self.status(chat_id)
        if state is None:
            raise ApiError(400, CHAT_NOT_FOUND)
        if state == "blocked":
            raise ApiError(403, BLOCKED)
        if state != "ok":
            raise ApiError(500, f"the fake Bot API's resolver answered {state!r} for chat {chat_id}; "
                                "it must answer 'ok', 'blocked' or None")
        return chat_id

    def chat(self, chat_id: int) -> dict:
        if chat_id not in self.chats:
            self.chats[chat_id] = {"id": chat_id, "type": "private",
                                   "first_name": self.names.get(chat_id) or f"User {chat_id}"}
        return self.chats[chat_id]


def _stamp() -> str:
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _buttons(markup: Any) -> tuple[list, list]:
    """Inline button labels and reply keyboard labels, as rows of text."""
    if not isinstance(markup, dict):
        return [], []
    inline = [[b.get("text", "") for b in row] for row in markup.get("inline_keyboard", [])]
    keyboard = [[b if isinstance(b, str) else b.get("text", "") for b in row] for row in markup.get("keyboard", [])]
    return inline, keyboard


class ReceivedLog:
    """Per chat, in order: what the bot sent, edited, deleted, answered, or was refused (JSON-able)."""

    def __init__(self) -> None:
        self._by_chat: dict[int, list[dict]] = {}

    def record(self, chat_id: int, method: str, *, message: dict | None = None, markup: Any = None,
               error: ApiError | None = None, **extra: Any) -> None:
        entry: dict[str, Any] = {"at": _stamp(), "method": method}
        if message is not None:
            entry["message_id"] = message["message_id"]
            for key in ("text", "caption"):
                if key in message:
                    entry[key] = message[key]
        inline, keyboard = _buttons(markup)
        if inline:
            entry["buttons"] = inline
        if keyboard:
            entry["keyboard"] = keyboard
        entry.update({k: v for k, v in extra.items() if v is not None})
        if error is not None:
            entry["error"] = f"{error.code} {error.description}"
        self._by_chat.setdefault(chat_id, []).append(entry)

    def received_by(self, chat_id: int, clip: int = 300) -> list[dict]:
        """Copies of the chat's entries, texts clipped to `clip` characters for evidence. Each has `at`
        (UTC, ms), `method`, and as they apply: `message_id`, `text` or `caption`, `photo`/`sticker`/
        `document` (file id or "upload NAME (N bytes)"), `buttons` and `keyboard` (rows of labels),
        `show_alert`, `error` (e.g. "403 Forbidden: bot was blocked by the user")."""
        out = []
        for entry in self._by_chat.get(chat_id, []):
            copy = dict(entry)
            for key in ("text", "caption"):
                if isinstance(copy.get(key), str):
                    copy[key] = _clip(copy[key], clip)
            out.append(copy)
        return out

    def summary(self) -> dict:
        """Counts over every chat: chats written to, delivered sends, refused ones by reason."""
        sends = [e for entries in self._by_chat.values() for e in entries if e["method"].startswith("send")]
        return {"chats": len(self._by_chat), "delivered": sum("error" not in e for e in sends),
                "blocked": sum(e.get("error", "").startswith("403") for e in sends),
                "chat_not_found": sum(CHAT_NOT_FOUND in e.get("error", "") for e in sends)}

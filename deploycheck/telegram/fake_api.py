"""A fake Telegram Bot API server: aiohttp on 127.0.0.1, everything in memory.

Hand-written because no maintained library serves the *server* side of the Bot API for tests
(the Python libraries are all clients). It speaks what python-telegram-bot and aiogram send
(form fields with JSON inside, multipart for files) and answers like Telegram does, including the
HTTP statuses the clients map to exceptions (see ../shared/facts/telegram-bot-api.md).

A test plays users with `send_user_message` / `press_button` and reads what the bot did to a chat
from `outbox(chat_id)`; `FakeDriver` wraps both. Every call is kept in `calls`.
"""
from __future__ import annotations

import asyncio
import html
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# Fields that clients send as JSON text inside a form field.
JSON_FIELDS = {"reply_markup", "commands", "entities", "caption_entities", "allowed_updates", "scope",
               "link_preview_options", "reply_parameters", "media", "results"}
INT_FIELDS = {"message_id", "offset", "limit", "timeout", "user_id", "reply_to_message_id"}
MAX_POLL_TIMEOUT = 50.0
MAX_TEXT = 4096


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
    """Something the bot did that a user sees: kind is message, edit or alert (a callback answer)."""
    kind: str
    message: dict
    at: float = field(default_factory=time.monotonic)


def _plain_text(text: str, parse_mode: str | None) -> str:
    """What the user reads: Telegram strips the markup and keeps entities; we only strip."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        return html.unescape(re.sub(r"<[^>]+>", "", text))
    if mode == "markdownv2":
        return re.sub(r"\\(.)", r"\1", text)
    return text


class FakeBotAPI:
    """The fake server. `await start()` / `await stop()`, or `async with FakeBotAPI() as api`."""

    SUPPORTED = ("getMe", "deleteWebhook", "getWebhookInfo", "setMyCommands", "getUpdates", "sendMessage",
                 "editMessageText", "editMessageReplyMarkup", "answerCallbackQuery", "sendPhoto",
                 "sendDocument", "sendSticker", "deleteMessage")

    # Each started server, by its url: lets ReferenceBot.wait_ready see the first getUpdates.
    running: dict[str, "FakeBotAPI"] = {}

    def __init__(self, token: str | None = None, *, bot_id: int = 6000000001,
                 bot_username: str = "deploycheck_test_bot", bot_name: str = "Deploycheck Test Bot"):
        self.token = token or f"{bot_id}:FAKE{secrets.token_hex(16)}"
        self.bot = {"id": bot_id, "is_bot": True, "first_name": bot_name, "username": bot_username,
                    "can_join_groups": True, "can_read_all_group_messages": False,
                    "supports_inline_queries": False}
        self.calls: list[Call] = []
        self.commands: list[dict] = []
        self.users: dict[int, dict] = {}
        self.chats: dict[int, dict] = {}
        self.blocked: set[int] = set()          # users who blocked the bot: sends answer 403
        self._messages: dict[tuple[int, int], dict] = {}
        self._next_message_id: dict[int, int] = {}
        self._outboxes: dict[int, asyncio.Queue[Output]] = {}
        self._updates: list[dict] = []
        self._next_update_id = 1
        self._callbacks: dict[str, dict] = {}
        self._changed = asyncio.Event()          # set when an update or a call arrives
        self._polls_in_flight = 0
        self._last_poll_end = 0.0
        self._rate_limits: dict[str, list[int]] = {}   # method -> [retry_after, times left]
        self._down_until = 0.0
        self._runner: web.AppRunner | None = None
        self._closing = False
        self.url = ""

    # -- life cycle ---------------------------------------------------------------------------
    async def start(self, port: int = 0) -> "FakeBotAPI":
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/file/bot{token}/{path:.*}", self._file)
        # access_log=None: an access log would print the token, which is part of every URL.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{bound}"
        self._closing = False
        FakeBotAPI.running[self.url] = self
        return self

    async def stop(self) -> None:
        self._closing = True
        self._changed.set()          # release held getUpdates at once
        FakeBotAPI.running.pop(self.url, None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeBotAPI":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    @property
    def bot_base_url(self) -> str:
        """For python-telegram-bot's `base_url` (the token is appended)."""
        return f"{self.url}/bot"

    @property
    def file_base_url(self) -> str:
        return f"{self.url}/file/bot"

    def __repr__(self) -> str:   # never the token
        return f"<FakeBotAPI {self.url or 'not started'} bot=@{self.bot['username']}>"

    # -- fault injection ------------------------------------------------------------------------
    def rate_limit(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        """Answer the next `times` calls of `method` with 429 Too Many Requests and retry_after."""
        self._rate_limits[method.lower()] = [retry_after, times]

    def down(self, seconds: float) -> None:
        """Be down for a window: every call answers 502 Bad Gateway until it has passed."""
        self._down_until = time.monotonic() + seconds
        self._changed.set()          # held getUpdates fail too, as their connections would

    # -- users, as a test plays them -----------------------------------------------------------
    def add_user(self, user_id: int, first_name: str, username: str | None = None,
                 last_name: str | None = None) -> dict:
        user = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "id"}
        if username:
            user["username"] = username
        if last_name:
            user["last_name"] = last_name
        self.users[user_id] = user
        chat = {"id": user_id, "type": "private", "first_name": first_name}
        if username:
            chat["username"] = username
        self.chats[user_id] = chat
        return user

    def block_bot(self, user_id: int) -> None:
        self.blocked.add(user_id)

    def _user(self, user_id: int) -> dict:
        if user_id not in self.users:
            raise KeyError(f"unknown fake user {user_id}: call add_user({user_id}, 'Name') first")
        return self.users[user_id]

    def _new_message(self, chat_id: int, sender: dict, **content: Any) -> dict:
        message_id = self._next_message_id.get(chat_id, 0) + 1
        self._next_message_id[chat_id] = message_id
        message = {"message_id": message_id, "date": int(time.time()), "chat": self.chats[chat_id],
                   "from": sender, **content}
        self._messages[(chat_id, message_id)] = message
        return message

    def _push_update(self, **payload: Any) -> dict:
        update = {"update_id": self._next_update_id, **payload}
        self._next_update_id += 1
        self._updates.append(update)
        self._changed.set()
        return update

    def send_user_message(self, user_id: int, text: str, chat_id: int | None = None) -> dict:
        """The user types `text`; a leading /command gets the bot_command entity clients require."""
        user = self._user(user_id)
        chat_id = user_id if chat_id is None else chat_id
        content: dict[str, Any] = {"text": text}
        command = re.match(r"/\S+", text)
        if command:
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command.group())}]
        message = self._new_message(chat_id, user, **content)
        self._push_update(message=message)
        return message

    def press_button(self, user_id: int, message_id: int, data: str, chat_id: int | None = None) -> str:
        """The user taps an inline button of one of the bot's messages; returns the callback id."""
        user = self._user(user_id)
        chat_id = user_id if chat_id is None else chat_id
        message = self._messages.get((chat_id, message_id))
        if message is None:
            raise KeyError(f"no message {message_id} in chat {chat_id}")
        callback_id = secrets.token_hex(8)
        query = {"id": callback_id, "from": user, "message": message, "chat_instance": str(chat_id),
                 "data": data}
        self._callbacks[callback_id] = query
        self._push_update(callback_query=query)
        return callback_id

    def outbox(self, chat_id: int) -> asyncio.Queue[Output]:
        """What the bot did in this chat, in order (messages, edits, alerts)."""
        return self._outboxes.setdefault(chat_id, asyncio.Queue())

    def message(self, chat_id: int, message_id: int) -> dict | None:
        return self._messages.get((chat_id, message_id))

    # -- observation ----------------------------------------------------------------------------
    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method.lower() == method.lower()]

    async def wait_for_call(self, method: str, since: float = 0.0, timeout: float = 10.0) -> Call:
        """The first call of `method` made at or after monotonic time `since`; TimeoutError if none."""
        deadline = time.monotonic() + timeout
        while True:
            for call in self.calls:
                if call.at >= since and call.method.lower() == method.lower():
                    return call
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {method} call reached the fake Bot API within {timeout} s")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.2))
            except asyncio.TimeoutError:
                pass

    def is_polled(self, within: float = 1.0) -> bool:
        """True while some bot is polling this server (a getUpdates held now or ended very recently)."""
        return self._polls_in_flight > 0 or time.monotonic() - self._last_poll_end < within

    # -- HTTP --------------------------------------------------------------------------------------
    async def _file(self, request: web.Request) -> web.Response:
        return web.json_response(ApiError(404, "Not Found: the fake Bot API stores no files").body(), status=404)

    async def _params(self, request: web.Request) -> dict:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            params.update(await request.json())
        elif request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    params[key] = {"filename": value.filename, "size": len(value.file.read())}
                else:
                    params[key] = value
        for key, value in list(params.items()):
            if isinstance(value, str) and value.startswith("attach://"):   # aiogram's file parts
                params[key] = params.get(value[len("attach://"):], value)
            elif key in JSON_FIELDS and isinstance(value, str):
                try:
                    params[key] = json.loads(value)
                except ValueError:
                    raise ApiError(400, f"Bad Request: can't parse {key} JSON object") from None
            elif key in INT_FIELDS and isinstance(value, str):
                try:
                    params[key] = float(value) if key == "timeout" else int(value)
                except ValueError:
                    raise ApiError(400, f"Bad Request: {key} must be a number, got {value!r}") from None
        if isinstance(params.get("chat_id"), str) and re.fullmatch(r"-?\d+", params["chat_id"]):
            params["chat_id"] = int(params["chat_id"])
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        # Recorded on arrival (status filled in on answer): a held getUpdates must count at once.
        call = Call(method, {}, 0, time.monotonic())
        self.calls.append(call)
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            call.params = await self._params(request)
            self._changed.set()
            if time.monotonic() < self._down_until:
                raise ApiError(502, "Bad Gateway")
            limit = self._rate_limits.get(method.lower())
            if limit and limit[1] > 0:
                limit[1] -= 1
                raise ApiError(429, f"Too Many Requests: retry after {limit[0]}", retry_after=limit[0])
            handler = getattr(self, "_m_" + method.lower(), None)
            if handler is None:
                raise ApiError(400, f"Bad Request: method '{method}' is not supported by the fake Bot API "
                                    f"(deploycheck.telegram.fake_api); it answers: {', '.join(self.SUPPORTED)}")
            status, body = 200, {"ok": True, "result": await handler(call.params)}
        except ApiError as err:
            status, body = err.code, err.body()
        except Exception as err:      # a bug in the fake: say so in the API's own error format
            status, body = 500, ApiError(500, f"Internal Server Error in the fake Bot API: "
                                              f"{type(err).__name__}: {err}").body()
        call.status = status
        self._changed.set()
        return web.json_response(body, status=status)

    # -- methods ---------------------------------------------------------------------------------
    async def _m_getme(self, p: dict) -> dict:
        return self.bot

    async def _m_deletewebhook(self, p: dict) -> bool:
        return True

    async def _m_getwebhookinfo(self, p: dict) -> dict:
        return {"url": "", "has_custom_certificate": False, "pending_update_count": len(self._updates)}

    async def _m_setmycommands(self, p: dict) -> bool:
        self.commands = p.get("commands") or []
        return True

    async def _m_getupdates(self, p: dict) -> list:
        offset, limit = p.get("offset", 0) or 0, p.get("limit", 100) or 100
        timeout = min(float(p.get("timeout", 0) or 0), MAX_POLL_TIMEOUT)
        if offset > 0:    # Telegram forgets every update below the offset: they are confirmed
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        self._polls_in_flight += 1
        try:
            deadline = time.monotonic() + timeout
            while not self._updates and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except asyncio.TimeoutError:
                    break
                if time.monotonic() < self._down_until:
                    raise ApiError(502, "Bad Gateway")
            return self._updates[:limit]
        finally:
            self._polls_in_flight -= 1
            self._last_poll_end = time.monotonic()

    def _chat_for_send(self, p: dict) -> int:
        chat_id = p.get("chat_id")
        if chat_id is None:
            raise ApiError(400, "Bad Request: chat_id is empty")
        if chat_id not in self.chats:
            raise ApiError(400, "Bad Request: chat not found")
        if chat_id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _emit(self, chat_id: int, kind: str, message: dict, markup: Any = None) -> None:
        # The outbox keeps the reply_markup as sent, reply keyboards included (Telegram's Message
        # object only echoes inline keyboards, but the user's client shows both).
        self.outbox(chat_id).put_nowait(Output(kind, {**message, "sent_reply_markup": markup}))

    async def _send(self, p: dict, **content: Any) -> dict:
        chat_id = self._chat_for_send(p)
        markup = p.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            content["reply_markup"] = markup
        message = self._new_message(chat_id, self.bot, **content)
        self._emit(chat_id, "message", message, markup)
        return message

    async def _m_sendmessage(self, p: dict) -> dict:
        text = _plain_text(str(p.get("text") or ""), p.get("parse_mode"))
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        return await self._send(p, text=text)

    async def _media(self, p: dict, field_name: str, content: Any) -> dict:
        if not p.get(field_name):
            raise ApiError(400, f"Bad Request: there is no {field_name} in the request")
        extra = {}
        if p.get("caption"):
            extra["caption"] = _plain_text(str(p["caption"]), p.get("parse_mode"))
        return await self._send(p, **{field_name: content}, **extra)

    async def _m_sendphoto(self, p: dict) -> dict:
        photo = [{"file_id": "fake-photo", "file_unique_id": "fake-photo-u", "width": 1, "height": 1}]
        return await self._media(p, "photo", photo)

    async def _m_senddocument(self, p: dict) -> dict:
        name = p["document"].get("filename") if isinstance(p.get("document"), dict) else None
        return await self._media(p, "document", {"file_id": "fake-doc", "file_unique_id": "fake-doc-u",
                                                 **({"file_name": name} if name else {})})

    async def _m_sendsticker(self, p: dict) -> dict:
        return await self._media(p, "sticker", {"file_id": "fake-sticker", "file_unique_id": "fake-sticker-u",
                                                "type": "regular", "width": 512, "height": 512,
                                                "is_animated": False, "is_video": False})

    def _bot_message(self, p: dict) -> tuple[int, dict]:
        if p.get("inline_message_id"):
            raise ApiError(400, "Bad Request: inline messages are not supported by the fake Bot API")
        chat_id = self._chat_for_send(p)
        message = self._messages.get((chat_id, p.get("message_id")))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if message["from"]["id"] != self.bot["id"]:
            raise ApiError(400, "Bad Request: message can't be edited")
        return chat_id, message

    def _edit(self, chat_id: int, message: dict, changes: dict, markup: Any) -> dict:
        new = {k: v for k, v in message.items() if k != "reply_markup"}
        new.update(changes)
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            new["reply_markup"] = markup
        if new == message:
            raise ApiError(400, "Bad Request: message is not modified: specified new message content and "
                                "reply markup are exactly the same as a current content and reply markup "
                                "of the message")
        new["edit_date"] = int(time.time())
        self._messages[(chat_id, message["message_id"])] = new
        self._emit(chat_id, "edit", new, markup)
        return new

    async def _m_editmessagetext(self, p: dict) -> dict:
        chat_id, message = self._bot_message(p)
        text = _plain_text(str(p.get("text") or ""), p.get("parse_mode"))
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        return self._edit(chat_id, message, {"text": text}, p.get("reply_markup"))

    async def _m_editmessagereplymarkup(self, p: dict) -> dict:
        chat_id, message = self._bot_message(p)
        return self._edit(chat_id, message, {}, p.get("reply_markup"))

    async def _m_answercallbackquery(self, p: dict) -> bool:
        query = self._callbacks.pop(str(p.get("callback_query_id")), None)
        if query is None:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        if p.get("text"):
            chat_id = query["message"]["chat"]["id"]
            alert = {"text": str(p["text"]), "show_alert": str(p.get("show_alert")).lower() == "true"}
            self.outbox(chat_id).put_nowait(Output("alert", alert))
        return True

    async def _m_deletemessage(self, p: dict) -> bool:
        chat_id = self._chat_for_send(p)
        if self._messages.pop((chat_id, p.get("message_id")), None) is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        return True

"""A fake Telegram Bot API server: aiohttp on 127.0.0.1, everything in memory.

Hand-written because no maintained library serves the *server* side of the Bot API for tests
(the Python libraries are all clients). It speaks what python-telegram-bot and aiogram send
(form fields with JSON inside, multipart for files, JSON from raw httpx) and answers like Telegram
does, including the HTTP statuses the clients map to exceptions (see ../shared/facts/telegram-bot-api.md).

A test plays users with `send_user_message` / `press_button` and reads what the bot did to a chat
from `outbox(chat_id)`; `FakeDriver` wraps both. The shop's other users are made known in bulk
(`add_users`, or a `resolver`), so the bot's jobs can write to them as Telegram would let it;
`received_by(chat_id)` is the log of what one user received. Every call is kept in `calls`.

This module is the server and the routing; the state is in fake_model.py, the update queue in
fake_updates.py, the methods in fake_methods.py.
"""
from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from deploycheck.telegram.fake_methods import BotMethods
from deploycheck.telegram.fake_model import ApiError, Call, Directory, Output, ReceivedLog, Resolver
from deploycheck.telegram.fake_updates import UpdateQueue

__all__ = ["ApiError", "Call", "FakeBotAPI", "Output"]

# Fields that clients send as JSON text inside a form field.
JSON_FIELDS = {"reply_markup", "commands", "entities", "caption_entities", "allowed_updates", "scope",
               "link_preview_options", "reply_parameters", "media", "results"}
INT_FIELDS = {"message_id", "offset", "limit", "timeout", "user_id", "reply_to_message_id"}


class FakeBotAPI(BotMethods):
    """The fake server. `await start()` / `await stop()`, or `async with FakeBotAPI() as api`."""

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
        self.webhook = ""                       # set by setWebhook: getUpdates then answers 409
        self.directory = Directory()
        self.log = ReceivedLog()
        self.updates = UpdateQueue()
        self._messages: dict[tuple[int, int], dict] = {}
        self._next_message_id: dict[int, int] = {}
        self._outboxes: dict[int, asyncio.Queue[Output]] = {}
        self._callbacks: dict[str, dict] = {}
        self._called = asyncio.Event()          # replaced by a fresh one each time a call arrives or ends
        self._rate_limits: dict[str, list[int]] = {}   # method -> [retry_after, times left]
        self._down_until = 0.0
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- life cycle ---------------------------------------------------------------------------
    async def start(self, port: int = 0) -> "FakeBotAPI":
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/file/bot{token}/{path:.*}", self._file_download)
        # access_log=None: an access log would print the token, which is part of every URL.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{bound}"
        self.updates.closing = False
        FakeBotAPI.running[self.url] = self
        return self

    async def stop(self) -> None:
        self.updates.closing = True
        self.updates.wake()          # release held getUpdates at once
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
        self.updates.wake()          # held getUpdates fail too, as their connections would

    def _is_down(self) -> bool:
        return time.monotonic() < self._down_until

    # -- who the bot can write to ------------------------------------------------------------------
    @property
    def users(self) -> dict[int, dict]:
        """The played users (add_user): they can send and press buttons."""
        return self.directory.users

    @property
    def chats(self) -> dict[int, dict]:
        return self.directory.chats

    @property
    def blocked(self) -> set[int]:
        return self.directory.blocked

    def add_user(self, user_id: int, first_name: str, username: str | None = None,
                 last_name: str | None = None) -> dict:
        """A user a test plays (sends, presses); what the bot shows them goes to `outbox(user_id)`."""
        return self.directory.add_user(user_id, first_name, username, last_name)

    def add_users(self, ids: Iterable[int], blocked: Iterable[int] = (),
                  names: dict[int, str] | None = None) -> None:
        """The shop's users (users.telegram_id), in bulk: sends to them are delivered and logged;
        to the `blocked` ones (users.is_blocked / bot_blocked) they answer 403 "Forbidden: bot was
        blocked by the user". Any other chat stays 400 "chat not found"."""
        self.directory.add_users(ids, blocked, names)

    @property
    def resolver(self) -> Resolver | None:
        """Instead of (or besides) add_users: chat_id -> "ok" | "blocked" | None, asked for chats
        the fake does not know otherwise."""
        return self.directory.resolver

    @resolver.setter
    def resolver(self, resolve: Resolver | None) -> None:
        self.directory.resolver = resolve

    def block_bot(self, user_id: int) -> None:
        self.directory.blocked.add(user_id)

    # -- users, as a test plays them -----------------------------------------------------------
    def _user(self, user_id: int) -> dict:
        if user_id not in self.users:
            raise KeyError(f"unknown fake user {user_id}: call add_user({user_id}, 'Name') first")
        return self.users[user_id]

    def send_user_message(self, user_id: int, text: str, chat_id: int | None = None) -> dict:
        """The user types `text`; a leading /command gets the bot_command entity clients require."""
        user = self._user(user_id)
        chat_id = user_id if chat_id is None else chat_id
        content: dict[str, Any] = {"text": text}
        command = re.match(r"/\S+", text)
        if command:
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command.group())}]
        message = self._new_message(chat_id, user, **content)
        self.updates.push(message=message)
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
        self.updates.push(callback_query=query)
        return callback_id

    def outbox(self, chat_id: int) -> asyncio.Queue[Output]:
        """What the bot did in this chat, in order (message, edit, delete, alert), for a driver."""
        return self._outboxes.setdefault(chat_id, asyncio.Queue())

    def message(self, chat_id: int, message_id: int) -> dict | None:
        return self._messages.get((chat_id, message_id))

    # -- observation ----------------------------------------------------------------------------
    def received_by(self, chat_id: int, clip: int = 300) -> list[dict]:
        """What this user received, in order, JSON-able for evidence: sends, edits, deletions,
        callback alerts, and refused sends with their error (see ReceivedLog.received_by)."""
        return self.log.received_by(chat_id, clip)

    def deliveries(self) -> dict:
        """Over every chat: {"chats", "delivered", "blocked", "chat_not_found"} sends."""
        return self.log.summary()

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method.lower() == method.lower()]

    async def wait_for_call(self, method: str, since: float = 0.0, timeout: float = 10.0) -> Call:
        """The first call of `method` made at or after monotonic time `since`; TimeoutError if none."""
        deadline = time.monotonic() + timeout
        while True:
            called = self._called
            for call in self.calls:
                if call.at >= since and call.method.lower() == method.lower():
                    return call
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {method} call reached the fake Bot API within {timeout} s")
            try:
                await asyncio.wait_for(called.wait(), left)
            except asyncio.TimeoutError:
                pass

    def is_polled(self, within: float = 1.0) -> bool:
        """True while some bot is polling this server (a getUpdates held now or ended very recently)."""
        return self.updates.polls_in_flight > 0 or time.monotonic() - self.updates.last_poll_end < within

    def _call_seen(self) -> None:
        self._called.set()
        self._called = asyncio.Event()

    # -- HTTP --------------------------------------------------------------------------------------
    async def _file_download(self, request: web.Request) -> web.Response:
        return web.json_response(ApiError(404, "Not Found: the fake Bot API stores no files").body(), status=404)

    @staticmethod
    def _decode(key: str, value: Any) -> Any:
        if key in JSON_FIELDS and isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise ApiError(400, f"Bad Request: can't parse {key} JSON object") from None
        if key in INT_FIELDS and isinstance(value, str):
            try:
                return float(value) if key == "timeout" else int(value)
            except ValueError:
                raise ApiError(400, f"Bad Request: {key} must be a number, got {value!r}") from None
        return value

    async def _params(self, request: web.Request) -> dict:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            params.update(await request.json())
        elif request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):     # an upload: only its name and size are kept
                    params[key] = {"filename": value.filename, "size": len(value.file.read())}
                else:
                    params[key] = value
        for key, value in list(params.items()):
            if isinstance(value, str) and value.startswith("attach://"):   # aiogram's file parts
                params[key] = params.get(value[len("attach://"):], value)
            else:
                params[key] = self._decode(key, value)
        if isinstance(params.get("chat_id"), str) and re.fullmatch(r"-?\d+", params["chat_id"]):
            params["chat_id"] = int(params["chat_id"])
        return params

    async def _answer(self, request: web.Request, call: Call) -> Any:
        """The result of one call, or the ApiError Telegram would answer."""
        if request.match_info["token"] != self.token:
            raise ApiError(401, "Unauthorized")
        call.params = await self._params(request)
        self._call_seen()
        if self._is_down():
            raise ApiError(502, "Bad Gateway")
        limit = self._rate_limits.get(call.method.lower())
        if limit and limit[1] > 0:
            limit[1] -= 1
            raise ApiError(429, f"Too Many Requests: retry after {limit[0]}", retry_after=limit[0])
        handler = getattr(self, "_m_" + call.method.lower(), None)
        if handler is None:
            raise ApiError(400, f"Bad Request: method '{call.method}' is not supported by the fake Bot API "
                                f"(deploycheck.telegram.fake_api); it answers: {', '.join(self.SUPPORTED)}")
        return await handler(call.params)

    async def _handle(self, request: web.Request) -> web.Response:
        # Recorded on arrival (status filled in on answer): a held getUpdates must count at once.
        call = Call(request.match_info["method"], {}, 0, time.monotonic())
        self.calls.append(call)
        try:
            status, body = 200, {"ok": True, "result": await self._answer(request, call)}
        except ApiError as err:
            status, body = err.code, err.body()
        except Exception as err:      # a bug in the fake: say so in the API's own error format
            status, body = 500, ApiError(500, f"Internal Server Error in the fake Bot API: "
                                              f"{type(err).__name__}: {err}").body()
        call.status = status
        self._call_seen()
        return web.json_response(body, status=status)

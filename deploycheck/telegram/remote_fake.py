"""Clients of the test fake server (deploycheck.rehearsal.fake_server), FOR DEPLOYCHECK'S OWN TESTS ONLY.

`RemoteFakeAPI` offers the part of FakeBotAPI that FakeDriver and the plugin's fixtures use, so a FakeDriver on it
plays a user of a bot that runs elsewhere (a container, a systemd unit) against that fake Telegram; `RemoteGateway`
offers the part of FakeGateway the smoke's order flow uses (`pay`). A live run of the phases uses them only when
DEPLOYCHECK_TEST_FAKES names the state file the fake server wrote (bot_fixtures); against a real shop the smoke
talks through Telethon's LiveDriver.

FakeDriver calls `users`, `add_user`, `send_user_message` and `press_button` synchronously, as FakeBotAPI's are
in-process: here they are blocking calls to a server on this machine, quick and each bounded by a timeout, so
FakeDriver works unchanged. `outbox(chat)` is an asyncio.Queue fed by a long-poll task; it starts where the chat
stands when this client first looks at it or writes to it, as a Telegram client sees only what comes next; what
a user received before (an earlier phase's process) is in `received_by`.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiohttp

from deploycheck.failure import CheckFailed
from deploycheck.telegram.fake_model import Call, Output

log = logging.getLogger(__name__)

TEST_FAKES = "DEPLOYCHECK_TEST_FAKES"      # the state file of a running fake server; for deploycheck's tests only
STATE_KEYS = ("telegram_url", "token", "gateway_url", "control_url")
CALL_TIMEOUT = 10.0
POLL_SECONDS = 20.0
# No proxy for a server on this machine: urllib would otherwise follow http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class RemoteFakeError(CheckFailed):
    """The test fake server does not answer, refused a call, or its state file is not usable."""


@dataclass(frozen=True)
class FakeState:
    """What the fake server wrote in its state file: where its parts listen, and the bot token it accepts."""
    telegram_url: str
    token: str
    gateway_url: str
    control_url: str
    path: str = ""

    def __repr__(self) -> str:   # never the token
        return f"<FakeState {self.path}: telegram {self.telegram_url}, control {self.control_url}>"


def read_state(path: str | Path, variable: str = TEST_FAKES) -> FakeState:
    """The state file named by `variable`, or a RemoteFakeError that names both."""
    where = f"{variable}={path}"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RemoteFakeError(f"{where}: no such state file; start the test fake server first "
                              "(python -m deploycheck.rehearsal.fake_server --state FILE), or unset it") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RemoteFakeError(f"{where}: cannot read the test fakes' state file: {exc}") from None
    if not isinstance(data, dict):
        raise RemoteFakeError(f"{where}: the test fakes' state file is not a JSON object")
    bad = [key for key in STATE_KEYS if not isinstance(data.get(key), str) or not data[key]]
    if bad:
        raise RemoteFakeError(f"{where}: the test fakes' state file lacks {', '.join(bad)} (it needs "
                              f"{', '.join(STATE_KEYS)}, as deploycheck.rehearsal.fake_server writes them)")
    return FakeState(*(data[key].rstrip("/") if key.endswith("url") else data[key] for key in STATE_KEYS),
                     path=str(path))


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", None) or err
    return f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__


class _Client:
    """Calls to the control API, sync (urllib) and async (aiohttp), each with a timeout and a clear error."""

    what = ""

    def __init__(self, state: FakeState, timeout: float = CALL_TIMEOUT):
        self.control_url, self.timeout = state.control_url, timeout
        self._session: aiohttp.ClientSession | None = None

    def _unreachable(self, err: BaseException) -> RemoteFakeError:
        return RemoteFakeError(f"the test fake {self.what} at {self.control_url} does not answer: {_reason(err)}. "
                               f"Is deploycheck.rehearsal.fake_server still running ({TEST_FAKES})?")

    def _refused(self, method: str, path: str, status: int, text: str) -> RemoteFakeError:
        try:
            text = json.loads(text).get("error", text)
        except (ValueError, AttributeError):
            pass
        return RemoteFakeError(f"the test fake {self.what} at {self.control_url} refused {method} "
                               f"{path.split('?')[0]}: {status} {text}")

    def _call(self, method: str, path: str, body=None, timeout: float | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.control_url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with _OPENER.open(request, timeout=timeout or self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:      # it answered: with its own error
            raise self._refused(method, path, err.code, err.read().decode(errors="replace")) from None
        except (OSError, http.client.HTTPException, ValueError) as err:   # refused, reset, a timeout, not JSON
            raise self._unreachable(err) from None

    async def _acall(self, method: str, path: str, body=None, timeout: float | None = None):
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.request(method, self.control_url + path, json=body,
                                             timeout=aiohttp.ClientTimeout(total=timeout or self.timeout)) as response:
                text = await response.text()
                if response.status >= 400:
                    raise self._refused(method, path, response.status, text)
                return json.loads(text)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as err:
            raise self._unreachable(err) from None

    async def close(self) -> None:
        """Closes this client; the server goes on (it outlives every client)."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class RemoteFakeAPI(_Client):
    """The fake server's Telegram, as FakeDriver and the fixtures use a FakeBotAPI."""

    what = "Telegram"

    def __init__(self, state: FakeState, timeout: float = CALL_TIMEOUT):
        super().__init__(state, timeout)
        self.url, self.token = state.telegram_url, state.token
        self._outboxes: dict[int, asyncio.Queue[Output]] = {}
        self._polls: dict[int, asyncio.Task] = {}
        self.problem = ""          # the last failed long poll, while the server does not answer

    def __repr__(self) -> str:   # never the token
        return f"<RemoteFakeAPI {self.url} via {self.control_url}>"

    @property
    def bot_base_url(self) -> str:
        return f"{self.url}/bot"

    # -- who the bot can write to ------------------------------------------------------------------
    @property
    def users(self) -> dict[int, dict]:
        return {int(k): v for k, v in self._call("GET", "/telegram/users").items()}

    def add_user(self, user_id: int, first_name: str, username: str | None = None,
                 last_name: str | None = None) -> dict:
        user = {"id": user_id, "first_name": first_name, "username": username, "last_name": last_name}
        return self._call("POST", "/telegram/users", {"users": [user]})[0]

    def add_users(self, ids: Iterable[int], blocked: Iterable[int] = (), names: dict[int, str] | None = None) -> None:
        self._call("POST", "/telegram/shop-users", {"ids": [int(i) for i in ids], "blocked": [int(i) for i in blocked],
                                                    "names": {str(k): v for k, v in (names or {}).items()}})

    # -- users, as a test plays them -------------------------------------------------------------------
    def send_user_message(self, user_id: int, text: str, chat_id: int | None = None) -> dict:
        self.outbox(user_id if chat_id is None else chat_id)   # the answer must not come before we listen
        return self._call("POST", "/telegram/send", {"user_id": user_id, "text": text, "chat_id": chat_id})["message"]

    def press_button(self, user_id: int, message_id: int, data: str, chat_id: int | None = None) -> str:
        self.outbox(user_id if chat_id is None else chat_id)
        return self._call("POST", "/telegram/press", {"user_id": user_id, "message_id": message_id, "data": data,
                                                      "chat_id": chat_id})["callback_id"]

    def outbox(self, chat_id: int) -> asyncio.Queue[Output]:
        """What the bot does in this chat from now on (called on the event loop, as FakeDriver does)."""
        if chat_id not in self._outboxes:
            start = self._call("GET", f"/telegram/outbox/{int(chat_id)}")["next"]
            self._outboxes[chat_id] = asyncio.Queue()
            self._polls[chat_id] = asyncio.get_running_loop().create_task(self._poll(chat_id, start))
        return self._outboxes[chat_id]

    async def _poll(self, chat_id: int, after: int) -> None:
        queue = self._outboxes[chat_id]
        while True:
            try:
                got = await self._acall("GET", f"/telegram/outbox/{int(chat_id)}?after={after}&timeout={POLL_SECONDS:g}",
                                        timeout=POLL_SECONDS + self.timeout)
            except RemoteFakeError as exc:   # the next call a test makes says so; keep trying until closed
                if str(exc) != self.problem:
                    log.warning("%s", exc)
                self.problem = str(exc)
                await asyncio.sleep(1.0)
                continue
            self.problem = ""
            for item in got["items"]:
                queue.put_nowait(Output(item["kind"], item["message"]))
            after = got["next"]

    # -- observation ----------------------------------------------------------------------------------
    def received_by(self, chat_id: int, clip: int = 300) -> list[dict]:
        return self._call("GET", f"/telegram/received/{int(chat_id)}?clip={int(clip)}")

    def deliveries(self) -> dict:
        return self._call("GET", "/telegram/deliveries")

    def calls_to(self, method: str) -> list[Call]:
        """The server's calls of `method`; `at` is the server's own monotonic clock."""
        return [Call(c["method"], c["params"], c["status"], c["at"])
                for c in self._call("GET", f"/telegram/calls?method={quote(method)}")]

    async def close(self) -> None:
        for task in self._polls.values():
            task.cancel()
        await asyncio.gather(*self._polls.values(), return_exceptions=True)
        self._polls.clear()
        await super().close()


@dataclass
class PaidWebhook:
    """The fields of FakeGateway's Webhook: where it went, what it said, the bot's answer."""
    url: str
    body: dict
    status: int
    answer: str


class RemoteGateway(_Client):
    """The fake server's Pakasir, as the smoke's order flow uses a FakeGateway: `await gateway.pay(order_id)`."""

    what = "Pakasir gateway"

    def __init__(self, state: FakeState, timeout: float = CALL_TIMEOUT):
        super().__init__(state, timeout)
        self.url = state.gateway_url

    def __repr__(self) -> str:
        return f"<RemoteGateway {self.url} via {self.control_url}>"

    def configure(self, **settings: str | None) -> None:
        """FakeGateway's webhook_url, project, api_key, webhook_secret (the shop's bot.env decides them)."""
        self._call("POST", "/gateway/config", settings)

    async def pay(self, order_id: str, *, status: str = "completed", amount: int | None = None,
                  timeout: float = 10.0) -> PaidWebhook:
        """FakeGateway.pay on the server: the paid webhook to the bot, with the bot's answer. An unknown order or
        an unreachable bot is a RemoteFakeError that says so."""
        hook = await self._acall("POST", "/gateway/pay", {"order_id": order_id, "status": status, "amount": amount,
                                                          "timeout": timeout}, timeout=timeout + self.timeout)
        return PaidWebhook(hook["url"], hook["body"], hook["status"], hook["answer"])

    @property
    def payments(self) -> dict[str, dict]:
        return self._call("GET", "/gateway/payments")

    @property
    def webhooks(self) -> list[PaidWebhook]:
        return [PaidWebhook(**h) for h in self._call("GET", "/gateway/webhooks")]

    def requests_to(self, path_prefix: str) -> list[dict]:
        """The bot's requests to the gateway ({method, path, query, body, status}; api keys blanked)."""
        return self._call("GET", f"/gateway/requests?prefix={quote(path_prefix)}")

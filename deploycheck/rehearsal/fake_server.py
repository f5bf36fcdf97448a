"""A fake Telegram Bot API and a fake Pakasir gateway in one long-lived process, FOR DEPLOYCHECK'S OWN TESTS ONLY.

deploycheck's self-tests of the LIVE phases build a "production" shop on the test machine (a bot in a container,
or under systemd) and run `pytest -m <phase> --execute` against it, one process per phase. That bot must talk to
a fake Telegram and a fake gateway that outlive each of those processes; this is them, with a control API through
which each phase's process plays users and pays orders (deploycheck.telegram.remote_fake is its client). A real
deployment never uses it.

    python -m deploycheck.rehearsal.fake_server --telegram-port P --gateway-port Q [--control-port C]
        [--token T] [--webhook-url URL] [--state FILE]

Everything listens on 127.0.0.1; a port of 0 (the default) is any free one. Once the three servers listen, the
state file is written (JSON, mode 0600, as it holds the bot token): {"telegram_url", "token", "gateway_url",
"control_url", "pid"}. A live run finds it through DEPLOYCHECK_TEST_FAKES=FILE. The bot under test gets
telegram_url as its Bot API server (TELEGRAM_API_BASE_URL), the token, and gateway_url as Pakasir's
(PAKASIR_BASE_URL). SIGTERM or SIGINT stops the servers, removes the state file and exits 0.

The control API has a port of its own rather than a path on the fake Telegram: the fake Telegram stays exactly
the server FakeBotAPI is (nothing added where the bot talks), one control surface serves both fakes, and no
control URL carries the token (the Bot API's URLs do). It runs the rehearsal's FakeGateway, so in
deploycheck/layers.py this module sits in the rehearsal's layer, apart from the rest of telegram. JSON in, JSON out; an error answers {"error": text}:

    GET  /health                                   {"ok", "telegram_url", "gateway_url"}
    GET  /telegram/users                           the played users, by id
    POST /telegram/users        {"users": [{id, first_name, username?, last_name?}]}
    POST /telegram/shop-users   {"ids", "blocked"?, "names"?}          FakeBotAPI.add_users
    POST /telegram/send         {"user_id", "text", "chat_id"?}        -> {"message"}
    POST /telegram/press        {"user_id", "message_id", "data", "chat_id"?} -> {"callback_id"}
    GET  /telegram/outbox/CHAT                     -> {"items": [], "next": N}: where the chat's outbox stands now
    GET  /telegram/outbox/CHAT?after=N&timeout=S   -> {"items": [{kind, message}], "next"}: long poll, S <= 30
    GET  /telegram/received/CHAT?clip=300          FakeBotAPI.received_by
    GET  /telegram/deliveries                      FakeBotAPI.deliveries
    GET  /telegram/calls?method=M                  the calls of M: [{method, params, status, at}]
    POST /gateway/config        {"webhook_url"?, "project"?, "api_key"?, "webhook_secret"?}
    POST /gateway/pay           {"order_id", "status"?, "amount"?, "timeout"?} -> {url, body, status, answer}
    GET  /gateway/payments | /gateway/webhooks | /gateway/requests?prefix=P   (api keys blanked)
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import sys
import time
from pathlib import Path

from aiohttp import web

from deploycheck.rehearsal.fake_gateway import FakeGateway, GatewayError
from deploycheck.telegram.fake_api import FakeBotAPI, Output

MAX_POLL = 30.0


def _dumps(value) -> str:
    return json.dumps(value, default=str)   # a Call's params may hold anything a client sent


def _answers(handler):
    """JSON out; the fakes' own refusals (an unknown user or message, an unknown order) as {"error"}."""
    @functools.wraps(handler)
    async def wrapped(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(await handler(self, request), dumps=_dumps)
        except KeyError as err:
            status, text = 404, err.args[0] if err.args else str(err)
        except GatewayError as err:
            status, text = err.status, err.message
        except TimeoutError as err:
            status, text = 504, str(err)
        except (ValueError, TypeError) as err:          # a malformed request
            status, text = 400, f"{type(err).__name__}: {err}"
        return web.json_response({"error": str(text)}, status=status)
    return wrapped


async def _body(request: web.Request, *required: str) -> dict:
    """The request's JSON object; a missing field is the client's error (400), not an unknown user (404)."""
    body = await request.json()
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    missing = [name for name in required if name not in body]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    return body


def _blank_keys(fields: dict | None) -> dict | None:
    return {k: ("<api_key>" if k == "api_key" else v) for k, v in fields.items()} if isinstance(fields, dict) else fields


class Control:
    """The control API over one FakeBotAPI and one FakeGateway.

    A chat's outbox is kept here as a history (the FakeBotAPI's queue drained into a list), so a client reads from
    an index: a client that ends (a phase's process) takes nothing away from the next one."""

    def __init__(self, api: FakeBotAPI, gateway: FakeGateway):
        self.api, self.gateway = api, gateway
        self.history: dict[int, list[dict]] = {}
        self._changed = asyncio.Event()
        self._pumps: set[asyncio.Task] = set()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, port: int = 0) -> "Control":
        app = web.Application(client_max_size=50 * 1024 * 1024)    # 6.3 makes a whole shop's users known at once
        get, post = app.router.add_get, app.router.add_post
        get("/health", self.health)
        get("/telegram/users", self.users)
        post("/telegram/users", self.add_users)
        post("/telegram/shop-users", self.shop_users)
        post("/telegram/send", self.send)
        post("/telegram/press", self.press)
        get("/telegram/outbox/{chat}", self.outbox)
        get("/telegram/received/{chat}", self.received)
        get("/telegram/deliveries", self.deliveries)
        get("/telegram/calls", self.calls)
        post("/gateway/config", self.gateway_config)
        post("/gateway/pay", self.pay)
        get("/gateway/payments", self.payments)
        get("/gateway/webhooks", self.webhooks)
        get("/gateway/requests", self.requests)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        for task in self._pumps:
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- outboxes ---------------------------------------------------------------------------------------
    def _history(self, chat: int) -> list[dict]:
        if chat not in self.history:
            self.history[chat] = []
            self._pumps.add(asyncio.get_running_loop().create_task(self._pump(chat)))
        queue = self.api.outbox(chat)
        while not queue.empty():          # what is queued now is "before now" for a client asking now
            self._keep(chat, queue.get_nowait())
        return self.history[chat]

    def _keep(self, chat: int, out: Output) -> None:
        self.history[chat].append({"kind": out.kind, "message": out.message})
        self._changed.set()
        self._changed = asyncio.Event()   # a fresh event: no waiter misses a set by a clear

    async def _pump(self, chat: int) -> None:
        queue = self.api.outbox(chat)
        while True:
            self._keep(chat, await queue.get())

    @_answers
    async def outbox(self, request: web.Request):
        chat = int(request.match_info["chat"])
        history = self._history(chat)
        if "after" not in request.query:
            return {"items": [], "next": len(history)}
        after = max(0, int(request.query["after"]))
        deadline = time.monotonic() + min(float(request.query.get("timeout", 0)), MAX_POLL)
        while len(history) <= after:
            changed, left = self._changed, deadline - time.monotonic()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(changed.wait(), left)
            except TimeoutError:
                break
        return {"items": history[after:], "next": len(history)}

    # -- Telegram -----------------------------------------------------------------------------------------
    @_answers
    async def health(self, request: web.Request):
        return {"ok": True, "telegram_url": self.api.url, "gateway_url": self.gateway.url}

    @_answers
    async def users(self, request: web.Request):
        return self.api.users

    @_answers
    async def add_users(self, request: web.Request):
        given = (await _body(request, "users"))["users"]
        return [self.api.add_user(int(u["id"]), str(u.get("first_name") or "User"), u.get("username"), u.get("last_name"))
                for u in given]

    @_answers
    async def shop_users(self, request: web.Request):
        body = await _body(request, "ids")
        names = {int(k): v for k, v in (body.get("names") or {}).items()}
        self.api.add_users(body["ids"], body.get("blocked") or (), names)
        return {"ok": True}

    @_answers
    async def send(self, request: web.Request):
        body = await _body(request, "user_id", "text")
        return {"message": self.api.send_user_message(int(body["user_id"]), str(body["text"]), body.get("chat_id"))}

    @_answers
    async def press(self, request: web.Request):
        body = await _body(request, "user_id", "message_id", "data")
        return {"callback_id": self.api.press_button(int(body["user_id"]), int(body["message_id"]),
                                                     str(body["data"]), body.get("chat_id"))}

    @_answers
    async def received(self, request: web.Request):
        return self.api.received_by(int(request.match_info["chat"]), int(request.query.get("clip", 300)))

    @_answers
    async def deliveries(self, request: web.Request):
        return self.api.deliveries()

    @_answers
    async def calls(self, request: web.Request):
        calls = self.api.calls_to(request.query["method"]) if "method" in request.query else self.api.calls
        return [{"method": c.method, "params": c.params, "status": c.status, "at": c.at} for c in calls]

    # -- the gateway ----------------------------------------------------------------------------------------
    @_answers
    async def gateway_config(self, request: web.Request):
        body = await _body(request)
        for name in ("webhook_url", "project", "api_key", "webhook_secret"):
            if name in body:
                setattr(self.gateway, name, body[name])
        return {"webhook_url": self.gateway.webhook_url}

    @_answers
    async def pay(self, request: web.Request):
        body = await _body(request, "order_id")
        hook = await self.gateway.pay(str(body["order_id"]), status=body.get("status", "completed"),
                                      amount=body.get("amount"), timeout=float(body.get("timeout", 10.0)))
        return {"url": hook.url, "body": hook.body, "status": hook.status, "answer": hook.answer}

    @_answers
    async def payments(self, request: web.Request):
        return self.gateway.payments

    @_answers
    async def webhooks(self, request: web.Request):
        return [{"url": h.url, "body": h.body, "status": h.status, "answer": h.answer} for h in self.gateway.webhooks]

    @_answers
    async def requests(self, request: web.Request):
        return [{"method": r.method, "path": r.path, "query": _blank_keys(r.query), "body": _blank_keys(r.body),
                 "status": r.status} for r in self.gateway.requests_to(request.query.get("prefix", "/"))]


def write_state(path: Path, state: dict) -> None:
    """Whole or not at all (a reader never sees half a file), readable by its owner only (the token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(state, out, indent=2)
    os.replace(partial, path)


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    api, gateway = FakeBotAPI(token=args.token), FakeGateway(webhook_url=args.webhook_url)
    control = Control(api, gateway)
    state_path = Path(args.state) if args.state else None
    try:
        await api.start(args.telegram_port)
        await gateway.start(args.gateway_port)
        await control.start(args.control_port)
        state = {"telegram_url": api.url, "token": api.token, "gateway_url": gateway.url,
                 "control_url": control.url, "pid": os.getpid()}
        if state_path:
            write_state(state_path, state)
        # Never the token: it is in the state file only.
        print(f"deploycheck test fakes: Telegram {api.url}, Pakasir {gateway.url}, control {control.url}"
              + (f"; state in {state_path}" if state_path else ""), flush=True)
        await stop.wait()
    finally:
        if state_path and state_path.exists():
            state_path.unlink()
        await control.stop()
        await gateway.stop()
        await api.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploycheck.rehearsal.fake_server",
                                     description="deploycheck's test fakes of Telegram and Pakasir, for its own "
                                                 "tests of the live phases only (see the module's docstring)")
    parser.add_argument("--telegram-port", type=int, default=0, help="the fake Bot API's port (0: any free one)")
    parser.add_argument("--gateway-port", type=int, default=0, help="the fake Pakasir's port (0: any free one)")
    parser.add_argument("--control-port", type=int, default=0, help="the control API's port (0: any free one)")
    parser.add_argument("--token", help="the bot token the fake accepts (default: a made-up one, in the state file)")
    parser.add_argument("--webhook-url", help="the bot's Pakasir webhook, e.g. http://127.0.0.1:PORT/webhooks/pakasir "
                                              "(or later: POST /gateway/config)")
    parser.add_argument("--state", help="write the JSON state (URLs, token) here once listening; removed at exit")
    args = parser.parse_args(argv)
    if not args.state and not args.token:
        parser.error("give --state FILE (where the made-up token is written) or --token T")
    try:
        asyncio.run(serve(args))
    except OSError as exc:      # a port taken, a state folder not writable
        print(f"deploycheck test fakes: cannot start: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

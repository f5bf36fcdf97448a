"""A fake Pakasir payment gateway: aiohttp on 127.0.0.1, everything in memory.

bot-auto-order creates a QRIS payment with `POST https://app.pakasir.com/api/transactioncreate/qris`
and learns that it was paid only from Pakasir's webhook, a POST to the bot's webhook server
(`/webhooks/pakasir`). In a rehearsal the bot's outbound traffic is routed here
(deploycheck.telegram.outbound_guard), and a smoke test "pays" with `await gateway.pay(order_id)`.

What it imitates (Pakasir's documentation, docs/pakasir.md in the bot's repository, and what the
research saw the bot require; see ../shared/facts/):
- `transactioncreate/{method}` takes `{project, order_id, amount, api_key}` and answers
  `{"payment": {project, order_id, amount, fee, total_payment, payment_method, payment_number,
  expired_at}}`, with fee = ceil(amount x 0.7%) + Rp 310 (the same formula as the bot's own
  `calculate_gateway_fee`) and total_payment = amount + fee; `expired_at` in Pakasir's form
  (nanoseconds, `Z`).
- `transactiondetail` (GET) and `paymentsimulation` (POST; in Pakasir's sandbox it pays and calls
  the webhook, as here).
- The paid webhook: JSON `{amount, order_id, project, status: "completed", payment_method,
  completed_at}` where amount is the payment's total_payment: the bot compares it with the total it
  stored (subtotal + fee) and answers 400 to anything else. With a webhook secret the body is
  signed in `X-Pakasir-Signature` (hex HMAC-SHA256 of the raw body), as the bot checks it.

Every request is kept in `requests`, every webhook sent and the bot's answer in `webhooks`.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import aiohttp
from aiohttp import web

METHODS = ("qris", "cimb_niaga_va", "bni_va", "retail", "sampoerna_va", "bnc_va", "maybank_va", "permata_va",
           "atm_bersama_va", "artha_graha_va", "bri_va")
WEBHOOK_PATH = "/webhooks/pakasir"     # bot-auto-order's route (src/server.py)
WIB = timezone(timedelta(hours=7))     # Pakasir writes completed_at in Jakarta time
EXPIRY = timedelta(minutes=15)


def pakasir_fee(amount: int) -> int:
    """Pakasir's QRIS fee in rupiah: 0.7% rounded up, plus Rp 310 (99000 -> 1003)."""
    return -(-amount * 7 // 1000) + 310


def _crc16(data: str) -> str:
    """CRC-16/CCITT-FALSE, the checksum that ends every QRIS string (tag 63)."""
    crc = 0xFFFF
    for byte in data.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return f"{crc:04X}"


def qris_string(order_id: str, total: int) -> str:
    """A well-formed (EMV TLV, valid CRC) but fake QRIS payload: a scanner reads it, no bank pays it."""
    def tlv(tag: str, value: str) -> str:
        return f"{tag}{len(value):02d}{value}"
    body = (tlv("00", "01") + tlv("01", "12") + tlv("26", tlv("00", "ID.DEPLOYCHECK.FAKE") + tlv("01", order_id[:25]))
            + tlv("52", "0000") + tlv("53", "360") + tlv("54", str(total)) + tlv("58", "ID")
            + tlv("59", "Deploycheck Fake") + tlv("60", "Rehearsal") + "6304")
    return body + _crc16(body)


def _pakasir_time(moment: datetime) -> str:
    """Pakasir's expired_at: UTC with nanoseconds and a Z (2025-09-19T01:18:49.678622564Z)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


@dataclass
class GatewayRequest:
    """One request the bot made: method, path, query, JSON body (None if not JSON), status answered, time."""
    method: str
    path: str
    query: dict
    body: dict | None
    status: int
    at: float


@dataclass
class Webhook:
    """One webhook the gateway sent: where, the body, and the bot's answer (status, text)."""
    url: str
    body: dict
    status: int
    answer: str
    at: float


class GatewayError(Exception):
    """An error answer: HTTP status and Pakasir-like JSON body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class FakeGateway:
    """The fake server. `async with FakeGateway(project=..., api_key=..., webhook_url=...) as gateway`.

    `webhook_url` is where the bot's webhook server listens (e.g. http://127.0.0.1:PORT/webhooks/pakasir);
    it may be set after start, once the bot's server has a port. Requests with another project or api_key
    than the ones given are refused with 401 (leave them None to accept any).
    """

    def __init__(self, *, project: str | None = None, api_key: str | None = None,
                 webhook_url: str | None = None, webhook_secret: str | None = None):
        self.project, self.api_key = project, api_key
        self.webhook_url, self.webhook_secret = webhook_url, webhook_secret
        self.requests: list[GatewayRequest] = []
        self.payments: dict[str, dict] = {}       # order_id -> the "payment" object answered
        self.webhooks: list[Webhook] = []
        self.webhook_errors: list[str] = []      # simulated payments whose webhook could not be delivered
        self._tasks: set[asyncio.Task] = set()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- life cycle ---------------------------------------------------------------------------
    async def start(self, port: int = 0) -> "FakeGateway":
        app = web.Application()
        app.router.add_post("/api/transactioncreate/{method}", self._create)
        app.router.add_get("/api/transactiondetail", self._detail)
        app.router.add_post("/api/paymentsimulation", self._simulate)
        app.router.add_route("*", "/{path:.*}", self._unknown)
        # access_log=None: the detail URL carries the api_key in its query.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeGateway":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def __repr__(self) -> str:   # never the api key
        return f"<FakeGateway {self.url or 'not started'} project={self.project!r}>"

    # -- what a smoke test does ---------------------------------------------------------------------
    def requests_to(self, path_prefix: str) -> list[GatewayRequest]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]

    async def pay(self, order_id: str, *, status: str = "completed", amount: int | None = None,
                  timeout: float = 10.0) -> Webhook:
        """The customer pays: POST Pakasir's webhook for `order_id` to `webhook_url`, with amount =
        the payment's total_payment (or `amount`, to show the bot refusing a wrong one). `status` may be
        failed, expired or cancelled as well. Returns the webhook with the bot's answer; raises
        GatewayError if the order is unknown, and TimeoutError if the bot does not answer in time."""
        payment = self.payments.get(order_id)
        if payment is None:
            known = ", ".join(self.payments) or "none"
            raise GatewayError(404, f"no payment for order_id {order_id!r} was created at the fake gateway "
                                    f"(created: {known})")
        if not self.webhook_url:
            raise GatewayError(500, "FakeGateway.webhook_url is not set: give the bot's webhook server URL "
                                    f"(e.g. http://127.0.0.1:PORT{WEBHOOK_PATH})")
        payment["status"] = status
        body = {"amount": payment["total_payment"] if amount is None else amount, "order_id": order_id,
                "project": payment["project"], "status": status, "payment_method": payment["payment_method"],
                "completed_at": datetime.now(WIB).isoformat(timespec="milliseconds")}
        payment["completed_at"] = body["completed_at"]
        raw = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.webhook_secret:
            headers["X-Pakasir-Signature"] = hmac.new(self.webhook_secret.encode(), raw, hashlib.sha256).hexdigest()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
                async with session.post(self.webhook_url, data=raw, headers=headers) as response:
                    hook = Webhook(self.webhook_url, body, response.status, await response.text(), time.monotonic())
        except asyncio.TimeoutError:
            raise TimeoutError(f"the bot's webhook server at {self.webhook_url} did not answer the paid webhook "
                               f"for {order_id} within {timeout} s") from None
        except aiohttp.ClientConnectionError as err:
            raise GatewayError(502, f"could not reach the bot's webhook server at {self.webhook_url}: {err}") from err
        self.webhooks.append(hook)
        return hook

    # -- the API ----------------------------------------------------------------------------------
    async def _record(self, request: web.Request, handler) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        entry = GatewayRequest(request.method, request.path, dict(request.query), body, 0, time.monotonic())
        self.requests.append(entry)
        try:
            status, answer = 200, handler(request, body)
        except GatewayError as err:
            status, answer = err.status, {"error": err.message}
        entry.status = status
        return web.json_response(answer, status=status)

    def _check_project(self, fields: dict) -> None:
        for name in ("project", "order_id", "amount", "api_key"):
            if fields.get(name) in (None, ""):
                raise GatewayError(400, f"{name} is required")
        if self.project is not None and fields["project"] != self.project:
            raise GatewayError(401, "project not found")
        if self.api_key is not None and fields["api_key"] != self.api_key:
            raise GatewayError(401, "invalid api_key")

    def _new_payment(self, request: web.Request, body: dict | None) -> dict:
        method = request.match_info["method"]
        if method not in METHODS:
            raise GatewayError(400, f"unsupported payment method {method!r}")
        if not isinstance(body, dict):
            raise GatewayError(400, "body must be JSON")
        self._check_project(body)
        amount = body["amount"]
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise GatewayError(400, f"amount must be a positive whole number of rupiah, got {amount!r}")
        order_id = str(body["order_id"])
        fee = pakasir_fee(amount)
        payment = {"project": body["project"], "order_id": order_id, "amount": amount, "fee": fee,
                   "total_payment": amount + fee, "payment_method": method,
                   "payment_number": qris_string(order_id, amount + fee) if method == "qris"
                   else "8" + str(secrets.randbelow(10**15)).zfill(15),
                   "expired_at": _pakasir_time(datetime.now(timezone.utc) + EXPIRY)}
        self.payments[order_id] = {**payment, "status": "pending"}
        return {"payment": payment}

    async def _create(self, request: web.Request) -> web.Response:
        return await self._record(request, self._new_payment)

    def _transaction(self, fields: dict) -> dict:
        self._check_project(fields)
        payment = self.payments.get(str(fields["order_id"]))
        if payment is None:
            raise GatewayError(404, "transaction not found")
        return payment

    def _detail_of(self, request: web.Request, body: dict | None) -> dict:
        payment = self._transaction(dict(request.query))
        return {"transaction": {"amount": payment["amount"], "order_id": payment["order_id"],
                                "project": payment["project"], "status": payment["status"],
                                "payment_method": payment["payment_method"],
                                "completed_at": payment.get("completed_at")}}

    async def _detail(self, request: web.Request) -> web.Response:
        return await self._record(request, self._detail_of)

    async def _simulate(self, request: web.Request) -> web.Response:
        paid: list[str] = []

        def accept(request: web.Request, body: dict | None) -> dict:
            if not isinstance(body, dict):
                raise GatewayError(400, "body must be JSON")
            payment = self._transaction(body)
            paid.append(payment["order_id"])
            return {"order_id": payment["order_id"], "status": "completed"}
        response = await self._record(request, accept)
        if paid:
            # As Pakasir's sandbox does: the simulated payment calls the webhook, after the answer.
            # A failure is not lost: pay() records every answer, and the task is kept until it ends.
            task = asyncio.get_running_loop().create_task(self.pay(paid[0]))
            self._tasks.add(task)
            task.add_done_callback(self._forget)
        return response

    def _forget(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.webhook_errors.append(str(task.exception()))

    async def _unknown(self, request: web.Request) -> web.Response:
        def refuse(request: web.Request, body: dict | None) -> dict:
            raise GatewayError(404, f"not found: {request.method} {request.path} is not a Pakasir API path "
                                    "the fake gateway (deploycheck.rehearsal.fake_gateway) answers")
        return await self._record(request, refuse)

"""Nothing a rehearsed bot does leaves the machine (issue 14, item 2).

A small script bot, run through the launcher in a subprocess, calls Telegram the ways bot-auto-order does
and others might (raw httpx, aiohttp, requests, urllib), creates a Pakasir payment at the real URL, and
tries other hosts by name and by address: the calls to Telegram and Pakasir end at the fakes, everything
else is refused and listed. Under the guard sits a tripwire that records (and refuses) anything
non-loopback reaching the socket layer below it, so even a broken guard sends no packet, and an empty
tripwire shows that the guard stopped everything before resolution or connection.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import sys
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from deploycheck.telegram import outbound_guard as outbound
from deploycheck.rehearsal.fake_gateway import WEBHOOK_PATH, FakeGateway, GatewayError, pakasir_fee
from deploycheck.telegram import FakeBotAPI

ROUTED = "api.telegram.org", "app.pakasir.com"

# Installed below the guard: the guard's own socket calls go through it. Loopback passes; a name or
# address elsewhere is written to TRIPWIRE_LOG and refused, so the test cannot send a packet out.
TRIPWIRE = r'''
import ipaddress, json, os, runpy, socket, sys

def local(host):
    host = host.decode() if isinstance(host, bytes) else host
    if not host or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False

def trip(what, host, port):
    with open(os.environ["TRIPWIRE_LOG"], "a") as out:
        out.write(json.dumps([what, str(host), port]) + "\n")
    raise OSError("tripwire: " + what + " " + str(host))

gai = socket.getaddrinfo
def getaddrinfo(host, port, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name and not local(name):
        try:
            ipaddress.ip_address(name)      # an address: resolving it sends nothing; its connect is checked
        except ValueError:
            trip("getaddrinfo", name, port)
    return gai(host, port, *args, **kwargs)
socket.getaddrinfo = getaddrinfo

for method in ("connect", "connect_ex"):
    def wrap(original, method=method):
        def checked(self, address):
            if self.family in (socket.AF_INET, socket.AF_INET6) and not local(address[0]):
                trip(method, address[0], address[1])
            return original(self, address)
        return checked
    setattr(socket.socket, method, wrap(getattr(socket.socket, method)))

sys.argv = ["deploycheck.telegram.launcher", *sys.argv[1:]]
runpy.run_module("deploycheck.telegram.launcher", run_name="__main__", alter_sys=True)
'''

# A stand-in for uvloop, installed on PYTHONPATH as the real one sits in site-packages: its install()
# would put its own loop class in place. Under the guard the bot must still run on asyncio's loop.
UVLOOP = '''
import asyncio
class Loop(asyncio.SelectorEventLoop):
    pass
def new_event_loop():
    return Loop()
class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self):
        return Loop()
def install():
    asyncio.set_event_loop_policy(EventLoopPolicy())
'''

BOT = '''
import asyncio, json, socket, sys, urllib.request
import aiohttp, httpx, requests, uvloop

TOKEN = sys.argv[1]
GET_ME = f"https://api.telegram.org/bot{TOKEN}/getMe"
results = {}

def attempt(name, call):
    try:
        results[name] = call()
    except Exception as err:
        results[name] = f"refused: {type(err).__name__}: {err}"

async def attempt_async(name, call):
    try:
        results[name] = await asyncio.wait_for(call(), 10)
    except Exception as err:
        results[name] = f"refused: {type(err).__name__}: {err}"

async def main():
    results["loop"] = type(asyncio.get_running_loop()).__name__
    async with httpx.AsyncClient(timeout=10) as client:
        async def get_me():
            return (await client.get(GET_ME)).json()["result"]["username"]
        async def create_payment():
            response = await client.post("https://app.pakasir.com/api/transactioncreate/qris",
                                         json={"project": "shop", "order_id": "tg42-0001", "amount": 50000,
                                               "api_key": "key"})
            response.raise_for_status()
            return response.json()["payment"]
        async def other_host():
            return (await client.get("https://example.com/")).status_code
        await attempt_async("httpx async getMe", get_me)
        await attempt_async("httpx pakasir", create_payment)
        await attempt_async("httpx example.com", other_host)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async def aiohttp_get_me():
            async with session.get(GET_ME) as response:
                return (await response.json())["result"]["username"]
        async def aiohttp_other():
            async with session.get("http://example.com/") as response:
                return response.status
        await attempt_async("aiohttp getMe", aiohttp_get_me)
        await attempt_async("aiohttp example.com", aiohttp_other)
    async with aiohttp.ClientSession(base_url="https://api.telegram.org",
                                     timeout=aiohttp.ClientTimeout(total=10)) as based:
        async def aiohttp_base_url_get_me():
            async with based.get(f"/bot{TOKEN}/getMe") as response:
                return (await response.json())["result"]["username"]
        await attempt_async("aiohttp base_url getMe", aiohttp_base_url_get_me)
    await attempt_async("asyncio 10.1.2.3:80", lambda: asyncio.open_connection("10.1.2.3", 80))
    await attempt_async("asyncio example.com:443", lambda: asyncio.open_connection("example.com", 443))

uvloop.install()
asyncio.run(main())
attempt("httpx sync getMe", lambda: httpx.get(GET_ME, timeout=10).json()["result"]["username"])
attempt("requests getMe", lambda: requests.get(GET_ME, timeout=10).json()["result"]["username"])
attempt("requests example.com", lambda: requests.get("http://example.com/", timeout=10).status_code)
attempt("socket example.com:443", lambda: socket.create_connection(("example.com", 443), timeout=5) and "connected")
attempt("socket 10.1.2.3:80", lambda: socket.create_connection(("10.1.2.3", 80), timeout=5) and "connected")
attempt("urllib getMe", lambda: urllib.request.urlopen(GET_ME, timeout=5).status)
print(json.dumps(results))
'''


async def run_bot(tmp_path: Path, api: FakeBotAPI, gateway: FakeGateway) -> tuple[dict, Path, Path]:
    """Run the script bot through the launcher under the guard; (its results, refused log, tripwire log)."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "uvloop.py").write_text(UVLOOP)
    (tmp_path / "tripwire.py").write_text(TRIPWIRE)
    (tmp_path / "bot.py").write_text(BOT)
    refused_log, tripwire_log = tmp_path / "outbound.jsonl", tmp_path / "tripwire.jsonl"
    env = {**os.environ, **outbound.environment({"api.telegram.org": api.url, "app.pakasir.com": gateway.url},
                                                [], refused_log),
           "TRIPWIRE_LOG": str(tripwire_log), "PYTHONPATH": str(tmp_path / "site"),
           "HTTPS_PROXY": "http://proxy.invalid:3128"}    # the guard must drop it, or requests would go there
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(tmp_path / "tripwire.py"), "--api-url", api.url, str(tmp_path / "bot.py"), api.token,
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), 90)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail("the script bot did not finish within 90 s")
    assert process.returncode == 0, f"the script bot failed:\n{err.decode()[-3000:]}"
    return json.loads(out.decode().strip().splitlines()[-1]), refused_log, tripwire_log


async def test_telegram_and_pakasir_end_at_the_fakes_and_everything_else_is_refused_and_listed(tmp_path):
    async with FakeBotAPI() as api, FakeGateway(project="shop", api_key="key") as gateway:
        results, refused_log, tripwire_log = await run_bot(tmp_path, api, gateway)

        # Telegram: raw httpx (async and sync), aiohttp (also with a base_url) and requests all reached the fake Bot API.
        username = api.bot["username"]
        for name in ("httpx async getMe", "aiohttp getMe", "aiohttp base_url getMe", "httpx sync getMe",
                     "requests getMe"):
            assert results[name] == username, f"{name}: {results[name]}"
        assert len(api.calls_to("getMe")) == 5 and all(c.status == 200 for c in api.calls_to("getMe"))

        # Pakasir: the payment was created at the fake, answered as Pakasir does.
        created = gateway.requests_to("/api/transactioncreate/qris")
        assert len(created) == 1 and created[0].body == {"project": "shop", "order_id": "tg42-0001",
                                                         "amount": 50000, "api_key": "key"}
        payment = results["httpx pakasir"]
        assert payment["fee"] == pakasir_fee(50000) == 660 and payment["total_payment"] == 50660
        assert payment["payment_number"].startswith("000201") and payment["expired_at"].endswith("Z")

    # uvloop.install() was a no-op: the bot ran on asyncio's loop, which the socket guard sees.
    assert results["loop"] == "_UnixSelectorEventLoop"

    # Everything else was refused, the way each client reports a network failure.
    for name in ("httpx example.com", "aiohttp example.com", "asyncio 10.1.2.3:80", "asyncio example.com:443",
                 "requests example.com", "socket example.com:443", "socket 10.1.2.3:80", "urllib getMe"):
        assert results[name].startswith("refused:") and "deploycheck rehearsal" in results[name], \
            f"{name}: {results[name]}"

    # ... and listed, with host, port, how it was caught and where in the bot it came from.
    installed, refused = outbound.read_log(refused_log)
    assert len(installed) == 1 and set(installed[0]["routes"]) == set(ROUTED)
    seen = {(r["host"], r["port"], r["via"]) for r in refused}
    assert seen == {("example.com", 443, "httpx"), ("example.com", 80, "aiohttp"), ("10.1.2.3", 80, "connect"),
                    ("example.com", 443, "loop.getaddrinfo"), ("example.com", 80, "requests"),
                    ("example.com", 443, "getaddrinfo"), ("api.telegram.org", 443, "getaddrinfo")}
    assert len(refused) == 8                      # 10.1.2.3:80 twice: through asyncio and a plain socket
    for record in refused:
        assert "bot.py:" in record["origin"] and record["stack"], record
        assert api.token not in json.dumps(record)
    assert {r["url"] for r in refused if "url" in r} == {"https://example.com/", "http://example.com/"}

    # Nothing non-loopback reached the socket layer under the guard: no DNS query, no connection.
    assert not tripwire_log.exists(), tripwire_log.read_text()


async def test_paid_webhook_reaches_the_bot_with_the_total_and_signature():
    received: list[tuple[dict, bytes, str | None]] = []

    async def webhook(request: web.Request) -> web.Response:
        raw = await request.read()
        received.append((json.loads(raw), raw, request.headers.get("X-Pakasir-Signature")))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post(WEBHOOK_PATH, webhook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    bot_url = f"http://127.0.0.1:{runner.addresses[0][1]}{WEBHOOK_PATH}"
    try:
        async with FakeGateway(project="shop", api_key="key", webhook_url=bot_url, webhook_secret="s3cret") as gateway:
            async with httpx.AsyncClient(timeout=10) as client:
                create = f"{gateway.url}/api/transactioncreate/qris"
                answer = await client.post(create, json={"project": "shop", "order_id": "tg7-ab", "amount": 99000,
                                                         "api_key": "key"})
                wrong_key = await client.post(create, json={"project": "shop", "order_id": "tg7-cd",
                                                            "amount": 99000, "api_key": "nope"})
                detail = await client.get(f"{gateway.url}/api/transactiondetail",
                                          params={"project": "shop", "amount": 99000, "order_id": "tg7-ab",
                                                  "api_key": "key"})
            assert answer.status_code == 200
            payment = answer.json()["payment"]
            assert (payment["amount"], payment["fee"], payment["total_payment"]) == (99000, 1003, 100003)  # Pakasir's docs
            assert wrong_key.status_code == 401 and "api_key" in wrong_key.json()["error"]
            assert detail.json()["transaction"]["status"] == "pending"

            hook = await gateway.pay("tg7-ab")
            assert hook.status == 200 and hook.answer == '{"ok": true}'
            body, raw, signature = received[-1]
            assert body["amount"] == payment["total_payment"] == 100003
            assert {k: body[k] for k in ("order_id", "project", "status", "payment_method")} == \
                {"order_id": "tg7-ab", "project": "shop", "status": "completed", "payment_method": "qris"}
            assert body["completed_at"].endswith("+07:00")
            assert signature == hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()

            with pytest.raises(GatewayError, match="no payment for order_id 'tg7-zz'"):
                await gateway.pay("tg7-zz")

            # Pakasir's sandbox: paymentsimulation answers, then sends the webhook.
            async with httpx.AsyncClient(timeout=10) as client:
                simulated = await client.post(f"{gateway.url}/api/paymentsimulation",
                                              json={"project": "shop", "order_id": "tg7-ab", "amount": 99000,
                                                    "api_key": "key"})
            assert simulated.status_code == 200
            for _ in range(100):                  # at most 10 s
                if len(received) == 2:
                    break
                await asyncio.sleep(0.1)
            assert len(received) == 2 and received[1][0]["amount"] == 100003, received
            assert gateway.webhook_errors == []
            assert [r.status for r in gateway.requests] == [200, 401, 200, 200]
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("env, message", [
    ({"DEPLOYCHECK_ROUTES": "not json", "DEPLOYCHECK_REFUSED_LOG": "/tmp/x"}, "Expecting value"),
    ({"DEPLOYCHECK_ROUTES": '{"api.telegram.org": "http://127.0.0.1:1"}'}, "DEPLOYCHECK_REFUSED_LOG must name"),
    ({"DEPLOYCHECK_ROUTES": '{"api.telegram.org": "https://proxy.example:443"}', "DEPLOYCHECK_REFUSED_LOG": "/tmp/x"},
     "must be a loopback URL"),
    ({"DEPLOYCHECK_ROUTES": "{}", "DEPLOYCHECK_ALLOW": '["db:5432"]', "DEPLOYCHECK_REFUSED_LOG": "/tmp/x"},
     "list of \\[host, port\\] pairs"),
])
def test_a_bad_setting_stops_before_the_bot_starts(env, message):
    # Each is refused before anything is patched, so this test process stays untouched.
    with pytest.raises(SystemExit, match=message):
        outbound.install_from_env(env)


def test_no_routes_means_no_guard():
    assert outbound.install_from_env({}) is False


def test_the_container_guard_folder_guards_any_python_started_with_it(tmp_path):
    """rehearsal.container_guard's folder, first on PYTHONPATH as in a container (here: this machine's Python):
    the interpreter installs the guard before the program runs, a connection off the machine is refused and
    listed, and a setting that would let traffic leave stops the interpreter (exit 70) before the program."""
    import subprocess
    from deploycheck.rehearsal import container_guard
    guard = container_guard.ContainerGuard(container_guard.lay_out(tmp_path),
                                           {"api.telegram.org": "http://127.0.0.1:9"}, "http://127.0.0.1:9")
    env = {**os.environ, **guard.settings(), "PYTHONPATH": str(tmp_path / "guard")}  # MOUNT is only in a container
    program = "import socket; socket.create_connection(('198.51.100.7', 443), timeout=3)"
    done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "outbound connection to 198.51.100.7:443 refused" in done.stderr, done.stderr
    installed, refused = outbound.read_log(guard.refused_log)
    assert installed[0]["command"].endswith(program) and [r["host"] for r in refused] == ["198.51.100.7"]
    env["DEPLOYCHECK_ROUTES"] = json.dumps({"api.telegram.org": "https://198.51.100.7:443"})
    done = subprocess.run([sys.executable, "-c", "print('ran unguarded')"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == container_guard.FAILED_CLOSED and "ran unguarded" not in done.stdout, done
    assert "outbound guard not installed, so this process is stopped" in done.stderr

"""Keep a rehearsed bot on this machine: its Telegram and Pakasir traffic goes to the fakes, nothing else
goes anywhere, and every refused attempt is written down.

    outbound_guard.install(routes={"api.telegram.org": "http://127.0.0.1:8081",     # the fake Bot API
                                   "app.pakasir.com": "http://127.0.0.1:8082"},     # the fake gateway
                           allow=[("10.0.0.5", 5432)],                              # e.g. a container database
                           refused_log=Path("outbound.jsonl"))

It lives beside the launcher (deploycheck.telegram.launcher), which installs it in the bot's process: telegram
sits below the rehearsal (deploycheck/layers.py).

The launcher calls `install_from_env()` before it imports the bot, so a rehearsal sets
DEPLOYCHECK_ROUTES (JSON object host -> loopback URL), DEPLOYCHECK_ALLOW (JSON list of [host, port])
and DEPLOYCHECK_REFUSED_LOG (a file) in the bot's environment; `read_log` reads the file back as
evidence. It runs inside the bot's own interpreter, so it uses the standard library only and patches
the HTTP clients only when the bot's environment has them.

Why this way:
- The bot is unmodified and its addresses are hard-coded (bot-auto-order: a raw httpx getMe at
  https://api.telegram.org in its health check, https://app.pakasir.com for payments). Changing its
  settings cannot move them; its process can. The launcher already points python-telegram-bot at the
  fake Bot API; this does the same for the calls that bypass PTB.
- Client level (routing, and a refusal with the URL in the record): httpx `Client.send` and
  `AsyncClient.send`, aiohttp `ClientSession._request`, requests `Session.send`. A request to a routed
  host gets the fake's scheme, host and port (path and query kept, so /bot<token>/getMe and
  /api/transactioncreate/qris arrive as the real server would get them). A request to any other host
  that is not loopback or allowed is refused here, before the client resolves the name.
- Socket level (the last line of defence, for urllib, http.client, raw sockets and clients we do not
  know): a host *name* is refused at getaddrinfo (socket's and the asyncio loop's), before any DNS
  query is sent; an address is refused at `socket.connect`/`connect_ex`/`sendto`, before a packet is
  sent. asyncio, httpx (anyio), aiohttp, requests (urllib3) and PTB all connect through these.
  Loopback always passes (it does not leave the machine: the fakes and the rehearsal's database are
  there), and so do the `allow` addresses.
- uvloop: `uvloop.install()` (bot-auto-order calls it first thing) swaps in an event loop that resolves
  and connects in libuv's C code, where none of the Python-level guards above can see it (the research
  tried: under uvloop, patched socket functions did not see PTB's or httpx's connections). install()
  therefore makes uvloop's install/new_event_loop/EventLoopPolicy/run give asyncio's own loop: the bot
  behaves the same on it, a little slower, and the guard holds.
- Proxy variables (HTTP_PROXY, ...) are removed from the environment: a proxy would carry the
  rewritten requests off the machine.
- Not a local HTTPS proxy with a throwaway CA: every client would have to trust the CA (httpx reads
  certifi, not the system store), and direct connections would still need this guard. Not a network
  namespace (`unshare -n`): it needs privileges the operator's machine may not give, and it records
  nothing about what was refused.

Limits: networking done in C outside asyncio's loop (pycares/aiodns resolving a redirect's new host,
libcurl) and child processes (they do not inherit the patches) are out of reach; bot-auto-order has
neither at run time (its backup job runs pg_dump and openssl locally, and a rehearsal disables it).
"""
from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import os
import re
import socket
import sys
import sysconfig
import threading
import time
import traceback
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ENV_ROUTES, ENV_ALLOW, ENV_LOG = "DEPLOYCHECK_ROUTES", "DEPLOYCHECK_ALLOW", "DEPLOYCHECK_REFUSED_LOG"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "WS_PROXY", "WSS_PROXY")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_HERE = os.path.abspath(__file__)


def _library_dirs() -> tuple[str, ...]:
    """Where the standard library and installed packages are: the interpreter's own folders, and every folder on
    sys.path named site-packages or dist-packages (an image may install its packages under /usr/local on a PYTHONPATH
    while Debian's Python calls its own dist-packages)."""
    paths = sysconfig.get_paths()
    found = {paths["stdlib"], paths["purelib"], paths["platlib"]}
    found |= {p for p in sys.path if os.path.basename(p.rstrip("/")) in ("site-packages", "dist-packages")}
    return tuple(os.path.abspath(p) for p in found)


class _Policy:
    """What may be reached. Names are compared lower-case."""

    def __init__(self, routes: dict[str, str], allow: list[tuple[str, int]], refused_log: Path):
        self.routes: dict[str, tuple[str, str, int]] = {}
        for host, target in routes.items():
            parts = urlsplit(target)
            if parts.scheme not in ("http", "https") or not parts.port or not _is_loopback(parts.hostname or ""):
                raise ValueError(f"route {host} -> {target!r}: the target must be a loopback URL with a port "
                                 "(http://127.0.0.1:PORT), or the rerouted traffic would leave the machine")
            if parts.path not in ("", "/"):
                raise ValueError(f"route {host} -> {target!r}: give only scheme, host and port; the path is kept "
                                 "as the bot sent it")
            self.routes[host.lower()] = (parts.scheme, parts.hostname, parts.port)
        self.allow = {(str(h).lower(), int(p)) for h, p in allow}
        self.allow_names = {h for h, _ in self.allow}
        self.log = Path(refused_log)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()

    def allowed(self, host: str, port: int | None) -> bool:
        host = host.lower()
        return _is_loopback(host) or (host, port) in self.allow

    def name_allowed(self, host: str) -> bool:
        """May this name be resolved? Only names that resolve locally (localhost) or are allowed: asking
        DNS for any other name already sends a packet."""
        host = host.lower()
        return _is_loopback(host) or host in self.allow_names

    def write(self, record: dict) -> None:
        line = json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid(), **record}) + "\n"
        with self.lock, open(self.log, "a", encoding="utf-8") as out:   # one write per line: atomic append
            out.write(line)


_policy: _Policy | None = None
_patched = False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        return False


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").split("%", 1)[0].lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def _where() -> tuple[str, list[str]]:
    """(origin, stack): the innermost frame of the bot's own code (not the standard library, not an
    installed package, not this module), and the last frames before the refusal, innermost last."""
    frames, libraries = [f for f in traceback.extract_stack() if os.path.abspath(f.filename) != _HERE], _library_dirs()
    lines = [f"{f.filename}:{f.lineno} in {f.name}" for f in frames]
    origin = next((line for f, line in zip(reversed(frames), reversed(lines), strict=True)
                   if not os.path.abspath(f.filename).startswith(libraries) and not f.filename.startswith("<")),
                  lines[-1] if lines else "?")
    return origin, lines[-12:]


def _safe_url(url: str) -> str:
    """A URL for the record: no query (api keys travel there), no bot token in the path, no user:password."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, re.sub(r"/bot[^/]+", "/bot***", parts.path), "", ""))


def _refuse(via: str, host: str, port, url: str | None = None) -> str:
    """Write the refusal down and return the message for the exception the caller raises."""
    origin, stack = _where()
    record = {"event": "refused", "via": via, "host": host, "port": port, "origin": origin, "stack": stack}
    if url:
        record["url"] = _safe_url(url)
    _policy.write(record)
    return (f"deploycheck rehearsal: outbound connection to {host}:{port} refused ({via}); nothing leaves the "
            f"machine in a rehearsal. Listed in {_policy.log}")


def _route(scheme: str, host: str | None, port: int | None, url: str, via: str):
    """None to leave the request alone, (scheme, host, port) to send it to a fake; raises _Refused."""
    if _policy is None or not host:
        return None
    target = _policy.routes.get(host.lower())
    if target:
        return target
    if _policy.allowed(host, port or DEFAULT_PORTS.get(scheme)):
        return None
    raise _Refused(_refuse(via, host, port or DEFAULT_PORTS.get(scheme), url))


class _Refused(Exception):
    """Internal: turned into each client's own connection error, so the bot handles it as it would a
    network failure."""


# -- clients ----------------------------------------------------------------------------------------
def _patch_httpx() -> None:
    try:
        import httpx
    except ImportError:
        return

    def rewrite(request) -> None:
        url = request.url
        try:
            target = _route(url.scheme, url.host, url.port, str(url), "httpx")
        except _Refused as refused:
            raise httpx.ConnectError(str(refused), request=request) from None
        if target:
            request.url = url.copy_with(scheme=target[0], host=target[1], port=target[2])
            request.headers["Host"] = f"{target[1]}:{target[2]}"

    original_async, original_sync = httpx.AsyncClient.send, httpx.Client.send

    async def async_send(self, request, *args, **kwargs):
        rewrite(request)
        return await original_async(self, request, *args, **kwargs)

    def sync_send(self, request, *args, **kwargs):
        rewrite(request)
        return original_sync(self, request, *args, **kwargs)

    httpx.AsyncClient.send, httpx.Client.send = async_send, sync_send


def _patch_aiohttp() -> None:
    try:
        import aiohttp
        from yarl import URL
    except ImportError:
        return
    original = aiohttp.ClientSession._request

    def routed(url, via_url):
        try:
            target = _route(url.scheme, url.host, url.port,
                            str(via_url), "aiohttp")
        except _Refused as refused:
            raise aiohttp.ClientConnectionError(str(refused)) from None
        return url.with_scheme(target[0]).with_host(target[1]).with_port(target[2]) if target else None

    async def _request(self, method, str_or_url, *args, **kwargs):
        given, base = URL(str_or_url), getattr(self, "_base_url", None)
        if base is not None and not given.is_absolute():
            new_base = routed(base, base.join(given))    # a session made with base_url=https://api.telegram.org
            if new_base is not None:
                self._base_url = new_base
        else:
            new = routed(given, given)
            if new is not None:
                str_or_url = new
        return await original(self, method, str_or_url, *args, **kwargs)

    aiohttp.ClientSession._request = _request


def _patch_requests() -> None:
    try:
        import requests
    except ImportError:
        return
    original = requests.Session.send

    def send(self, request, **kwargs):
        parts = urlsplit(request.url)
        try:
            target = _route(parts.scheme, parts.hostname, parts.port, request.url, "requests")
        except _Refused as refused:
            raise requests.exceptions.ConnectionError(str(refused), request=request) from None
        if target:
            request.url = urlunsplit((target[0], f"{target[1]}:{target[2]}", parts.path, parts.query, parts.fragment))
        return original(self, request, **kwargs)

    requests.Session.send = send


# -- sockets ----------------------------------------------------------------------------------------
def _text(host) -> str | None:
    return host.decode() if isinstance(host, (bytes, bytearray)) else host


def _check_name(host, port, via: str) -> None:
    """Before resolving: an IP literal or no host (binding) sends nothing; a name other than localhost or
    an allowed one would send a DNS query, so it is refused (a routed name here means a client that
    was not rerouted)."""
    host = _text(host)
    if _policy is None or not host or _is_ip(host.strip("[]")) or _policy.name_allowed(host):
        return
    raise socket.gaierror(socket.EAI_NONAME, _refuse(via, host, port))


def _check_address(sock, address, via: str) -> None:
    if _policy is None or sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return                                            # unix sockets (PostgreSQL's) stay on the machine
    host, port = _text(address[0]), address[1]
    if not _is_ip(host):
        _check_name(host, port, via)                      # connect(("name", port)) resolves in C: check first
        return
    if not _policy.allowed(host, port):
        raise ConnectionRefusedError(errno.ECONNREFUSED, _refuse(via, host, port))


def _patch_sockets() -> None:
    original_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        _check_name(host, port, "getaddrinfo")
        found = original_getaddrinfo(host, port, *args, **kwargs)
        name = (_text(host) or "").lower()
        if _policy is not None and name in _policy.allow_names and not _is_loopback(name):
            # An allowed name (db.internal, 5432): its addresses may be connected to on the allowed ports.
            ports = {p for h, p in _policy.allow if h == name}
            _policy.allow |= {(info[4][0].lower(), p) for info in found for p in ports}
        return found

    socket.getaddrinfo = getaddrinfo

    # asyncio resolves in a worker thread; checking in the loop first puts the bot's coroutine in the stack.
    loop_getaddrinfo = asyncio.base_events.BaseEventLoop.getaddrinfo

    async def checked_loop_getaddrinfo(self, host, port, *args, **kwargs):
        _check_name(host, port, "loop.getaddrinfo")
        return await loop_getaddrinfo(self, host, port, *args, **kwargs)

    asyncio.base_events.BaseEventLoop.getaddrinfo = checked_loop_getaddrinfo

    connect, connect_ex, sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto

    def checked_connect(self, address):
        _check_address(self, address, "connect")
        return connect(self, address)

    def checked_connect_ex(self, address):
        _check_address(self, address, "connect")
        return connect_ex(self, address)

    def checked_sendto(self, data, *args):
        _check_address(self, args[-1] if args else None, "sendto")
        return sendto(self, data, *args)

    socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = (
        checked_connect, checked_connect_ex, checked_sendto)


def _keep_asyncio_loop() -> None:
    """uvloop connects in C, out of the socket guard's sight (see the module docstring): give the bot
    asyncio's own loop whichever way it asks uvloop for one."""
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install = lambda: None
    uvloop.new_event_loop = asyncio.new_event_loop
    uvloop.EventLoopPolicy = asyncio.DefaultEventLoopPolicy
    if hasattr(uvloop, "run"):
        uvloop.run = lambda main, *, debug=None, **_: asyncio.run(main, debug=debug)


def _command() -> str:
    """This process's command line, for the record: which process the "installed" line is of (a container's
    processes are told apart by it). Linux's /proc says it even before sys.argv is set (in sitecustomize)."""
    try:
        with open("/proc/self/cmdline", "rb") as found:
            return " ".join(a.decode(errors="replace") for a in found.read().split(b"\0") if a)
    except OSError:
        return " ".join(sys.argv)


# -- entry points ---------------------------------------------------------------------------------
def install(routes: dict[str, str], allow: list[tuple[str, int]], refused_log: Path) -> None:
    """Route `routes` (host -> loopback URL) to the fakes, let loopback and `allow` through, refuse the
    rest and list each refusal in `refused_log` (JSON lines). Call before the bot is imported."""
    global _policy, _patched
    _policy = _Policy(routes, allow, refused_log)
    for name in PROXY_VARS:
        os.environ.pop(name, None)
        os.environ.pop(name.lower(), None)
    if not _patched:
        _keep_asyncio_loop()
        _patch_sockets()
        _patch_httpx()
        _patch_aiohttp()
        _patch_requests()
        _patched = True
    # The rehearsal reads this line as proof that the guard was active in this process.
    _policy.write({"event": "installed", "command": _command(),
                   "routes": {h: f"{s}://{a}:{p}" for h, (s, a, p) in _policy.routes.items()},
                   "allow": sorted([h, p] for h, p in _policy.allow)})


def install_from_env(environ: dict[str, str] | None = None) -> bool:
    """install() from DEPLOYCHECK_ROUTES / DEPLOYCHECK_ALLOW / DEPLOYCHECK_REFUSED_LOG; False (nothing
    done) when DEPLOYCHECK_ROUTES is not set. A bad value stops the process with what to fix."""
    env = os.environ if environ is None else environ
    if not env.get(ENV_ROUTES):
        return False
    try:
        routes = json.loads(env[ENV_ROUTES])
        allow = json.loads(env.get(ENV_ALLOW) or "[]")
        if not isinstance(routes, dict) or not all(isinstance(v, str) for v in routes.values()):
            raise ValueError(f"{ENV_ROUTES} must be a JSON object of host -> URL")
        if not isinstance(allow, list) or not all(isinstance(a, list) and len(a) == 2 for a in allow):
            raise ValueError(f"{ENV_ALLOW} must be a JSON list of [host, port] pairs")
        if not env.get(ENV_LOG):
            raise ValueError(f"{ENV_LOG} must name the file where refused connections are listed")
        install(routes, [(h, int(p)) for h, p in allow], Path(env[ENV_LOG]))
    except ValueError as err:      # json.JSONDecodeError is a ValueError
        raise SystemExit(f"deploycheck outbound guard not installed, so the bot is not started: {err}\n"
                         f'example: {ENV_ROUTES}=\'{{"api.telegram.org": "http://127.0.0.1:8081"}}\' '
                         f"{ENV_ALLOW}='[[\"10.0.0.5\", 5432]]' {ENV_LOG}=/tmp/outbound.jsonl") from None
    return True


def environment(routes: dict[str, str], allow: list[tuple[str, int]], refused_log: Path) -> dict[str, str]:
    """The variables a rehearsal puts in the bot's environment for install_from_env()."""
    return {ENV_ROUTES: json.dumps(routes), ENV_ALLOW: json.dumps([[h, p] for h, p in allow]),
            ENV_LOG: str(refused_log)}


def read_log(path: Path) -> tuple[list[dict], list[dict]]:
    """(installed, refused): the processes where the guard was active, and every refused attempt
    (host, port, via, origin, stack, and the URL when a client knew it)."""
    installed, refused = [], []
    if Path(path).exists():
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                (installed if record.get("event") == "installed" else refused).append(record)
    return installed, refused

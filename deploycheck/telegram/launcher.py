"""Run an unmodified python-telegram-bot bot against another Bot API server (e.g. the fake).

    python -m deploycheck.telegram.launcher --api-url http://127.0.0.1:PORT -m src.main --mode polling
    python -m deploycheck.telegram.launcher --api-url http://127.0.0.1:PORT fixtures/bot/main.py --fault no_reply

PTB has no environment variable for its server address, and ApplicationBuilder passes the official
address explicitly, so changing `Bot.__init__`'s defaults is not enough: we wrap `Bot.__init__` and
swap the official address for ours when a bot asks for it. This happens before the bot's code is
imported; then the bot runs with runpy exactly as `python -m` / `python script.py` would run it.
A bot that chose its own address on purpose is left alone.
"""
from __future__ import annotations

import functools
import os
import runpy
import sys

from deploycheck.telegram import outbound_guard

OFFICIAL = "https://api.telegram.org/bot"
OFFICIAL_FILES = "https://api.telegram.org/file/bot"


def point_ptb_at(api_url: str) -> None:
    """Make every telegram.Bot (and ExtBot) created from now on talk to `api_url` instead of Telegram."""
    import telegram

    root = api_url.rstrip("/")
    original = telegram.Bot.__init__
    if getattr(original, "_deploycheck_api", None):
        original = original.__wrapped__

    @functools.wraps(original)
    def __init__(self, token, base_url=OFFICIAL, base_file_url=OFFICIAL_FILES, *args, **kwargs):
        if base_url == OFFICIAL:
            base_url = root + "/bot"
        if base_file_url == OFFICIAL_FILES:
            base_file_url = root + "/file/bot"
        original(self, token, base_url, base_file_url, *args, **kwargs)

    __init__._deploycheck_api = root
    telegram.Bot.__init__ = __init__


USAGE = ("usage: python -m deploycheck.telegram.launcher --api-url URL (-m module [args] | script.py [args])\n"
         "Runs a python-telegram-bot bot against the Bot API server at URL (or env DEPLOYCHECK_BOT_API_URL).")


def parse(argv: list[str]) -> tuple[str, str | None, list[str]]:
    """(api_url, module or None, [script, args...] or module args). Hand-parsed: argparse would try to
    read the bot's own options (`--mode polling`) as ours."""
    api_url, rest = os.environ.get("DEPLOYCHECK_BOT_API_URL"), list(argv)
    while rest:
        head = rest[0]
        if head in ("-h", "--help"):
            raise SystemExit(USAGE)
        if head == "--api-url" and len(rest) > 1:
            api_url, rest = rest[1], rest[2:]
        elif head.startswith("--api-url="):
            api_url, rest = head.split("=", 1)[1], rest[1:]
        elif head == "-m" and len(rest) > 1:
            module = rest[1]
            break
        else:
            module = None
            break
    else:
        module = None
    if not api_url:
        raise SystemExit("--api-url is required (or set DEPLOYCHECK_BOT_API_URL)\n" + USAGE)
    if module:
        return api_url, module, rest[2:]
    if not rest:
        raise SystemExit("give the bot: -m package.module [args] or path/to/script.py [args]\n" + USAGE)
    return api_url, None, rest


def main(argv: list[str] | None = None) -> None:
    api_url, module, rest = parse(sys.argv[1:] if argv is None else argv)
    # -- rehearsal: nothing the bot does leaves the machine (only when DEPLOYCHECK_ROUTES is set) --------
    # Before the bot is imported: its raw httpx/aiohttp/requests calls to Telegram and Pakasir go to the
    # fakes, any other outbound connection is refused and listed, and uvloop.install() becomes a no-op
    # (uvloop connects in C, where the socket guard cannot see). See deploycheck.telegram.outbound_guard.
    outbound_guard.install_from_env()
    # ---------------------------------------------------------------------------------------------------
    point_ptb_at(api_url)
    if module:
        sys.argv = [module, *rest]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        script, *args = rest
        sys.argv = [script, *args]
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))   # as `python script.py` does
        runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()

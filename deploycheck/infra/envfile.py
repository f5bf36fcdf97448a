"""A tenant's bot.env, as docker compose's env_file reads it: KEY=VALUE lines, # comments, no quoting
(bot-auto-order's provision_tenant.py writes them so). Read by the rehearsal (--bot-env) and the fleet."""
from __future__ import annotations

from pathlib import Path


class EnvFileError(ValueError):
    pass


def read(path: Path) -> dict[str, str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise EnvFileError(f"{path}: cannot be read ({exc.strerror}): give the path of the tenant's bot.env") from None
    return parse(text, path)


def parse(text: str, path) -> dict[str, str]:
    found = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not key.strip():
            # The line itself is not shown: it may be a secret pasted without its key.
            raise EnvFileError(f"{path} line {number} is not KEY=VALUE: fix it or make it a # comment")
        found[key.strip()] = value.strip()  # the last one wins, as in docker compose
    return found

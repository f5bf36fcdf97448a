"""Keep secrets out of every report, ledger, log and failure message.

Known secrets (passwords, tokens, session strings from the environment and the DSN) are replaced
wherever they appear; patterns catch the ones we were not told about (a password inside a URL, a
Telegram bot token).
"""
from __future__ import annotations

import os
import re
from urllib.parse import quote, quote_plus, unquote, urlsplit

MASK = "***"
SECRET_ENV = ("POSTGRES_PASSWORD", "PGPASSWORD", "TELEGRAM_BOT_TOKEN", "TELEGRAM_SESSION", "TELEGRAM_API_HASH",
              "PAKASIR_API_KEY")
PATTERNS = (
    re.compile(r"(?<=://)([^:/@\s]+):([^@\s]+)(?=@)"),        # scheme://user:password@host
    re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}\b"),              # Telegram bot token
    re.compile(r"(?i)(password\s*[=:]\s*)('[^']*'|\"[^\"]*\"|\S+)"),
)


def password_of(dsn: str | None) -> str | None:
    """The password of a URL, decoded (a URL holds it percent-encoded)."""
    if not dsn or "://" not in dsn:
        return None
    try:
        password = urlsplit(dsn).password
    except ValueError:  # not a URL after all; the patterns below still mask user:password@
        return None
    return unquote(password) if password else None


def forms(secret: str) -> set[str]:
    """The ways a secret can be written: as it is, decoded, and percent-encoded in a URL (libpq, asyncpg and
    people encode different sets of characters, in upper or lower case hex)."""
    found = {secret, unquote(secret)}
    for plain in list(found):
        for encoded in (quote(plain, safe=""), quote(plain), quote_plus(plain, safe=""), quote_plus(plain)):
            found |= {encoded, re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), encoded)}
    return found


class Redactor:
    def __init__(self, secrets: tuple[str, ...] = ()):
        self.secrets: set[str] = set()
        self.short: set[str] = set()
        for name in SECRET_ENV:
            self.add(os.environ.get(name))
        self.add(password_of(os.environ.get("DATABASE_URL")))
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if not secret or not secret.strip():
            return
        for form in forms(secret):
            # A short secret masked everywhere would garble ordinary words; masked where it stands alone.
            (self.secrets if len(form) >= 4 else self.short).add(form)

    def text(self, value: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            value = value.replace(secret, MASK)
        for secret in self.short:
            value = re.sub(rf"(?<!\w){re.escape(secret)}(?!\w)", MASK, value)
        value = PATTERNS[0].sub(lambda m: f"{m.group(1)}:{MASK}", value)
        value = PATTERNS[1].sub(MASK, value)
        return PATTERNS[2].sub(lambda m: m.group(1) + MASK, value)

    def value(self, value):
        """Redact a JSON-like value (dicts, lists, strings) for the ledger and reports."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value

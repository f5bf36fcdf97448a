"""Keep secrets out of every report, ledger, log and failure message.

Known secrets (passwords, tokens, session strings from the environment and the DSN) are replaced
wherever they appear; patterns catch the ones we were not told about (a password inside a URL, a
Telegram bot token).
"""
from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

MASK = "***"
SECRET_ENV = ("POSTGRES_PASSWORD", "PGPASSWORD", "TELEGRAM_BOT_TOKEN", "TELEGRAM_SESSION", "TELEGRAM_API_HASH",
              "PAKASIR_API_KEY")
PATTERNS = (
    re.compile(r"(?<=://)([^:/@\s]+):([^@\s]+)(?=@)"),        # scheme://user:password@host
    re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}\b"),              # Telegram bot token
    re.compile(r"(?i)(password\s*[=:]\s*)('[^']*'|\"[^\"]*\"|\S+)"),
)


def password_of(dsn: str | None) -> str | None:
    if not dsn or "://" not in dsn:
        return None
    return urlsplit(dsn).password


class Redactor:
    def __init__(self, secrets: tuple[str, ...] = ()):
        self.secrets: set[str] = set()
        for name in SECRET_ENV:
            self.add(os.environ.get(name))
        self.add(password_of(os.environ.get("DATABASE_URL")))
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 4:  # shorter values would mask ordinary words
            self.secrets.add(secret)

    def text(self, value: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            value = value.replace(secret, MASK)
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

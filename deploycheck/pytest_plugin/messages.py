"""A failure's message is its cause: what went wrong and what to do, not an exception's type, pytest's
assertion introspection or a chain of exceptions; a long message keeps the server's own error line."""
from __future__ import annotations

import re

import pytest

LIMIT = 4000
# A server's or tool's own error line: PostgreSQL's "ERROR:"/"FATAL:", pg_restore's "error:", Python's "...Error:".
ERROR_LINE = re.compile(r"\b(ERROR|FATAL|PANIC|error|[A-Z]\w*Error):\s")


def _without_introspection(text: str) -> str:
    """pytest's assertion rewriting appends `assert ...` and `+ where ...` lines to the message."""
    lines = text.splitlines()
    for index, line in enumerate(lines[1:], start=1):
        if line.startswith("assert ") or line.lstrip().startswith(("+  where", "+ where")):
            return "\n".join(lines[:index]).rstrip() or text
    return text


def describe_exception(exc: BaseException) -> str:
    """An unexpected exception in words: an OS error names the file and what is wrong with it."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__


def cause_of(excinfo: pytest.ExceptionInfo) -> tuple[str, bool]:
    """The message of a failed test, and whether it is a check's own (plain: shown without a traceback)."""
    exc = excinfo.value
    if isinstance(exc, pytest.fail.Exception):
        return exc.msg or "failed", True
    if isinstance(exc, AssertionError):
        return _without_introspection(str(exc)) or "a check failed without a message", True
    return (f"{describe_exception(exc)} (unexpected {type(exc).__name__} in deploycheck: the traceback is in "
            "the terminal; please report it)"), False


def cause_first(text: str, limit: int = LIMIT) -> str:
    """Shorten a long message without losing its cause: the first line, the server's error lines, then the
    end (where the advice is)."""
    if len(text) <= limit:
        return text
    lines = text.splitlines()
    errors = [line for line in lines[1:] if ERROR_LINE.search(line)][:5]
    head = "\n".join([lines[0], *errors])[: limit // 2]
    tail = "\n".join(lines[-4:])[-(limit - len(head) - 5):]
    return f"{head}\n…\n{tail}"

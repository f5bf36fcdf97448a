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


# ------------------------------------------------------------------ short messages (a traceback reduced)
TRACEBACK = "Traceback (most recent call last):"
FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+)')
# Frames outside the operator's code: the interpreter, installed packages, pytest and its plugins.
NOT_THEIRS = re.compile(r"(/lib/python\d|site-packages|dist-packages|<frozen|/_pytest/|/pluggy/|^<)")
FRAMES_KEPT = 2


def _place(path: str, roots: tuple[str, ...]) -> str:
    """A frame's file as the operator knows it: relative to their checkout when it is inside one."""
    for root in roots:
        root = root.rstrip("/") + "/"
        if root != "/" and path.startswith(root):
            return path[len(root):]
    marker = path.rfind("/src/")
    return path[marker + 1:] if marker >= 0 else path


def _reduce(block: list[str], roots: tuple[str, ...]) -> list[str]:
    """One traceback: the last frames in the operator's code and the error line, as `path line N: Error: ...`."""
    error = next((line.strip() for line in reversed(block) if line.strip() and not line.startswith((" ", "\t"))),
                 block[-1].strip())
    frames = [(m.group(1), m.group(2)) for line in block if (m := FRAME.match(line))]
    theirs = [f for f in frames if not NOT_THEIRS.search(f[0])] or frames[-1:]
    where = [f"{_place(path, roots)} line {line}" for path, line in theirs[-FRAMES_KEPT:]]
    return [(", called from ".join(reversed(where)) + ": " if where else "") + error]


def shorten(text: str, roots: tuple[str, ...] = ()) -> str:
    """A message with each Python traceback in it (the bot's, a tool's) reduced to its error line and the last
    frames in the operator's code; the text around it stays. Chained tracebacks keep the last one."""
    if TRACEBACK not in text and not FRAME.search(text):
        return text
    lines, out, block = text.splitlines(), [], None
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(TRACEBACK):
            block = []
            continue
        if block is None and FRAME.match(line):
            block = [line]  # a SyntaxError's report: File "...", line N, the code, the caret, the error
            continue
        if block is not None:
            block.append(line)
            if stripped and not line.startswith((" ", "\t")) and not FRAME.match(line):
                out.extend(_reduce(block, roots))
                block = None
            continue
        if stripped.startswith(("During handling of the above exception", "The above exception was the direct")):
            if out and out[-1] != "":
                out.pop()  # the earlier link of a chain: the last traceback says it
            continue
        out.append(line)
    if block:
        out.extend(_reduce(block, roots))
    return "\n".join(out).strip() or text


def one_line(message: str | None, limit: int = 240) -> str:
    """A message in one line: its first line, with the first server or tool error line after it."""
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[0]
    error = next((extra for extra in lines[1:] if ERROR_LINE.search(extra) or extra.startswith("[error]")), None)
    if line.endswith(":") and len(lines) > 1 and not error:
        error = lines[1]  # "...on the restored copy:" then what: the what is the cause
    if error and not ERROR_LINE.search(line):
        # the error first, where a terminal's 80 columns keep it: "syntax error at ... (the migration failed ...)"
        line = f"{error} ({line.rstrip(':')})" if line.endswith(":") else f"{line}: {error}"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def fault_of(excinfo: pytest.ExceptionInfo) -> str:
    """What makes two failures the same error: the exception's type and text, and the place it was raised
    (the innermost frame outside pytest). A fixture's setup error re-raised for every test that uses it is
    one fault; the same line failing in two versions of the code names two files, two faults."""
    exc = excinfo.value
    place = ""
    for entry in reversed(excinfo.traceback):
        path = str(entry.path)
        if "/_pytest/" not in path and "/pluggy/" not in path:
            place = f"{path}:{entry.lineno + 1}"
            break
    text = exc.msg if isinstance(exc, pytest.fail.Exception) else str(exc)
    return f"{type(exc).__name__}|{place}|{text}"

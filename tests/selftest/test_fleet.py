"""The fleet's foundation (deploycheck/fleet): tenants from a fleet TOML, an Ansible inventory and a
deployments/ folder laid out like provision_tenant.py's output; every refusal with a message that names the
file, the tenant and what to do, and never a password or a token; waves, the rollout's halt on NO-GO, the
shared-resource groups and the summary. Pure: no database, no bot."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from deploycheck.fleet import inventory
from deploycheck.fleet.summary import render_json, render_text, summary
from deploycheck.fleet.inventory import load_fleet
from deploycheck.fleet.tenants import FleetError, Tenant, fingerprint, load_deployments, load_toml
from deploycheck.fleet.waves import (GO, NO_GO, NOT_STARTED, ROLLED_BACK, Result, Rollout, WaveError, batches,
                                     parse_waves, plan, run, shared_groups)

PASSWORD = "s3cr3t-Pw!x"
TOKEN = "123456789:AAFakeTokenForTestsOnly_abcdefghijklmn"
DB = "postgresql://bot:{pw}@db1.internal:5432/db_{slug}"


def provision(root: Path, slug: str, gateway: str = "qris", database_url: str | None = None,
              token: str = "") -> Path:
    """What scripts/provision_tenant.py writes for one shop (bot.env.template with its replacements)."""
    folder = root / f"bot-{slug}-{gateway}"
    for sub in ("logs/maintenance", "backups/local", "backups/offsite"):
        (folder / sub).mkdir(parents=True)
    url = database_url or "postgresql://username:password@postgres-host:5432/db_store"
    (folder / "compose.yml").write_text(textwrap.dedent(f"""\
        services:
          bot:
            image: bot-auto-order:latest
            container_name: bot-{slug}-{gateway}
            restart: always
            env_file: ./bot.env
        """))
    (folder / "bot.env").write_text(textwrap.dedent(f"""\
        # Telegram
        TELEGRAM_BOT_TOKEN={token}
        TELEGRAM_ADMIN_IDS=
        TELEGRAM_OWNER_IDS=
        # Database
        DATABASE_URL={url}
        BOT_STORE_NAME={slug.replace('-', ' ').title()}
        STORE_SLUG={slug}
        IMAGE_NAME=bot-auto-order:latest
        BOT_WEBHOOK_PORT=8080
        PAKASIR_PORT=9000
        ENABLE_OWNER_ALERTS=true
        """))
    (folder / "README_TENANT.md").write_text("tenant\n")
    (folder / "run.sh").write_text("#!/bin/sh\n")
    return folder


def tenant(name: str, server: str = "db1", token: str | None = None) -> Tenant:
    return Tenant(name=name, database_url=f"postgresql://bot:{PASSWORD}@{server}:5432/db_{name}",
                  token_fingerprint=fingerprint(token))


def shows_no_secret(text: str) -> None:
    assert PASSWORD not in text and TOKEN not in text


# --- loaders --------------------------------------------------------------------------------------------

def test_deployments_folder(tmp_path):
    for slug in ("toko-a", "toko-b"):
        provision(tmp_path, slug, database_url=DB.format(pw=PASSWORD, slug=slug), token=TOKEN + slug[-1] * 3)
    (tmp_path / "notes").mkdir()  # not a bot folder: left alone
    tenants = load_fleet(tmp_path)
    assert [t.name for t in tenants] == ["toko-a-qris", "toko-b-qris"]
    first = tenants[0]
    assert first.database_name == "db_toko-a" and first.database_server == "db1.internal:5432"
    assert first.service == "compose:bot" and first.compose_file == tmp_path / "bot-toko-a-qris" / "compose.yml"
    assert first.bot_env == tmp_path / "bot-toko-a-qris" / "bot.env" and first.host == "local"
    assert first.token_fingerprint.startswith("sha256:") and first.token_fingerprint != tenants[1].token_fingerprint
    shows_no_secret(repr(tenants) + json.dumps([t.public() for t in tenants]))
    assert "***" in first.database


def test_deployments_on_a_host_qualify_localhost(tmp_path):
    provision(tmp_path, "toko", database_url="postgresql://bot:pw@localhost/db_toko")
    (only,) = load_deployments(tmp_path, host="ssh://deploy@shop1")
    # localhost in the bot.env is the database on the tenant's own machine, not this one
    assert only.database_server == "ssh://deploy@shop1/localhost:5432"


def test_fleet_toml(tmp_path):
    provision(tmp_path / "deployments", "toko-b", database_url=DB.format(pw=PASSWORD, slug="toko-b"), token=TOKEN)
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(textwrap.dedent(f"""\
        [defaults]
        host = "ssh://deploy@shop1"
        service = "systemd:bot-auto-order"

        [[tenant]]
        name = "toko-a"
        database_url = "postgresql://bot:{PASSWORD}@db1:5432/db_toko_a"
        bot_dir = "/srv/toko-a/bot-auto-order"

        [[tenant]]
        name = "toko-b"
        bot_env = "deployments/bot-toko-b-qris/bot.env"
        service = "compose:bot"
        compose_file = "deployments/bot-toko-b-qris/compose.yml"
        """))
    a, b = load_fleet(fleet)
    assert (a.name, a.host, a.service, a.bot_dir) == ("toko-a", "ssh://deploy@shop1", "systemd:bot-auto-order",
                                                     Path("/srv/toko-a/bot-auto-order"))
    assert a.database_name == "db_toko_a" and a.token_fingerprint is None
    assert b.database_name == "db_toko-b" and b.service == "compose:bot" and b.token_fingerprint == fingerprint(TOKEN)
    assert b.bot_env == tmp_path / "deployments/bot-toko-b-qris/bot.env"
    shows_no_secret(repr([a, b]))


def test_ini_inventory(tmp_path):
    path = tmp_path / "inventory.ini"
    path.write_text(textwrap.dedent(f"""\
        # two shops on one machine (aliases), one on another
        [all:vars]
        service=systemd:bot-auto-order

        [shops:children]
        jakarta

        [shops:vars]
        ansible_user=deploy

        [jakarta]
        toko-a ansible_host=10.0.0.5 database_url=postgresql://bot:{PASSWORD}@10.0.0.9/db_toko_a
        toko-b ansible_host=10.0.0.5 database_url="postgresql://bot:{PASSWORD}@10.0.0.9/db_toko_b" bot_dir="/srv/toko b"

        [jakarta:vars]
        ansible_port=2222

        [local]
        toko-c ansible_connection=local deploycheck_service=compose:bot database_url=postgresql://bot@localhost/db_c  # here

        [dbservers]
        pg1 ansible_host=10.0.0.9
        """))
    shops = inventory.load_ini(path, group="shops")
    assert [t.name for t in shops] == ["toko-a", "toko-b"]
    assert shops[0].host == "ssh://deploy@10.0.0.5:2222" and shops[0].service == "systemd:bot-auto-order"
    assert shops[1].bot_dir == Path("/srv/toko b") and shops[1].database_name == "db_toko_b"
    shows_no_secret(repr(shops))
    (local,) = inventory.load_ini(path, group="local")
    assert (local.host, local.service) == ("local", "compose:bot")
    # without a group every host is a tenant: the database server pg1 has no database_url
    with pytest.raises(FleetError, match=r"tenant 'pg1': no database: no database_url"):
        load_fleet(path)


def test_yaml_inventory(tmp_path):
    """An Ansible YAML inventory, as operators keep it: groups, children, vars, hosts with host vars."""
    path = tmp_path / "inventory.yml"
    path.write_text(textwrap.dedent(f"""\
        all:
          vars:
            ansible_user: deploy
          children:
            shops:
              vars:
                service: compose:bot
              hosts:
                toko-a:
                  ansible_host: 10.0.0.5
                  database_url: postgresql://bot:{PASSWORD}@db1/db_a
                toko-b:
                  ansible_host: 10.0.0.6
                  database_url: postgresql://bot@db1/db_b
                  service: systemd:bot
        """))
    tenants = load_fleet(path, group="shops")
    assert [(t.name, t.host, t.service) for t in tenants] == [("toko-a", "ssh://deploy@10.0.0.5", "compose:bot"),
                                                             ("toko-b", "ssh://deploy@10.0.0.6", "systemd:bot")]
    shows_no_secret(repr(tenants))
    with pytest.raises(FleetError, match="group 'shops': give it hosts:, vars: and children: only"):
        inventory.from_mapping({"shops": {"host": {}}}, "inventory.yml")
    path.write_text("all:\n  hosts: [toko-a\n")
    with pytest.raises(FleetError, match="inventory.yml: is not valid YAML"):
        load_fleet(path)


# --- refusals ---------------------------------------------------------------------------------------------

def test_malformed_toml_names_file_and_line(tmp_path):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(f'[[tenant]]\nname = "a"\ndatabase_url = "postgresql://bot:{PASSWORD}@db1/db_a\n')
    with pytest.raises(FleetError) as failure:
        load_toml(fleet)
    message = str(failure.value)
    assert str(fleet) in message and "is not valid TOML" in message and "line 3" in message
    shows_no_secret(message)


@pytest.mark.parametrize("body, expected", [
    ('[[tenant]]\ndatabase_url = "postgresql://db1/db_a"\n', r"\[\[tenant\]\] number 1 has no name"),
    ('[[tenant]]\nname = "a"\ndatabse_url = "postgresql://db1/db_a"\n', r"tenant 'a': unknown key\(s\) databse_url"),
    ('[defaults]\nhots = "x"\n[[tenant]]\nname = "a"\n', r"\[defaults\]: unknown key\(s\) hots"),
    ('[[tenant]]\nname = "a"\ndatabase_url = 5\n', "tenant 'a': database_url must be a string"),
    ('[[tenant]]\nname = "a b"\ndatabase_url = "postgresql://db1/db_a"\n', "tenant name 'a b' is not usable"),
    ('[[tenant]]\nname = "a"\ndatabase_url = "mysql://db1/db_a"\n', "tenant 'a': DATABASE_URL .* is not a postgresql"),
    ('[[tenant]]\nname = "a"\ndatabase_url = "postgresql://db1"\n', "names no database: end it with /db_<slug>"),
    ('[[tenant]]\nname = "a"\n', "tenant 'a': no database: no database_url; give database_url"),
    ("", "lists no tenants"),
])
def test_fleet_file_refusals(tmp_path, body, expected):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(body)
    with pytest.raises(FleetError, match=expected) as failure:
        load_fleet(fleet)
    assert str(failure.value).startswith(str(fleet))


def test_tenant_checks_its_own_database_url():
    with pytest.raises(FleetError, match=r"tenant 'a': DATABASE_URL postgresql://bot:\*\*\*@db1:x/db does not parse"):
        Tenant(name="a", database_url=f"postgresql://bot:{PASSWORD}@db1:x/db")


def test_duplicate_names_refused(tmp_path):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[[tenant]]\nname = "a"\ndatabase_url = "postgresql://db1/db_a"\n'
                     '[[tenant]]\nname = "a"\ndatabase_url = "postgresql://db1/db_b"\n')
    with pytest.raises(FleetError, match="tenant name 'a' is used twice.*rename one"):
        load_fleet(fleet)


def test_two_tenants_on_one_database_refused(tmp_path):
    # one slug provisioned for two gateways: both bot.env name db_toko on the same server
    for gateway in ("qris", "va"):
        provision(tmp_path, "toko", gateway, database_url=DB.format(pw=PASSWORD, slug="toko"))
    with pytest.raises(FleetError) as failure:
        load_fleet(tmp_path)
    message = str(failure.value)
    assert "'toko-qris' and 'toko-va' are both on database db_toko at db1.internal:5432" in message
    assert "give each shop its own database" in message
    shows_no_secret(message)


def test_missing_database_url_in_bot_env(tmp_path):
    folder = provision(tmp_path, "toko")
    env = folder / "bot.env"
    env.write_text("\n".join(line for line in env.read_text().splitlines() if not line.startswith("DATABASE_URL")))
    with pytest.raises(FleetError, match=r"tenant 'toko-qris': no database: no database_url and .*bot.env has no "
                                         "DATABASE_URL"):
        load_fleet(tmp_path)


def test_template_placeholder_refused(tmp_path):
    provision(tmp_path, "toko")  # provision_tenant.py run without --postgres-host/--postgres-user/--postgres-password
    with pytest.raises(FleetError, match="still bot.env.template's placeholder.*--postgres-host"):
        load_fleet(tmp_path)


def test_unencoded_password_explained(tmp_path):
    # provision_tenant.py writes the password as given: a '/' in it ends the URL's host part
    provision(tmp_path, "toko", database_url="postgresql://bot:pw9/Xy7@db1:5432/db_toko")
    expected = "tenant 'toko-qris': DATABASE_URL .* does not parse.*percent-encode"
    with pytest.raises(FleetError, match=expected) as failure:
        load_fleet(tmp_path)
    assert "pw9" not in str(failure.value) and "Xy7" not in str(failure.value)  # urlsplit quotes 'pw9' as the port


def test_bad_bot_env_line_is_not_shown(tmp_path):
    folder = provision(tmp_path, "toko", database_url=DB.format(pw=PASSWORD, slug="toko"))
    with (folder / "bot.env").open("a") as env:
        env.write(TOKEN + "\n")  # a token pasted without its key
    with pytest.raises(FleetError, match=r"bot.env line 13 is not KEY=VALUE") as failure:
        load_fleet(tmp_path)
    shows_no_secret(str(failure.value))


def test_deployments_refusals(tmp_path):
    with pytest.raises(FleetError, match="holds no bot-<slug>-<gateway>/bot.env.*--output"):
        load_fleet(tmp_path)
    (tmp_path / "bot-toko-qris").mkdir()
    with pytest.raises(FleetError, match="bot-toko-qris: has no bot.env"):
        load_fleet(tmp_path)
    with pytest.raises(FleetError, match="no such file or folder"):
        load_fleet(tmp_path / "nowhere.toml")


def test_ini_inventory_refusals(tmp_path):
    path = tmp_path / "hosts"
    path.write_text(f"[shops]\ntoko-a database_url=postgresql://bot:{PASSWORD}@db1/db_a stray\n")
    with pytest.raises(FleetError, match="host 'toko-a': 'stray' is not key=value"):
        load_fleet(path)
    path.write_text("[shops:weird]\ntoko-a\n")
    with pytest.raises(FleetError, match=r"section \[shops:weird\]: use \[group\]"):
        load_fleet(path)
    path.write_text("[shops]\ntoko-a database_url=postgresql://db1/db_a\n")
    with pytest.raises(FleetError, match="has no group 'nope'"):
        inventory.load_ini(path, group="nope")
    path.write_text("[a:children]\nb\n[b:children]\na\n[a]\nt database_url=postgresql://db1/db_a\n")
    with pytest.raises(FleetError, match="is its own child"):
        load_fleet(path)


# --- waves, rollout, shared resources --------------------------------------------------------------------

FIVE = [tenant(f"toko-{n}") for n in range(1, 6)]


def test_plan():
    assert [w.names for w in plan(FIVE, "1,4")] == [["toko-1"], ["toko-2", "toko-3", "toko-4", "toko-5"]]
    assert [len(w.tenants) for w in plan(FIVE, "1,5,all")] == [1, 4]
    assert [len(w.tenants) for w in plan(FIVE, "1,2,all")] == [1, 2, 2]
    assert [len(w.tenants) for w in plan(FIVE)] == [1, 4]
    assert parse_waves(" 1, 5 ,ALL") == [1, 5, None]
    for bad in ("", "0,all", "all,1", "1,,all", "x"):
        with pytest.raises(WaveError, match="is not a wave size"):
            parse_waves(bad)
    with pytest.raises(WaveError, match="covers 3 of 5 tenants: end it with all"):
        plan(FIVE, "1,2")


def runner(verdicts: dict[str, str]):
    ran = []

    def run_wave(wave):
        ran.append(wave.names)
        return {name: Result(verdicts.get(name, GO), f"rel-{name}", f"reports/rel-{name}") for name in wave.names}
    return run_wave, ran


def test_rollout_all_go():
    run_wave, ran = runner({})
    rollout = run(Rollout(plan(FIVE, "1,4")), run_wave)
    assert ran == [["toko-1"], ["toko-2", "toko-3", "toko-4", "toko-5"]]
    assert rollout.verdict == GO and rollout.halted_at is None


def test_no_go_in_wave_two_halts():
    run_wave, ran = runner({"toko-3": NO_GO})
    rollout = run(Rollout(plan(FIVE, "1,2,all")), run_wave)
    assert ran == [["toko-1"], ["toko-2", "toko-3"]]  # wave 3 never started
    verdicts = {row.name: (row.wave, row.verdict) for row in rollout.rows()}
    assert verdicts == {"toko-1": (1, GO), "toko-2": (2, GO), "toko-3": (2, NO_GO),
                        "toko-4": (3, NOT_STARTED), "toko-5": (3, NOT_STARTED)}
    assert rollout.verdict == NO_GO and rollout.halted_at == 2 and rollout.next_wave() is None
    with pytest.raises(WaveError, match=r"halted at wave 2 \(NO-GO: toko-3\)"):
        rollout.start(rollout.waves[2])
    rollout.rolled_back("toko-3")
    assert rollout.state("toko-3").verdict == ROLLED_BACK and rollout.verdict == NO_GO
    with pytest.raises(WaveError, match="toko-4' is not started: only a tenant that ran"):
        rollout.rolled_back("toko-4")


def test_no_go_in_wave_two_of_one_then_four():
    run_wave, _ = runner({"toko-4": NO_GO})
    rollout = run(Rollout(plan(FIVE, "1,4")), run_wave)
    assert [(r.name, r.verdict) for r in rollout.rows()] == [
        ("toko-1", GO), ("toko-2", GO), ("toko-3", GO), ("toko-4", NO_GO), ("toko-5", GO)]
    assert rollout.verdict == NO_GO


def test_rollout_order_enforced():
    rollout = Rollout(plan(FIVE, "1,4"))
    first, second = rollout.waves
    with pytest.raises(WaveError, match="wave 1 of this rollout comes next"):
        rollout.start(second)
    rollout.start(first)
    with pytest.raises(WaveError, match=r"wave 1 is not all GO yet \(waiting for toko-1\)"):
        rollout.start(second)
    with pytest.raises(WaveError, match="only a running tenant gets a verdict"):
        rollout.record("toko-2", Result(GO))
    with pytest.raises(WaveError, match="use GO or NO-GO"):
        rollout.record("toko-1", Result("maybe"))
    with pytest.raises(WaveError, match="no tenant 'toko-9'"):
        rollout.record("toko-9", Result(GO))
    rollout.record("toko-1", Result(GO))
    assert rollout.next_wave() == second


def test_unreported_tenant_is_no_go():
    rollout = run(Rollout(plan(FIVE, "1,all")), lambda wave: {})
    assert rollout.state("toko-1").verdict == NO_GO and rollout.names_with(NOT_STARTED) == [t.name for t in FIVE[1:]]


def test_shared_resources():
    fleet = [tenant("a", "db1", TOKEN), tenant("b", "db1", TOKEN), tenant("c", "db1"), tenant("d", "db2")]
    groups = shared_groups(fleet)
    assert groups == {"postgres:db1:5432": ["a", "b", "c"], f"telegram:{fingerprint(TOKEN)}": ["a", "b"]}
    shows_no_secret(json.dumps(groups))
    # at most 2 per server, 1 per token: a and b never together, c fills a's batch, d fits the first
    assert [[t.name for t in batch] for batch in batches(fleet, per_server=2)] == [["a", "c", "d"], ["b"]]
    assert [[t.name for t in batch] for batch in batches(fleet, per_server=1)] == [["a", "d"], ["b"], ["c"]]
    with pytest.raises(WaveError, match="each limit must be 1 or more"):
        batches(fleet, per_server=0)


# --- summary -----------------------------------------------------------------------------------------------

def test_summary_text_and_json():
    run_wave, _ = runner({"toko-3": NO_GO})
    rollout = run(Rollout(plan(FIVE, "1,2,all")), run_wave)
    rollout.rolled_back("toko-2")
    text = render_text(rollout)
    lines = text.splitlines()
    assert lines[0] == ("fleet NO-GO: 1 on the release (GO), 1 NO-GO, 1 rolled back, 2 not started of 5 tenants; "
                        "halted at wave 2 (NO-GO: toko-3); the earlier waves stay on the release")
    assert lines[1].split() == ["tenant", "wave", "verdict", "deployment", "id", "reports"]
    assert lines[2].split() == ["toko-1", "1", "GO", "rel-toko-1", "reports/rel-toko-1"]
    assert lines[5].split() == ["toko-4", "3", "not", "started", "-", "-"]
    assert len({line.index("rel-") for line in lines[2:5]}) == 1  # columns aligned
    raw = render_json(rollout)
    data = json.loads(raw)
    assert data == summary(rollout)
    assert data["counts"] == {GO: 1, NO_GO: 1, ROLLED_BACK: 1, NOT_STARTED: 2, "running": 0}
    assert data["tenants"][2] == {"name": "toko-3", "wave": 2, "verdict": NO_GO, "deployment_id": "rel-toko-3",
                                  "reports": "reports/rel-toko-3"}
    assert sum('"name": ' in line for line in raw.splitlines()) == 5  # one line per tenant
    go = run(Rollout(plan(FIVE, "1,4")), runner({})[0])
    assert render_text(go).splitlines()[0] == "fleet GO: 5 on the release (GO), 0 not started of 5 tenants"

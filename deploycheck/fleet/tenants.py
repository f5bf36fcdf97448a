"""The tenants of a fleet: one bot-auto-order shop each, with its own database, host, service and settings.

Three sources give the same list of `Tenant`s, in the order the file names them (the first is the canary):
a fleet TOML file (`[[tenant]]` tables), an Ansible inventory (see inventory.py), or the `deployments/`
folder that bot-auto-order's `scripts/provision_tenant.py` writes (`bot-<slug>-<gateway>/bot.env`).

Whatever the source, `check_fleet` refuses what would make a rollout unsafe: two tenants with one name
(their reports and ledgers would mix) and two tenants on one database (a migration would run twice on it,
and a rollback of one would restore the other's data).
"""
from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from deploycheck.redact import Redactor, password_of
from deploycheck.infra import envfile
from deploycheck.infra.dsn import Dsn

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
LOOPBACK = {"", "localhost", "127.0.0.1", "::1", "[::1]"}
# bot.env.template's DATABASE_URL, left as it is when provision_tenant.py was not given all of
# --postgres-host, --postgres-user and --postgres-password.
PLACEHOLDER = ("postgres-host", "db_store")
TOML_KEYS = {"name", "database_url", "bot_env", "host", "service", "compose_file", "bot_dir"}
DEFAULT_SERVICE = "systemd:bot-auto-order"


class FleetError(ValueError):
    """The fleet cannot be read or is unsafe to roll out: the message names the file, the tenant, what is
    wrong and what to do. It never holds a password or a token."""


@dataclass(frozen=True)
class Tenant:
    """One shop. `database_url` holds the password, so it is left out of the repr; the Telegram token is
    never kept at all, only its fingerprint (enough to tell which tenants share one bot token)."""

    name: str
    database_url: str = field(repr=False)
    host: str = "local"                     # a pytest-testinfra spec, as --host
    service: str = DEFAULT_SERVICE          # as --service: systemd:UNIT or compose:SERVICE
    compose_file: Path | None = None
    bot_dir: Path | None = None
    bot_env: Path | None = None
    token_fingerprint: str | None = None

    def __post_init__(self):
        # The name goes into test ids, report folders and xdist group names: keep it to safe characters.
        if not NAME.match(self.name):
            raise FleetError(f"tenant name {self.name!r} is not usable: use letters, digits, '.', '_' and '-' "
                             "(at most 63, starting with a letter or digit)")
        try:
            database_parts(self.database_url)  # here, so database_server and database_name cannot fail later
        except ValueError as exc:
            raise FleetError(f"tenant {self.name!r}: DATABASE_URL {self.database} {exc}") from None

    def __repr__(self) -> str:
        shown = ", ".join(f"{key}={value!r}" for key, value in self.public().items() if value is not None)
        return f"Tenant({shown})"

    @property
    def database(self) -> str:
        """The database URL with its password masked: for reports, errors and summaries."""
        return Redactor((password_of(self.database_url) or "",)).text(self.database_url)

    @property
    def connection(self) -> Dsn:
        """The tenant's database as a connection value (masked in its repr)."""
        return Dsn.parse(self.database_url)

    @property
    def database_name(self) -> str:
        return self.connection.database

    @property
    def database_server(self) -> str:
        """host:port of the PostgreSQL server. A loopback address means the server on the tenant's own host,
        so it is qualified by that host: localhost on two machines is two servers."""
        host, port, _ = database_parts(self.database_url)
        if host in LOOPBACK:
            return f"{self.host}/localhost:{port}"
        return f"{host}:{port}"

    def public(self) -> dict:
        """Everything about the tenant that may be shown: the database without its password, no token."""
        return {"name": self.name, "database": self.database, "host": self.host, "service": self.service,
                "compose_file": str(self.compose_file) if self.compose_file else None,
                "bot_dir": str(self.bot_dir) if self.bot_dir else None,
                "bot_env": str(self.bot_env) if self.bot_env else None,
                "token_fingerprint": self.token_fingerprint}


def fingerprint(token: str | None) -> str | None:
    """A short, one-way name for a bot token: tenants with the same one share Telegram's rate limit."""
    if not token or not token.strip():
        return None
    return "sha256:" + hashlib.sha256(token.strip().encode()).hexdigest()[:12]


def database_parts(url: str) -> tuple[str, int, str]:
    """(host, port, database) of a PostgreSQL URL, or ValueError saying what is wrong with it."""
    # provision_tenant.py writes the password as given, not URL-encoded: '/', '?' or '#' in it break the URL;
    # the DsnError says so without quoting the URL (what urlsplit reads as its port is then a piece of the password).
    dsn = Dsn.parse(url)
    if not dsn.database:
        raise ValueError("names no database: end it with /db_<slug>")
    return dsn.host, dsn.port, dsn.database


def read_bot_env(path: Path) -> dict[str, str]:
    """A tenant's bot.env (deploycheck.infra.envfile), its problems as fleet errors."""
    try:
        return envfile.read(path)
    except envfile.EnvFileError as exc:
        raise FleetError(str(exc)) from None


def make_tenant(source: str, name: str, settings: dict, base: Path) -> Tenant:
    """A tenant from one entry of any source: `settings` holds database_url and/or bot_env, and optionally
    host, service, compose_file, bot_dir. Relative paths are relative to the fleet file's folder."""
    where = f"{source}: tenant {name!r}"
    paths = {key: resolve(base, settings.get(key)) for key in ("bot_env", "compose_file", "bot_dir")}
    env = read_bot_env(paths["bot_env"]) if paths["bot_env"] else {}
    # A database_url in the fleet file wins over the bot.env's: it is the one the operator wrote for deploycheck.
    url = (settings.get("database_url") or env.get("DATABASE_URL") or "").strip()
    secrets = (password_of(url) or "", env.get("TELEGRAM_BOT_TOKEN", ""))
    if not url:
        also = f" and {paths['bot_env']} has no DATABASE_URL" if paths["bot_env"] else ""
        raise FleetError(f"{where}: no database: no database_url{also}; "
                         "give database_url = \"postgresql://...\" or a bot_env whose DATABASE_URL names it")
    try:
        tenant = Tenant(name=name, database_url=url, host=str(settings.get("host") or "local"),
                        service=str(settings.get("service") or DEFAULT_SERVICE), compose_file=paths["compose_file"],
                        bot_dir=paths["bot_dir"], bot_env=paths["bot_env"],
                        token_fingerprint=fingerprint(env.get("TELEGRAM_BOT_TOKEN")))
    except FleetError as exc:
        raise FleetError(Redactor(secrets).text(f"{source}: {exc}")) from None
    if tenant.connection.host == PLACEHOLDER[0] and tenant.database_name == PLACEHOLDER[1]:
        raise FleetError(f"{where}: DATABASE_URL is still bot.env.template's placeholder (postgres-host/db_store): "
                         "provision with --postgres-host, --postgres-user and --postgres-password, or edit bot.env")
    return tenant


def resolve(base: Path, value) -> Path | None:
    if value in (None, ""):
        return None
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path


def check_fleet(tenants: list[Tenant], source: str) -> list[Tenant]:
    """Refuse an empty fleet, a name used twice, and two tenants on one database."""
    if not tenants:
        raise FleetError(f"{source}: lists no tenants: add at least one")
    by_name: dict[str, Tenant] = {}
    by_database: dict[tuple[str, str], Tenant] = {}
    for tenant in tenants:
        if tenant.name in by_name:
            raise FleetError(f"{source}: tenant name {tenant.name!r} is used twice: each tenant keeps its own "
                             "reports and ledger under its name; rename one")
        by_name[tenant.name] = tenant
        key = (tenant.database_server, tenant.database_name)
        if key in by_database:
            other = by_database[key]
            raise FleetError(f"{source}: tenants {other.name!r} and {tenant.name!r} are both on database "
                             f"{tenant.database_name} at {tenant.database_server}: a release would migrate it twice "
                             "and a rollback of one would restore the other; give each shop its own database")
        by_database[key] = tenant
    return tenants


def load_toml(path: Path) -> list[Tenant]:
    """A fleet file: an optional [defaults] table, then one [[tenant]] table per shop, canary first."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FleetError(f"{path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise FleetError(f"{path}: is not valid TOML ({exc}): fix that line") from None
    defaults = data.get("defaults", {})
    entries = data.get("tenant", [])
    if not isinstance(defaults, dict) or not isinstance(entries, list):
        raise FleetError(f"{path}: write [defaults] as a table and each tenant as a [[tenant]] table")
    # A typo (databse_url) would otherwise silently fall back to a default: unknown keys are refused.
    unknown = sorted(set(defaults) - (TOML_KEYS - {"name"}))
    if unknown:
        raise FleetError(f"{path}: [defaults]: unknown key(s) {', '.join(unknown)}: "
                         f"use {', '.join(sorted(TOML_KEYS - {'name'}))}")
    tenants = []
    for number, entry in enumerate(entries, start=1):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise FleetError(f"{path}: [[tenant]] number {number} has no name: add name = \"<shop>\"")
        unknown = sorted(set(entry) - TOML_KEYS)
        if unknown:
            raise FleetError(f"{path}: tenant {name!r}: unknown key(s) {', '.join(unknown)}: "
                             f"use {', '.join(sorted(TOML_KEYS))}")
        not_text = sorted(key for key, value in {**defaults, **entry}.items() if not isinstance(value, str))
        if not_text:
            raise FleetError(f"{path}: tenant {name!r}: {', '.join(not_text)} must be a string: quote the value")
        tenants.append(make_tenant(str(path), name, {**defaults, **entry}, path.parent))
    return check_fleet(tenants, str(path))


def load_deployments(folder: Path, host: str = "local") -> list[Tenant]:
    """provision_tenant.py's output: each bot-<slug>-<gateway>/ with a bot.env is a tenant named
    <slug>-<gateway>, run by docker compose (service `bot` of that folder's compose.yml) on `host`."""
    folder = Path(folder)
    tenants = []
    for bot in sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("bot-")):
        if not (bot / "bot.env").is_file():
            raise FleetError(f"{bot}: has no bot.env (provision_tenant.py writes one): restore it, or move the "
                             "folder out of deployments/")
        settings = {"bot_env": bot / "bot.env", "service": "compose:bot", "compose_file": bot / "compose.yml",
                    "host": host}
        tenants.append(make_tenant(str(folder), bot.name.removeprefix("bot-"), settings, folder))
    if not tenants:
        raise FleetError(f"{folder}: holds no bot-<slug>-<gateway>/bot.env: give the deployments/ folder that "
                         "scripts/provision_tenant.py wrote (its --output)")
    return check_fleet(tenants, str(folder))


"""A PostgreSQL connection value: a libpq URL (postgresql:// or postgres://), parsed once.

Every part is kept as the URL spells it (user, password and database percent-encoded; the query as written,
sslmode=require and every other parameter), so a DSN derived from another (the same server's other database,
the same database at an SSH tunnel's address) differs from it only in the part that was changed. str() and
repr() show the password as redact.MASK, as the Redactor writes a URL's password; `url` is the whole URL, for
the driver and nothing else.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from deploycheck.redact import MASK

SCHEMES = ("postgresql", "postgres")
DEFAULT_PORT = 5432
# The query parameters libpq also reads from the environment (libpq's "Environment Variables").
PARAM_ENV = {"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
             "sslcrl": "PGSSLCRL", "sslnegotiation": "PGSSLNEGOTIATION", "requiressl": "PGREQUIRESSL",
             "channel_binding": "PGCHANNELBINDING", "gssencmode": "PGGSSENCMODE", "passfile": "PGPASSFILE",
             "service": "PGSERVICE", "options": "PGOPTIONS", "application_name": "PGAPPNAME",
             "connect_timeout": "PGCONNECT_TIMEOUT", "target_session_attrs": "PGTARGETSESSIONATTRS",
             "client_encoding": "PGCLIENTENCODING", "krbsrvname": "PGKRBSRVNAME"}
POSTGRES_VARS = ("POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD")


class DsnError(ValueError):
    """Not a libpq URL. The message never quotes the text: a raw '/' in a password makes urlsplit read what
    follows as the port, and its own message would show that piece of the password."""


def _encode(text: str) -> str:
    return quote(text, safe="")


@dataclass(frozen=True)
class Dsn:
    """postgresql://user:password@host:port/database?query, each part as the URL spells it."""

    scheme: str = "postgresql"
    user_part: str = ""
    password_part: str | None = field(default=None, repr=False)  # None: no ':' after the user
    host_part: str = ""         # an IPv6 address in its brackets
    port_part: str = ""
    database_part: str = ""
    query: str = ""             # without its '?'

    @classmethod
    def parse(cls, text: "str | Dsn") -> "Dsn":
        if isinstance(text, Dsn):
            return text
        scheme, sep, _ = str(text).partition("://")
        if not sep or scheme.lower() not in SCHEMES:
            raise DsnError("is not a postgresql:// URL")
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 (raises ValueError on what is not a port)
        except ValueError:
            parts = None
        if parts is None or parts.fragment or "#" in text:
            raise DsnError("does not parse as a URL (no valid host:port); percent-encode the password's special "
                           "characters (@ as %40, # as %23, / as %2F, ? as %3F, % as %25, a space as %20)")
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        if hostinfo.startswith("["):
            host, _, rest = hostinfo.partition("]")
            host, port = host + "]", rest.partition(":")[2]
        else:
            host, _, port = hostinfo.partition(":")
        return cls(scheme=parts.scheme, user_part=user, password_part=password if colon else None,
                   host_part=host, port_part=port, database_part=parts.path[1:] if parts.path else "",
                   query=parts.query)

    @classmethod
    def build(cls, host: str = "", port: int | str | None = None, user: str = "", password: str | None = None,
              database: str = "", query: str = "", scheme: str = "postgresql") -> "Dsn":
        """From the parts as they are (not encoded): user, password and database are percent-encoded here."""
        return cls(scheme=scheme, user_part=_encode(user), password_part=_encode(password) if password else None,
                   host_part=f"[{host}]" if ":" in host and not host.startswith("[") else host,
                   port_part="" if port in (None, "") else str(port), database_part=_encode(database), query=query)

    @classmethod
    def from_postgres_env(cls, env: Mapping[str, str], database: str = "") -> "Dsn | None":
        """The checklist's POSTGRES_* variables (step 7.1) as a DSN, or None when they name no database; each
        value as it is (the URL percent-encodes it), so any character works."""
        if not (env.get("POSTGRES_HOST") or env.get("POSTGRES_DB")):
            return None
        return cls.build(host=env.get("POSTGRES_HOST", "localhost"), port=env.get("POSTGRES_PORT", "5432"),
                         user=env.get("POSTGRES_USER", "postgres"), password=env.get("POSTGRES_PASSWORD"),
                         database=env.get("POSTGRES_DB", database))

    # What it names, decoded
    @property
    def user(self) -> str:
        return unquote(self.user_part)

    @property
    def password(self) -> str | None:
        return unquote(self.password_part) if self.password_part is not None else None

    @property
    def host(self) -> str:
        """As urlsplit's hostname: lower case, an IPv6 address without its brackets; "" when none is given."""
        return self.host_part.strip("[]").lower()

    @property
    def port(self) -> int:
        return int(self.port_part) if self.port_part else DEFAULT_PORT

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def database(self) -> str:
        return unquote(self.database_part)

    @property
    def params(self) -> dict[str, str]:
        """The query's parameters (sslmode, ...), decoded."""
        return dict(parse_qsl(self.query, keep_blank_values=True))

    # Derived values: only the part named changes
    def with_database(self, name: str) -> "Dsn":
        """The same server, user, password and parameters; another database."""
        return replace(self, database_part=_encode(name))

    def with_address(self, host: str, port: int) -> "Dsn":
        return replace(self, host_part=f"[{host}]" if ":" in host else host, port_part=str(port))

    def moved(self, old: tuple[str, int], new: tuple[str, int]) -> "Dsn":
        """At `new` if this DSN names the address `old` (an SSH tunnel's two ends), else as it is."""
        return self.with_address(*new) if self.address == old else self

    def without_password(self) -> "Dsn":
        return replace(self, password_part=None)

    # Forms of it
    def _text(self, password: str | None) -> str:
        auth = self.user_part + (f":{password}" if password is not None else "")
        netloc = self.host_part + (f":{self.port_part}" if self.port_part else "")
        netloc = f"{auth}@{netloc}" if auth else netloc
        path = f"/{self.database_part}" if self.database_part else ""
        return f"{self.scheme}://{netloc}{path}" + (f"?{self.query}" if self.query else "")

    @property
    def url(self) -> str:
        """The whole URL, password included: for the driver and the tools, never for a message."""
        return self._text(self.password_part)

    def __str__(self) -> str:
        return self._text(MASK if self.password_part else self.password_part)

    def __repr__(self) -> str:
        return f"Dsn({str(self)!r})"

    def describe(self) -> str:
        """database on host:port as user, without the password: for messages."""
        return f"database {self.database or '?'} on {self.host or 'localhost'}:{self.port} as {self.user or '?'}"

    def libpq_env(self, environ: Mapping[str, str] | None = None) -> tuple[str, dict[str, str]]:
        """The URL without its password, and the environment with the password in PGPASSWORD: nothing secret
        on a command line (`pg_dump -d URL`). libpq reads PGPASSWORD as it is: the decoded password."""
        env = dict(os.environ if environ is None else environ)
        if not self.password_part:
            return self.url, env
        env["PGPASSWORD"] = self.password
        return self.without_password().url, env

    def pg_env(self) -> dict[str, str]:
        """libpq's own variables for this DSN (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD and the query's
        parameters: PGSSLMODE, ...), for a tool given no URL at all; the parts it does not name are left out."""
        env = {"PGHOST": self.host, "PGPORT": self.port_part, "PGDATABASE": self.database, "PGUSER": self.user,
               "PGPASSWORD": self.password or ""}
        env.update({PARAM_ENV[key]: value for key, value in self.params.items() if key in PARAM_ENV})
        return {key: value for key, value in env.items() if value}

    def postgres_env(self) -> dict[str, str]:
        """The checklist's POSTGRES_* variables (step 7.1) for this DSN: decoded, as the runner takes them
        (it does not decode them)."""
        return {"POSTGRES_HOST": self.host, "POSTGRES_PORT": str(self.port), "POSTGRES_DB": self.database,
                "POSTGRES_USER": self.user, "POSTGRES_PASSWORD": self.password or ""}


def libpq_env(dsn: "str | Dsn", environ: Mapping[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """Dsn.libpq_env for a DSN given as text (what checks/backup.py has always offered)."""
    return Dsn.parse(dsn).libpq_env(environ)

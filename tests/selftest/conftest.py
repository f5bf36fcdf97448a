"""Shared pieces for the suite's own tests: one throwaway PostgreSQL server per self-test session."""
from __future__ import annotations

import uuid

import asyncpg
import pytest

# Loaded once, here: pytester's in-process runs drop and re-import modules they load, and cryptography's
# compiled bindings reject classes from a second import of its Python layer (the rehearsal signs records).
from cryptography.hazmat.primitives import serialization  # noqa: F401
from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: F401
from deploycheck.embedded import EmbeddedPostgres


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server (embedded binaries) shared by the self-tests."""
    with EmbeddedPostgres() as server:
        yield server


@pytest.fixture
async def fresh_db(pg_server):
    """An empty database of its own for one test; returns its DSN and drops it afterwards."""
    name = "selftest_" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(pg_server.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield pg_server.dsn_for(name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()

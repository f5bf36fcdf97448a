#!/bin/sh
# deploycheck's PostgreSQL image (deploycheck/infra/images.py): what testcontainers' PostgreSQL module expects
# (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB) on the host network, on PGPORT, listening on 127.0.0.1 only.
set -eu
bin="/usr/lib/postgresql/$PG_MAJOR/bin"
data=/var/lib/postgresql/data
port="${PGPORT:-5432}"
user="${POSTGRES_USER:-postgres}"
if [ ! -s "$data/PG_VERSION" ]; then
  mkdir -p "$data" && chown postgres "$data"
  printf '%s' "${POSTGRES_PASSWORD:-postgres}" > /tmp/pw && chown postgres /tmp/pw
  su postgres -c "$bin/initdb -D $data -U $user --pwfile=/tmp/pw -A scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null"
  rm /tmp/pw
fi
options="-p $port -k /tmp -c listen_addresses=127.0.0.1"
db="${POSTGRES_DB:-postgres}"
if [ "$db" != postgres ]; then  # made once, before the server is announced ready
  su postgres -c "$bin/pg_ctl -D $data -o '$options' -w start >/dev/null"
  PGPASSWORD="${POSTGRES_PASSWORD:-postgres}" psql -h 127.0.0.1 -p "$port" -U "$user" -d postgres -qc \
    "CREATE DATABASE \"$db\"" 2>/dev/null || true
  su postgres -c "$bin/pg_ctl -D $data -w stop >/dev/null"
fi
exec su postgres -c "exec $bin/postgres -D $data $options"

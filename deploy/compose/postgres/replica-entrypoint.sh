#!/bin/bash
# The streaming replica: on first start clone the primary with pg_basebackup (-R writes
# standby.signal and primary_conninfo), then run as a hot standby that serves read-only
# queries. Later starts just resume streaming from the replication slot.
set -euo pipefail
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
PRIMARY_HOST="${PRIMARY_HOST:-pg-primary}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -h "$PRIMARY_HOST" -p 5432 -q; do
    echo "replica: waiting for $PRIMARY_HOST"; sleep 1
  done
  rm -rf "${PGDATA:?}"/*
  PGPASSWORD="$GRID_REPLICATION_PASSWORD" pg_basebackup \
    --host="$PRIMARY_HOST" --username=replicator --pgdata="$PGDATA" \
    --wal-method=stream --slot=replica_1 --write-recovery-conf --checkpoint=fast --progress
  chmod 0700 "$PGDATA"
fi

# max_connections etc. must be >= the primary's (a hot standby refuses to start otherwise).
exec postgres \
  -c hot_standby=on \
  -c hot_standby_feedback=on \
  -c max_connections=500 \
  -c max_wal_senders=10 \
  -c max_replication_slots=10 \
  -c shared_buffers=512MB

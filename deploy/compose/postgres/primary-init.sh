#!/bin/bash
# Runs once, when the primary's data directory is initialised (docker-entrypoint-initdb.d):
# a replication role for the streaming replica, a physical replication slot so the primary
# keeps the WAL the replica has not received yet, and the pg_hba rule for replication (the
# image's default rules already require a password for every other remote connection).
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD '${GRID_REPLICATION_PASSWORD}';
SELECT pg_create_physical_replication_slot('replica_1');
-- Read-only role for what may run on the replica (dashboards, gridctl audit verify/export).
CREATE ROLE grid_reader WITH LOGIN PASSWORD '${GRID_READER_PASSWORD}';
GRANT pg_read_all_data TO grid_reader;
SQL

cat >> "$PGDATA/pg_hba.conf" <<HBA
# griddispatch: the streaming replica
host replication replicator all scram-sha-256
HBA

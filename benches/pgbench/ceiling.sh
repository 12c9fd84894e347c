#!/bin/bash
# What Postgres alone can do of the queue benchmark's work on this machine: ceiling.pgb (one
# group of 170 tasks: push, claim, complete, telemetry) run by several pgbench clients at once
# with nothing else running, so Postgres has both cores. Prints tasks/s with and without the
# telemetry rows. Usage: benches/pgbench/ceiling.sh [clients] [seconds]
# Connection: the PG* environment variables (PGHOST, PGPORT, PGUSER), as for psql.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
clients=${1:-4}
seconds=${2:-20}
db=ikigai_pgbench_ceiling_$$
for telemetry in with without; do
    psql -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    psql -q -d "$db" -f "$here/../../schema.sql" >/dev/null 2>&1
    psql -q -d "$db" -f "$here/ceiling_setup.sql" >/dev/null
    script=$here/ceiling.pgb
    if [ "$telemetry" = without ]; then
        script=$(mktemp)
        sed '/^-- telemetry:/,$d' "$here/ceiling.pgb" >"$script"
        trap 'rm -f "$script"' EXIT
    fi
    tps=$(pgbench -n -M prepared -c "$clients" -j "$clients" -T "$seconds" -f "$script" "$db" 2>/dev/null |
        sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    echo "$telemetry telemetry, $clients clients: $(awk -v t="$tps" 'BEGIN { printf "%.0f", t * 170 }') tasks/s"
done
psql -q -d postgres -c "DROP DATABASE IF EXISTS $db"

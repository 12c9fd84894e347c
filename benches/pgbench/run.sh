#!/bin/bash
# Runs each queue group script on a fresh database, alternating, and prints pgbench's latency
# per group (170 tasks) and per statement. Usage: benches/pgbench/run.sh [rounds] [groups]
# Connection: the PG* environment variables (PGHOST, PGPORT, PGUSER), as for psql.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rounds=${1:-2}
groups=${2:-600}
db=ikigai_pgbench_$$
for _ in $(seq "$rounds"); do
    for script in group_current group_claim_table; do
        psql -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
        psql -q -d "$db" -f "$here/../../schema.sql" >/dev/null 2>&1
        psql -q -d "$db" -f "$here/setup.sql" >/dev/null
        echo "== $script"
        pgbench -n -r -f "$here/$script.pgb" -t "$groups" "$db" 2>/dev/null |
            sed -n '/latency average/p;/statement latencies/,$p' | cut -c1-70
    done
done
psql -q -d postgres -c "DROP DATABASE IF EXISTS $db"

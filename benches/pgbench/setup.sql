-- Setup for the queue group scripts beside this file (see docs/benchmarks.md, queue_throughput):
-- run on a database that has schema.sql applied. Two groups' worth of tasks to start from; task
-- ids are built from their number so that each group knows which tasks it claims and completes.
CREATE SEQUENCE IF NOT EXISTS grp;
CREATE TABLE IF NOT EXISTS task_claim (
    task_id     UUID PRIMARY KEY,
    agent       TEXT NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL,
    lease_id    UUID NOT NULL,
    via         TEXT
);
INSERT INTO task_queue (id, queue_name, payload)
    SELECT lpad(to_hex(g), 32, '0')::uuid, 'bench', jsonb_build_object('t', g, 'n', g)
    FROM generate_series(1, 340) g;

-- Setup for ceiling.pgb (see ceiling.sh): run on a database that has schema.sql applied. Each
-- pgbench client (up to 16) counts its own groups and owns its own range of task ids, so that
-- the clients never touch each other's tasks; two groups' worth of tasks to start from.
DO $$
BEGIN
    FOR c IN 0..15 LOOP
        EXECUTE format('CREATE SEQUENCE IF NOT EXISTS grp%s', c);
        INSERT INTO task_queue (id, queue_name, payload)
            SELECT lpad(to_hex(c::bigint * 4294967296 + g), 32, '0')::uuid, 'bench',
                jsonb_build_object('t', g, 'n', g)
            FROM generate_series(1, 340) g;
    END LOOP;
END
$$;

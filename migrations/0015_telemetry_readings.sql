-- Telemetry as one row per reading: (machine, key, time, value). A device's message {"temperature": 71.5,
-- "pressure": 2.1} becomes two rows. Reading one key over a long range then touches only that key's rows,
-- TimescaleDB can compress segment by machine and key with the values as a column of numbers, and the
-- keys a machine sends can be listed. The readings already stored are carried over.
CREATE TABLE telemetry_reading (
    machine_id integer NOT NULL,
    key        varchar(100) NOT NULL,
    ts         timestamptz NOT NULL,
    value      double precision NOT NULL
);

INSERT INTO telemetry_reading (machine_id, key, ts, value)
SELECT t.machine_id, e.key, t.ts, (e.value #>> '{}')::double precision
FROM telemetry t, jsonb_each(t.data) e
WHERE jsonb_typeof(t.data) = 'object' AND jsonb_typeof(e.value) = 'number' AND length(e.key) BETWEEN 1 AND 100;

DROP TABLE telemetry;
ALTER TABLE telemetry_reading RENAME TO telemetry;
CREATE INDEX telemetry_machine_key_ts ON telemetry (machine_id, key, ts);
CREATE INDEX telemetry_machine_ts ON telemetry (machine_id, ts);

-- What the server's own maintenance jobs (retention, compression, telemetry rollups) did last: one row per
-- job, shown by /health.
CREATE TABLE maintenance_run (
    job         text PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    ok          boolean NOT NULL DEFAULT true,
    rows        bigint NOT NULL DEFAULT 0,
    chunks      integer NOT NULL DEFAULT 0,
    message     text NOT NULL DEFAULT ''
);

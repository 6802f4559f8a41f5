-- Hourly rollups of telemetry: per machine, key and hour, the count, sum, lowest, highest and last value and
-- the first and last reading's time. Long ranges and the list of a machine's keys are answered from here
-- instead of from every reading.
--
-- This is the plain-PostgreSQL form, kept up to date by the server's own scheduler
-- (core::store::telemetry::refresh_rollups). On TimescaleDB with the Timescale licence,
-- core::store::telemetry::prepare_rollups replaces this table with a continuous aggregate of the same name
-- and columns.
CREATE TABLE telemetry_hourly (
    machine_id integer NOT NULL,
    key        varchar(100) NOT NULL,
    hour       timestamptz NOT NULL,
    readings   bigint NOT NULL,
    total      double precision NOT NULL,
    lowest     double precision NOT NULL,
    highest    double precision NOT NULL,
    last_value double precision NOT NULL,
    first_at   timestamptz NOT NULL,
    last_at    timestamptz NOT NULL,
    PRIMARY KEY (machine_id, key, hour)
);

-- How far the plain rollup table is complete: hours before `complete_until` are read from telemetry_hourly,
-- readings from then on from telemetry itself. No row: nothing rolled up yet.
CREATE TABLE telemetry_rollup (
    only_row       boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    complete_until timestamptz NOT NULL
);

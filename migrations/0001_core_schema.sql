-- The reference system's data model (machines, groups, codes, activities, jobs, production, shifts,
-- tablets, users, settings) in PostgreSQL types, plus ingest's own bookkeeping (request ids, raw events)
-- and the telemetry time series. Times are timestamptz (UTC inside).

CREATE TABLE settings (
    id          smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    first_start timestamptz NOT NULL
);

CREATE TABLE app_user (
    id            serial PRIMARY KEY,
    username      varchar(64) NOT NULL UNIQUE,
    password_hash text NOT NULL,
    admin         boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE machine_group (
    id   serial PRIMARY KEY,
    name varchar(100) NOT NULL UNIQUE
);

CREATE TABLE shift (
    id   serial PRIMARY KEY,
    name varchar(100) NOT NULL UNIQUE
);

-- From `start_minute` on `day` (0 = Monday) the schedule is `shift_state` until the next period starts.
CREATE TABLE shift_period (
    id           serial PRIMARY KEY,
    shift_id     integer NOT NULL REFERENCES shift (id) ON DELETE CASCADE,
    day          smallint NOT NULL CHECK (day BETWEEN 0 AND 6),
    start_minute smallint NOT NULL CHECK (start_minute BETWEEN 0 AND 1439),
    shift_state  smallint NOT NULL CHECK (shift_state IN (1, 3)),
    UNIQUE (shift_id, day, start_minute)
);

CREATE TABLE activity_code (
    id                integer PRIMARY KEY,
    short_description varchar(100) NOT NULL UNIQUE,
    long_description  text NOT NULL DEFAULT '',
    machine_state     smallint NOT NULL CHECK (machine_state BETWEEN 1 AND 4),
    downtime_category varchar(32) NOT NULL DEFAULT 'none',
    graph_colour      varchar(16) NOT NULL DEFAULT '#FFFFFF',
    active            boolean NOT NULL DEFAULT true
);

CREATE TABLE machine (
    id                        serial PRIMARY KEY,
    name                      varchar(100) NOT NULL UNIQUE,
    -- how MQTT topics may name the machine besides its id
    topic_name                varchar(100) UNIQUE CHECK (topic_name ~ '^[a-z0-9][a-z0-9_-]*$' AND topic_name !~ '^[0-9]+$'),
    group_id                  integer REFERENCES machine_group (id),
    shift_id                  integer REFERENCES shift (id),
    schedule_state            smallint NOT NULL DEFAULT 3 CHECK (schedule_state IN (1, 3)),
    end_job_on_shift_end      boolean NOT NULL DEFAULT true,
    job_start_activity_id     integer NOT NULL DEFAULT 1 REFERENCES activity_code (id),
    autofill_job_start_input  boolean NOT NULL DEFAULT false,
    autofill_job_start_amount double precision NOT NULL DEFAULT 0,
    workflow_type             varchar(32) NOT NULL DEFAULT 'default'
        CHECK (workflow_type IN ('default', 'pausable', 'running_total')),
    job_start_input_type      varchar(32) NOT NULL DEFAULT 'cycle_time_seconds'
        CHECK (job_start_input_type IN ('cycle_time_seconds', 'cycle_time_minutes', 'cycle_time_hours',
                                        'parts_per_second', 'parts_per_minute', 'parts_per_hour',
                                        'planned_qty_minutes', 'no_cycle_time')),
    job_number_input_type     varchar(16) NOT NULL DEFAULT 'number' CHECK (job_number_input_type IN ('text', 'number')),
    active                    boolean NOT NULL DEFAULT true,
    active_job_id             bigint,
    active_user_id            integer REFERENCES app_user (id),
    -- the open activity, denormalised so one locked row gives the whole current state
    current_code_id           integer NOT NULL REFERENCES activity_code (id),
    current_since             timestamptz NOT NULL,
    current_user_id           integer REFERENCES app_user (id),
    created_at                timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE machine_activity_code_exclusion (
    machine_id       integer NOT NULL REFERENCES machine (id) ON DELETE CASCADE,
    activity_code_id integer NOT NULL REFERENCES activity_code (id),
    PRIMARY KEY (machine_id, activity_code_id)
);

CREATE TABLE job (
    id                 bigserial PRIMARY KEY,
    machine_id         integer NOT NULL REFERENCES machine (id),
    job_number         varchar(100) NOT NULL,
    part_number        varchar(100),
    ideal_cycle_time_s double precision CHECK (ideal_cycle_time_s IS NULL OR ideal_cycle_time_s >= 0),
    start_time         timestamptz NOT NULL,
    end_time           timestamptz CHECK (end_time IS NULL OR end_time >= start_time),
    active             boolean NOT NULL DEFAULT true,
    notes              text NOT NULL DEFAULT ''
);
-- at most one running job per machine
CREATE UNIQUE INDEX job_one_active_per_machine ON job (machine_id) WHERE active;
CREATE INDEX job_machine_start ON job (machine_id, start_time);

ALTER TABLE machine ADD CONSTRAINT machine_active_job_fk FOREIGN KEY (active_job_id) REFERENCES job (id);

-- A time segment in one activity code; end_time NULL is the machine's open activity.
CREATE TABLE activity (
    id               bigserial PRIMARY KEY,
    machine_id       integer NOT NULL REFERENCES machine (id),
    activity_code_id integer NOT NULL REFERENCES activity_code (id),
    start_time       timestamptz NOT NULL,
    end_time         timestamptz CHECK (end_time IS NULL OR end_time >= start_time),
    user_id          integer REFERENCES app_user (id),
    notes            text NOT NULL DEFAULT ''
);
CREATE INDEX activity_machine_start ON activity (machine_id, start_time);
CREATE UNIQUE INDEX activity_one_open_per_machine ON activity (machine_id) WHERE end_time IS NULL;

-- Parts made in [start_time, end_time].
CREATE TABLE production_quantity (
    id               bigserial PRIMARY KEY,
    machine_id       integer NOT NULL REFERENCES machine (id),
    job_id           bigint REFERENCES job (id),
    start_time       timestamptz NOT NULL,
    end_time         timestamptz NOT NULL CHECK (end_time >= start_time),
    quantity_good    bigint NOT NULL DEFAULT 0 CHECK (quantity_good >= 0),
    quantity_rejects bigint NOT NULL DEFAULT 0 CHECK (quantity_rejects >= 0)
);
CREATE INDEX production_machine_end ON production_quantity (machine_id, end_time);
CREATE INDEX production_job ON production_quantity (job_id);

-- Tablets ("input devices"), identified by the UUID the app generates.
CREATE TABLE input_device (
    id                     serial PRIMARY KEY,
    uuid                   varchar(100) NOT NULL UNIQUE,
    name                   varchar(100) NOT NULL UNIQUE,
    machine_id             integer UNIQUE REFERENCES machine (id),
    active_user_id         integer REFERENCES app_user (id),
    active_user_session_id integer
);

CREATE TABLE user_session (
    id              serial PRIMARY KEY,
    user_id         integer NOT NULL REFERENCES app_user (id),
    input_device_id integer REFERENCES input_device (id),
    time_login      timestamptz NOT NULL,
    time_logout     timestamptz,
    active          boolean NOT NULL DEFAULT true
);
ALTER TABLE input_device ADD CONSTRAINT input_device_session_fk
    FOREIGN KEY (active_user_session_id) REFERENCES user_session (id);

-- Request ids ingest has answered, so a redelivered command is applied once.
CREATE TABLE command_log (
    request_id text PRIMARY KEY,
    machine_id integer,
    status     smallint NOT NULL,
    reason     text,
    message    text,
    code_id    integer,
    handled_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX command_log_handled_at ON command_log (handled_at);

-- Messages ingest could not apply, kept so nothing a device sent is silently lost.
CREATE TABLE raw_event (
    received_at timestamptz NOT NULL,
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    status      smallint NOT NULL,
    error       text NOT NULL
);
CREATE INDEX raw_event_received_at ON raw_event (received_at);

-- General data collection: any JSON object of numbers per machine and time.
CREATE TABLE telemetry (
    machine_id integer NOT NULL,
    ts         timestamptz NOT NULL,
    data       jsonb NOT NULL
);
CREATE INDEX telemetry_machine_ts ON telemetry (machine_id, ts);

-- Credentials: the server's own MQTT secret, and devices (PLCs, sensors, HTTP devices) with an MQTT
-- password and an HTTP bearer token each, both stored as SHA-256 digests of secrets the server generated,
-- and the machines each device may report for.

CREATE TABLE server_secret (
    name  text PRIMARY KEY,
    value text NOT NULL
);

-- 244 random bits from two version-4 UUIDs (gen_random_uuid needs no extension on PostgreSQL 13+).
INSERT INTO server_secret (name, value)
VALUES ('mqtt', replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));

CREATE TABLE device (
    id                   serial PRIMARY KEY,
    name                 text NOT NULL UNIQUE,
    mqtt_password_digest text NOT NULL,
    token_digest         text NOT NULL UNIQUE,
    active               boolean NOT NULL DEFAULT true,
    created_at           timestamptz NOT NULL DEFAULT now(),
    revoked_at           timestamptz
);

CREATE TABLE device_machine (
    device_id  integer NOT NULL REFERENCES device (id) ON DELETE CASCADE,
    machine_id integer NOT NULL REFERENCES machine (id),
    PRIMARY KEY (device_id, machine_id)
);

-- The topic segments a device may name its machines by: each machine's id and, when it has one, its
-- topic name.
CREATE VIEW device_machine_segment AS
SELECT dm.device_id, s.segment
  FROM device_machine dm
  JOIN machine m ON m.id = dm.machine_id
 CROSS JOIN LATERAL (VALUES (m.id::text), (m.topic_name)) AS s(segment)
 WHERE s.segment IS NOT NULL;

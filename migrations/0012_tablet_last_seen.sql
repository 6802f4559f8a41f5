-- When each tablet last asked the server for its state (`/check-state`), so an administrator can tell a
-- tablet that is switched off or out of reach from one that is merely idle. Written at most about once a
-- minute per tablet.
ALTER TABLE input_device ADD COLUMN last_seen_at timestamptz;

-- Plant settings an administrator changes at run time, which override the config file's value while they
-- are set (a missing row: the config file decides). One row per setting, its value as JSON.
CREATE TABLE plant_setting (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text
);

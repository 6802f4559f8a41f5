-- Every change of a machine's past made through the web (the machine report's forms and the reference's
-- form endpoints): who made it, when, what kind of record, and the record as it was before and after.
-- The web writes a row once ingest has applied the change; refused changes leave none.
CREATE TABLE history_audit (
    id          bigserial PRIMARY KEY,
    machine_id  integer NOT NULL REFERENCES machine (id) ON DELETE CASCADE,
    -- who: the person's account (NULL once the account is deleted, or for an API token) and their name then
    user_id     integer REFERENCES app_user (id) ON DELETE SET NULL,
    user_name   text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    -- 'activity', 'job' or 'production'
    kind        text NOT NULL CHECK (kind IN ('activity', 'job', 'production')),
    record_id   bigint NOT NULL,
    -- the record as stored before the change (NULL when it was added) and after it
    before      jsonb,
    after       jsonb
);
CREATE INDEX history_audit_machine_changed ON history_audit (machine_id, changed_at);

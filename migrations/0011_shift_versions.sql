-- Shift patterns keep their history. An edit makes a new version of the pattern, effective from the moment
-- it was made; the periods belong to a version. Reports of past days and the scheduler's catch-up use the
-- version in force at each instant, so an edit applies from then on only. A machine's pattern is recorded
-- over time in the same way (`machine_shift_history`), so a machine moved to another pattern keeps the old
-- one in the reports of the days before.

-- A pattern's versions; the first one is effective from '-infinity' (it is the pattern for all time before
-- the next one).
CREATE TABLE shift_version (
    id             serial PRIMARY KEY,
    shift_id       integer NOT NULL REFERENCES shift (id) ON DELETE CASCADE,
    effective_from timestamptz NOT NULL,
    UNIQUE (shift_id, effective_from),
    UNIQUE (id, shift_id)
);

-- The periods as they are become every pattern's first version. The old trigger would take the rewrite
-- of every period for an edit and send every machine back to its pattern's state now: it goes first.
DROP TRIGGER shift_period_changed ON shift_period;
INSERT INTO shift_version (shift_id, effective_from) SELECT id, '-infinity' FROM shift;
ALTER TABLE shift_period ADD COLUMN version_id integer;
UPDATE shift_period p SET version_id = v.id FROM shift_version v WHERE v.shift_id = p.shift_id;
ALTER TABLE shift_period
    ALTER COLUMN version_id SET NOT NULL,
    ADD FOREIGN KEY (version_id, shift_id) REFERENCES shift_version (id, shift_id) ON DELETE CASCADE,
    DROP CONSTRAINT shift_period_shift_id_day_start_minute_key,
    ADD UNIQUE (version_id, day, start_minute);

-- A new pattern starts with an empty first version.
CREATE FUNCTION shift_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO shift_version (shift_id, effective_from) VALUES (NEW.id, '-infinity');
    RETURN NULL;
END
$$;
CREATE TRIGGER shift_added AFTER INSERT ON shift FOR EACH ROW EXECUTE FUNCTION shift_added();

-- A period written without a version (by hand, in SQL) joins the pattern's latest version: that edits the
-- version in place, history included, which is what such a correction means. A period given only its
-- version gets the version's pattern.
CREATE FUNCTION shift_period_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.version_id IS NULL THEN
        SELECT id INTO NEW.version_id FROM shift_version WHERE shift_id = NEW.shift_id
         ORDER BY effective_from DESC LIMIT 1;
        IF NEW.version_id IS NULL THEN
            INSERT INTO shift_version (shift_id, effective_from) VALUES (NEW.shift_id, '-infinity')
                RETURNING id INTO NEW.version_id;
        END IF;
    ELSIF NEW.shift_id IS NULL THEN
        SELECT shift_id INTO NEW.shift_id FROM shift_version WHERE id = NEW.version_id;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER shift_period_version BEFORE INSERT ON shift_period
    FOR EACH ROW EXECUTE FUNCTION shift_period_version();

-- A machine's applied-until instant (migration 0003) stays where it is when a version begins after it: the
-- scheduler catches up across the change at the instant it took effect. A change that reaches back to time
-- the scheduler has already applied (a version edited in place, or one effective before that instant)
-- sends the machines to their pattern's state now instead, as every change did before. The machines of
-- the pattern are locked first, in id order as ingest locks them: a scheduler round holding them finishes
-- before the instants are compared, and a round that starts later waits for this change and reads it.
CREATE FUNCTION shift_changed_since(shifts integer[], since timestamptz) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM machine WHERE shift_id = ANY (shifts) ORDER BY id FOR UPDATE;
    UPDATE machine SET schedule_applied_until = NULL
     WHERE shift_id = ANY (shifts) AND schedule_applied_until >= since;
    PERFORM pg_notify('oee_schedule', 'shift ' || s) FROM unnest(shifts) AS s;
END
$$;

CREATE OR REPLACE FUNCTION shift_period_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    since timestamptz;
BEGIN
    -- a version deleted with its periods has gone already: its start is unknown, so all of time counts
    SELECT min(effective_from) INTO since FROM shift_version
     WHERE id IN (OLD.version_id, NEW.version_id);
    PERFORM shift_changed_since(array_remove(ARRAY[OLD.shift_id, NEW.shift_id], NULL),
                                COALESCE(since, '-infinity'));
    RETURN NULL;
END
$$;
CREATE TRIGGER shift_period_changed AFTER INSERT OR UPDATE OR DELETE ON shift_period
    FOR EACH ROW EXECUTE FUNCTION shift_period_changed();

CREATE FUNCTION shift_version_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- LEAST skips the NULL of the side an insert or a delete does not have
    PERFORM shift_changed_since(ARRAY[COALESCE(NEW.shift_id, OLD.shift_id)],
                                LEAST(OLD.effective_from, NEW.effective_from));
    RETURN NULL;
END
$$;
CREATE TRIGGER shift_version_changed AFTER INSERT OR UPDATE OR DELETE ON shift_version
    FOR EACH ROW EXECUTE FUNCTION shift_version_changed();

-- Which pattern a machine followed from when (NULL: none). A machine follows its first pattern from
-- '-infinity', as it has no history before it was added; a change of `machine.shift_id` applies from the
-- moment of the change (the 0003 trigger still moves the machine to its new pattern's state now).
CREATE TABLE machine_shift_history (
    machine_id     integer NOT NULL REFERENCES machine (id) ON DELETE CASCADE,
    effective_from timestamptz NOT NULL,
    shift_id       integer REFERENCES shift (id) ON DELETE SET NULL,
    PRIMARY KEY (machine_id, effective_from)
);
CREATE INDEX machine_shift_history_shift ON machine_shift_history (shift_id);
INSERT INTO machine_shift_history (machine_id, effective_from, shift_id) SELECT id, '-infinity', shift_id FROM machine;

CREATE FUNCTION machine_shift_recorded() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO machine_shift_history (machine_id, effective_from, shift_id)
    VALUES (NEW.id, CASE WHEN TG_OP = 'INSERT' THEN '-infinity'::timestamptz ELSE now() END, NEW.shift_id)
    ON CONFLICT (machine_id, effective_from) DO UPDATE SET shift_id = EXCLUDED.shift_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER machine_shift_recorded_insert AFTER INSERT ON machine
    FOR EACH ROW EXECUTE FUNCTION machine_shift_recorded();
CREATE TRIGGER machine_shift_recorded_update AFTER UPDATE OF shift_id ON machine
    FOR EACH ROW WHEN (OLD.shift_id IS DISTINCT FROM NEW.shift_id) EXECUTE FUNCTION machine_shift_recorded();

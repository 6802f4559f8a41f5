-- The shift scheduler: how far each machine's shift transitions have been applied, and notifications that
-- tell a running scheduler at once when a shift pattern or a machine's shift changes.

-- Every shift transition of the machine's pattern at or before this instant has been applied. NULL: none
-- yet (an existing machine, or its pattern changed): the scheduler brings the machine to its pattern's
-- current state without going back over history.
ALTER TABLE machine ADD COLUMN schedule_applied_until timestamptz;

-- A machine given another shift pattern follows the new one from now on, not back over history.
CREATE FUNCTION machine_shift_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.schedule_applied_until := NULL;
    PERFORM pg_notify('oee_schedule', 'machine ' || NEW.id);
    RETURN NEW;
END
$$;
CREATE TRIGGER machine_shift_changed BEFORE UPDATE OF shift_id ON machine
    FOR EACH ROW WHEN (OLD.shift_id IS DISTINCT FROM NEW.shift_id) EXECUTE FUNCTION machine_shift_changed();

CREATE FUNCTION machine_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('oee_schedule', 'machine ' || NEW.id);
    RETURN NULL;
END
$$;
CREATE TRIGGER machine_added AFTER INSERT ON machine FOR EACH ROW EXECUTE FUNCTION machine_added();

-- A changed pattern applies from now on to every machine that follows it. Rows are locked in id order, as
-- ingest locks them, so an edit beside a running ingest cannot deadlock with it.
CREATE FUNCTION shift_period_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed integer[] := array_remove(ARRAY[OLD.shift_id, NEW.shift_id], NULL);
BEGIN
    UPDATE machine SET schedule_applied_until = NULL
     WHERE id IN (SELECT id FROM machine
                   WHERE shift_id = ANY (changed) AND schedule_applied_until IS NOT NULL
                   ORDER BY id FOR UPDATE);
    PERFORM pg_notify('oee_schedule', 'shift ' || s) FROM unnest(changed) AS s;
    RETURN NULL;
END
$$;
CREATE TRIGGER shift_period_changed AFTER INSERT OR UPDATE OR DELETE ON shift_period
    FOR EACH ROW EXECUTE FUNCTION shift_period_changed();

CREATE FUNCTION shift_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('oee_schedule', 'shift');
    RETURN NULL;
END
$$;
CREATE TRIGGER shift_changed AFTER INSERT OR UPDATE OR DELETE ON shift
    FOR EACH STATEMENT EXECUTE FUNCTION shift_changed();

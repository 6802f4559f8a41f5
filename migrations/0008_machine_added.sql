-- A machine added while the server runs (`oee-server machine add`, or any insert into `machine`) is announced
-- as added, not as a shift change, so that the running ingest publishes its retained status at once: a
-- tablet or dashboard subscribing to it then sees the machine before its first change. The scheduler still
-- takes the notification as a reason to look at the machine's schedule.
CREATE OR REPLACE FUNCTION machine_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('oee_schedule', 'added ' || NEW.id);
    RETURN NULL;
END
$$;

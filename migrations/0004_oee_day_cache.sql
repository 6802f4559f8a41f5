-- The daily OEE cache: per machine and plant day, the OEE engine's additive sums for that day, kept only
-- for days entirely in the past (today is always computed live). A row records the engine settings it
-- was computed with and is ignored by a reader whose settings differ.
--
-- A reader about to compute missing days first claims them (rows with `sums` NULL, committed), then
-- takes its snapshot of the history while holding advisory lock 3993807950 exclusively, which waits for
-- every history writer in flight (the triggers hold that lock shared until they commit); it finally fills
-- only the claimed rows still there. A writer that commits after the snapshot has deleted the claim, so
-- a day computed from history that was changed meanwhile is never stored.
--
-- Any change to the history under a cached day, by any writer (ingest, history edits, manual SQL),
-- deletes that day's row: statement-level triggers with transition tables on activity, job and
-- production_quantity run one DELETE per statement. The live path (closing the open activity at "now"
-- and opening the next one) changes only time at or after now, which no cached day reaches, so it
-- deletes nothing.

CREATE TABLE oee_day_cache (
    machine_id              integer NOT NULL REFERENCES machine (id) ON DELETE CASCADE,
    day                     date NOT NULL,
    -- the plant day as [local midnight, next local midnight) in the time zone it was computed for
    day_start               timestamptz NOT NULL,
    day_end                 timestamptz NOT NULL CHECK (day_end > day_start),
    minor_stop_threshold_ms bigint NOT NULL,
    engine_version          integer NOT NULL,
    -- NULL: claimed by a reader that is computing the day
    sums                    jsonb,
    computed_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (machine_id, day_start)
);
-- Invalidation looks for days ending after a changed instant: for the live path that range is empty.
CREATE INDEX oee_day_cache_machine_end ON oee_day_cache (machine_id, day_end);

-- Activities: a new or deleted row affects the days it overlaps. An update that moves only the end
-- affects the stretch between the old and the new end; it affects the whole activity as well when the
-- activity is, or becomes, shorter than the cached row's minor-stop threshold (a short breakdown counts
-- as a minor stop in every day it touches). Any other relevant change affects the old and new spans.
-- NULL end times are open: they reach into the future.
CREATE FUNCTION oee_day_cache_forget_activity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(3993807950);
    IF TG_OP = 'INSERT' THEN
        DELETE FROM oee_day_cache c USING new_rows n
        WHERE c.machine_id = n.machine_id AND c.day_end > n.start_time
          AND (n.end_time IS NULL OR c.day_start < n.end_time);
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM oee_day_cache c USING old_rows o
        WHERE c.machine_id = o.machine_id AND c.day_end > o.start_time
          AND (o.end_time IS NULL OR c.day_start < o.end_time);
    ELSE
        DELETE FROM oee_day_cache c USING (
            -- whole spans, old and new, of rows whose machine, code or start changed
            SELECT o.machine_id, o.start_time AS lo, o.end_time AS hi, false AS end_only, o.start_time AS act_start
            FROM old_rows o JOIN new_rows n USING (id)
            WHERE (o.machine_id, o.activity_code_id, o.start_time) IS DISTINCT FROM
                  (n.machine_id, n.activity_code_id, n.start_time)
            UNION ALL
            SELECT n.machine_id, n.start_time, n.end_time, false, n.start_time
            FROM old_rows o JOIN new_rows n USING (id)
            WHERE (o.machine_id, o.activity_code_id, o.start_time) IS DISTINCT FROM
                  (n.machine_id, n.activity_code_id, n.start_time)
            UNION ALL
            -- only the end moved: the stretch between the two ends
            SELECT n.machine_id, LEAST(o.end_time, n.end_time),
                   CASE WHEN o.end_time IS NULL OR n.end_time IS NULL THEN NULL
                        ELSE GREATEST(o.end_time, n.end_time) END,
                   true, n.start_time
            FROM old_rows o JOIN new_rows n USING (id)
            WHERE (o.machine_id, o.activity_code_id, o.start_time) = (n.machine_id, n.activity_code_id, n.start_time)
              AND o.end_time IS DISTINCT FROM n.end_time
        ) r
        -- act_start <= lo on every row, so `day_end > act_start` lets the (machine_id, day_end) index
        -- find the candidates: none at all on the live path.
        WHERE c.machine_id = r.machine_id AND c.day_end > r.act_start
          AND ((c.day_end > r.lo AND (r.hi IS NULL OR c.day_start < r.hi))
               OR (r.end_only AND c.day_end > r.act_start AND c.day_start < r.lo
                   AND r.lo - r.act_start < c.minor_stop_threshold_ms * interval '1 millisecond'));
    END IF;
    RETURN NULL;
END
$$;

-- Jobs: their span decides which run time has an ideal cycle time; their ideal cycle time also applies
-- to their production records wherever those lie.
CREATE FUNCTION oee_day_cache_forget_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(3993807950);
    IF TG_OP = 'INSERT' THEN
        DELETE FROM oee_day_cache c USING new_rows n
        WHERE c.machine_id = n.machine_id AND c.day_end > n.start_time
          AND (n.end_time IS NULL OR c.day_start < n.end_time);
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM oee_day_cache c USING old_rows o
        WHERE c.machine_id = o.machine_id AND c.day_end > o.start_time
          AND (o.end_time IS NULL OR c.day_start < o.end_time);
    ELSE
        DELETE FROM oee_day_cache c USING (
            SELECT o.machine_id, o.start_time AS lo, o.end_time AS hi
            FROM old_rows o JOIN new_rows n USING (id)
            WHERE (o.machine_id, o.start_time, o.ideal_cycle_time_s) IS DISTINCT FROM
                  (n.machine_id, n.start_time, n.ideal_cycle_time_s)
            UNION ALL
            SELECT n.machine_id, n.start_time, n.end_time
            FROM old_rows o JOIN new_rows n USING (id)
            WHERE (o.machine_id, o.start_time, o.ideal_cycle_time_s) IS DISTINCT FROM
                  (n.machine_id, n.start_time, n.ideal_cycle_time_s)
            UNION ALL
            SELECT n.machine_id, LEAST(o.end_time, n.end_time),
                   CASE WHEN o.end_time IS NULL OR n.end_time IS NULL THEN NULL
                        ELSE GREATEST(o.end_time, n.end_time) END
            FROM old_rows o JOIN new_rows n USING (id)
            WHERE (o.machine_id, o.start_time, o.ideal_cycle_time_s) IS NOT DISTINCT FROM
                  (n.machine_id, n.start_time, n.ideal_cycle_time_s)
              AND o.end_time IS DISTINCT FROM n.end_time
            UNION ALL
            -- a new ideal cycle time changes the ideal time of the job's parts
            SELECT p.machine_id, p.start_time, p.end_time + interval '1 millisecond'
            FROM old_rows o JOIN new_rows n USING (id) JOIN production_quantity p ON p.job_id = n.id
            WHERE o.ideal_cycle_time_s IS DISTINCT FROM n.ideal_cycle_time_s
        ) r
        WHERE c.machine_id = r.machine_id AND c.day_end > r.lo AND (r.hi IS NULL OR c.day_start < r.hi);
    END IF;
    RETURN NULL;
END
$$;

-- Production records are pro-rated over [start, end] (an instant record counts where it falls), so any
-- change affects every day the old or new record touches.
CREATE FUNCTION oee_day_cache_forget_production() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(3993807950);
    IF TG_OP = 'INSERT' THEN
        DELETE FROM oee_day_cache c USING new_rows n
        WHERE c.machine_id = n.machine_id AND c.day_end > n.start_time AND c.day_start <= n.end_time;
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM oee_day_cache c USING old_rows o
        WHERE c.machine_id = o.machine_id AND c.day_end > o.start_time AND c.day_start <= o.end_time;
    ELSE
        DELETE FROM oee_day_cache c USING (
            SELECT o.machine_id, o.start_time, o.end_time FROM old_rows o JOIN new_rows n USING (id)
            WHERE (o.machine_id, o.job_id, o.start_time, o.end_time, o.quantity_good, o.quantity_rejects)
                  IS DISTINCT FROM (n.machine_id, n.job_id, n.start_time, n.end_time, n.quantity_good, n.quantity_rejects)
            UNION ALL
            SELECT n.machine_id, n.start_time, n.end_time FROM old_rows o JOIN new_rows n USING (id)
            WHERE (o.machine_id, o.job_id, o.start_time, o.end_time, o.quantity_good, o.quantity_rejects)
                  IS DISTINCT FROM (n.machine_id, n.job_id, n.start_time, n.end_time, n.quantity_good, n.quantity_rejects)
        ) r
        WHERE c.machine_id = r.machine_id AND c.day_end > r.start_time AND c.day_start <= r.end_time;
    END IF;
    RETURN NULL;
END
$$;

-- A code's machine state or loss category changes how all history counts.
CREATE FUNCTION oee_day_cache_forget_codes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(3993807950);
    IF EXISTS (SELECT 1 FROM old_rows o JOIN new_rows n USING (id)
               WHERE (o.machine_state, o.loss_category) IS DISTINCT FROM (n.machine_state, n.loss_category)) THEN
        DELETE FROM oee_day_cache;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION oee_day_cache_forget_all() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(3993807950);
    DELETE FROM oee_day_cache;
    RETURN NULL;
END
$$;

CREATE TRIGGER oee_day_cache_activity_insert AFTER INSERT ON activity
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION oee_day_cache_forget_activity();
CREATE TRIGGER oee_day_cache_activity_update AFTER UPDATE ON activity
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION oee_day_cache_forget_activity();
CREATE TRIGGER oee_day_cache_activity_delete AFTER DELETE ON activity
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION oee_day_cache_forget_activity();

CREATE TRIGGER oee_day_cache_job_insert AFTER INSERT ON job
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION oee_day_cache_forget_job();
CREATE TRIGGER oee_day_cache_job_update AFTER UPDATE ON job
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION oee_day_cache_forget_job();
CREATE TRIGGER oee_day_cache_job_delete AFTER DELETE ON job
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION oee_day_cache_forget_job();

CREATE TRIGGER oee_day_cache_production_insert AFTER INSERT ON production_quantity
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION oee_day_cache_forget_production();
CREATE TRIGGER oee_day_cache_production_update AFTER UPDATE ON production_quantity
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION oee_day_cache_forget_production();
CREATE TRIGGER oee_day_cache_production_delete AFTER DELETE ON production_quantity
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION oee_day_cache_forget_production();

CREATE TRIGGER oee_day_cache_codes_update AFTER UPDATE ON activity_code
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION oee_day_cache_forget_codes();

CREATE TRIGGER oee_day_cache_activity_truncate AFTER TRUNCATE ON activity
    FOR EACH STATEMENT EXECUTE FUNCTION oee_day_cache_forget_all();
CREATE TRIGGER oee_day_cache_job_truncate AFTER TRUNCATE ON job
    FOR EACH STATEMENT EXECUTE FUNCTION oee_day_cache_forget_all();
CREATE TRIGGER oee_day_cache_production_truncate AFTER TRUNCATE ON production_quantity
    FOR EACH STATEMENT EXECUTE FUNCTION oee_day_cache_forget_all();

-- The last running totals each machine's counters reported, so that the next total can be turned into the
-- parts made since (a total below the last one is a counter that restarted). A counter never reported is
-- NULL.
CREATE TABLE production_counter (
    machine_id    integer PRIMARY KEY REFERENCES machine (id),
    good_total    bigint CHECK (good_total >= 0),
    rejects_total bigint CHECK (rejects_total >= 0),
    updated_at    timestamptz NOT NULL
);

-- The row a history command added or changed, so a redelivered command is answered with the same id.
ALTER TABLE command_log ADD COLUMN row_id bigint;

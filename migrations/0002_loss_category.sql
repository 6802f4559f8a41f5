-- Every activity code says how its time counts in OEE (its loss category). Existing codes get the
-- category their machine state implies: up and overtime are running, unplanned downtime is a breakdown,
-- planned downtime is outside planned time (as the reference excluded it).
ALTER TABLE activity_code ADD COLUMN loss_category varchar(32) NOT NULL DEFAULT 'breakdown'
    CHECK (loss_category IN ('running', 'breakdown', 'setup', 'planned_stop', 'minor_stop', 'reduced_speed',
                             'not_scheduled'));
UPDATE activity_code SET loss_category = CASE machine_state
    WHEN 1 THEN 'running' WHEN 4 THEN 'running' WHEN 2 THEN 'breakdown' ELSE 'not_scheduled' END;

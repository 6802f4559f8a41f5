-- A request id is scoped by the machine and the kind of command it came with: a device reusing an id that
-- another machine's device (or another kind of command) used is applied, not answered with the other's
-- verdict. Rows written before this keep kind '' and still answer any kind of command for their machine
-- until they are pruned. Verdicts for machines that do not exist were never worth keeping (nothing was
-- applied; judging a redelivery again gives the same answer): they are dropped, so machine_id is known.
DELETE FROM command_log WHERE machine_id IS NULL;
ALTER TABLE command_log ALTER COLUMN machine_id SET NOT NULL;
ALTER TABLE command_log ADD COLUMN kind text NOT NULL DEFAULT '';
ALTER TABLE command_log DROP CONSTRAINT command_log_pkey;
ALTER TABLE command_log ADD PRIMARY KEY (request_id, machine_id, kind);

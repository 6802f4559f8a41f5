-- New tablets register only while an administrator has opened a pairing window (unless the reference's open
-- registration is switched on): until when it is open, and how many tablets registered in it.
CREATE TABLE tablet_pairing_window (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    open_until timestamptz NOT NULL,
    registered integer NOT NULL DEFAULT 0
);

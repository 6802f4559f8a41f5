-- Where retention last cut telemetry: readings before it are gone, and the rollup refresh never reaches back
-- past it (a refresh over removed readings would empty those hours of the rollups, which are meant to keep
-- them). No row: nothing removed yet.
CREATE TABLE telemetry_kept (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    kept_from timestamptz NOT NULL
);

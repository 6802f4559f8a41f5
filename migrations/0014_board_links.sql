-- Secret links to the andon board (`/board/{secret}`), for wall screens that nobody signs in on. An
-- administrator makes one per screen, for one machine group or (no group) every machine, and revokes it
-- when the screen goes. Only the secret's SHA-256 digest is kept; the full link is shown once.
CREATE TABLE board_link (
    id               serial PRIMARY KEY,
    name             varchar(100) NOT NULL,
    machine_group_id integer REFERENCES machine_group (id) ON DELETE CASCADE,
    digest           text NOT NULL UNIQUE,
    created_by       integer REFERENCES app_user (id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL,
    revoked_at       timestamptz
);

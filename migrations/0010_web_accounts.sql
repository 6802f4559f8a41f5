-- People in the browser: a role per user instead of the reference's admin flag, deactivation, a forced
-- password change, web sessions shared by every web process, the sign-in failures the rate limit counts,
-- and API tokens for scripts.

ALTER TABLE app_user ADD COLUMN role varchar(16) NOT NULL DEFAULT 'operator'
    CHECK (role IN ('operator', 'viewer', 'supervisor', 'admin'));
UPDATE app_user SET role = 'admin' WHERE admin;
-- The reference's flag stays readable (its `GET /api/users` shows it) but follows the role.
ALTER TABLE app_user DROP COLUMN admin;
ALTER TABLE app_user ADD COLUMN admin boolean GENERATED ALWAYS AS (role = 'admin') STORED;
ALTER TABLE app_user ADD COLUMN active boolean NOT NULL DEFAULT true;
-- Set when an administrator chose the password (or it is the seeded one): the next browser sign-in must
-- choose a new one before anything else.
ALTER TABLE app_user ADD COLUMN must_change_password boolean NOT NULL DEFAULT false;
UPDATE app_user SET must_change_password = true WHERE role = 'admin' AND username = 'admin';

-- A browser session. The cookie holds a secret; only its SHA-256 digest is stored.
CREATE TABLE web_session (
    digest       text PRIMARY KEY,
    user_id      integer NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    address      text NOT NULL DEFAULT '',
    -- a one-time message for the next page ("Machine saved")
    flash        text
);
CREATE INDEX web_session_user ON web_session (user_id);
CREATE INDEX web_session_expires ON web_session (expires_at);

CREATE TABLE sign_in_failure (
    id       bigserial PRIMARY KEY,
    username text NOT NULL,
    address  text NOT NULL,
    at       timestamptz NOT NULL
);
CREATE INDEX sign_in_failure_user ON sign_in_failure (lower(username), at);
CREATE INDEX sign_in_failure_address ON sign_in_failure (address, at);

-- A token for scripts (`Authorization: Bearer`), scoped to reading or to administration.
CREATE TABLE api_token (
    id           serial PRIMARY KEY,
    name         varchar(100) NOT NULL UNIQUE,
    digest       text NOT NULL UNIQUE,
    scope        varchar(8) NOT NULL CHECK (scope IN ('read', 'admin')),
    created_by   integer REFERENCES app_user (id),
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz
);

//! Browser sessions, the sign-in failures that rate-limit guessing, and API tokens for scripts.
//!
//! A session's cookie and a token hold a 240-bit secret the server made; only its SHA-256 digest is stored,
//! so a copy of the database opens no session. Sessions live in PostgreSQL, so every web process behind a
//! proxy shares them and a sign-out or a password change ends them everywhere.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;

use crate::access::Role;
use crate::error::Error;
use crate::password;

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub lifetime: Duration,
}

/// A session just made: the cookie's secret and the session's CSRF token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub secret: String,
    pub csrf_token: String,
}

/// A live session and who it belongs to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    /// The digest of the cookie's secret: the session's key.
    pub digest: String,
    pub user_id: i32,
    pub username: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub must_change_password: bool,
    pub csrf_token: String,
    pub flash: Option<String>,
}

/// Opens a session for user `user` signed in from `address`.
pub async fn open_session(
    pool: &PgPool,
    user: i32,
    address: &str,
    now: DateTime<Utc>,
    limits: SessionLimits,
) -> Result<NewSession, Error> {
    let secret = password::new_secret();
    let csrf_token = password::new_secret();
    sqlx::query(
        "INSERT INTO web_session (digest, user_id, csrf_token, created_at, last_seen_at, expires_at, address) \
         VALUES ($1, $2, $3, $4, $4, $5, $6)",
    )
    .bind(password::digest(&secret))
    .bind(user)
    .bind(&csrf_token)
    .bind(now)
    .bind(now + limits.lifetime)
    .bind(address)
    .execute(pool)
    .await?;
    // Sessions that ended by themselves are cleared now and then, here where one begins.
    sqlx::query("DELETE FROM web_session WHERE expires_at < $1 OR last_seen_at < $2")
        .bind(now)
        .bind(now - limits.idle)
        .execute(pool)
        .await?;
    Ok(NewSession { secret, csrf_token })
}

/// The live session whose cookie holds `secret`, if any: not past its lifetime, used within the idle time,
/// and of an active user who may use the browser. Marks it used (at most once a minute, to spare writes).
pub async fn session(
    pool: &PgPool,
    secret: &str,
    now: DateTime<Utc>,
    limits: SessionLimits,
) -> Result<Option<Session>, Error> {
    let digest = password::digest(secret);
    let found: Option<(Session, DateTime<Utc>)> = sqlx::query_as::<_, SessionRow>(
        "SELECT s.digest, s.user_id, u.username, u.role, u.must_change_password, s.csrf_token, s.flash, \
                s.last_seen_at \
         FROM web_session s JOIN app_user u ON u.id = s.user_id \
         WHERE s.digest = $1 AND s.expires_at > $2 AND s.last_seen_at > $3 AND u.active \
               AND u.role IN ('viewer', 'supervisor', 'admin')",
    )
    .bind(&digest)
    .bind(now)
    .bind(now - limits.idle)
    .fetch_optional(pool)
    .await?
    .map(|r| (r.session, r.last_seen_at));
    let Some((session, last_seen)) = found else { return Ok(None) };
    if now - last_seen > Duration::minutes(1) {
        sqlx::query("UPDATE web_session SET last_seen_at = $2 WHERE digest = $1")
            .bind(&digest)
            .bind(now)
            .execute(pool)
            .await?;
    }
    Ok(Some(session))
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    #[sqlx(flatten)]
    session: Session,
    last_seen_at: DateTime<Utc>,
}

/// Ends one session (sign-out).
pub async fn end_session(pool: &PgPool, digest: &str) -> Result<(), Error> {
    sqlx::query("DELETE FROM web_session WHERE digest = $1").bind(digest).execute(pool).await?;
    Ok(())
}

/// Ends every session of a user (sign-out everywhere); returns how many there were.
pub async fn end_sessions_of(pool: &PgPool, user: i32) -> Result<u64, Error> {
    Ok(sqlx::query("DELETE FROM web_session WHERE user_id = $1").bind(user).execute(pool).await?.rows_affected())
}

/// Leaves a one-time message for the session's next page.
pub async fn set_flash(pool: &PgPool, digest: &str, message: &str) -> Result<(), Error> {
    sqlx::query("UPDATE web_session SET flash = $2 WHERE digest = $1").bind(digest).bind(message).execute(pool).await?;
    Ok(())
}

/// Forgets the session's message once a page has shown it.
pub async fn clear_flash(pool: &PgPool, digest: &str) -> Result<(), Error> {
    sqlx::query("UPDATE web_session SET flash = NULL WHERE digest = $1 AND flash IS NOT NULL")
        .bind(digest)
        .execute(pool)
        .await?;
    Ok(())
}

/// Failed sign-ins within a window: for one user name (any case) and from one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    pub for_user: i64,
    pub from_address: i64,
}

/// Counts the failed sign-ins since `since`.
pub async fn sign_in_failures(
    pool: &PgPool,
    username: &str,
    address: &str,
    since: DateTime<Utc>,
) -> Result<Failures, Error> {
    let (for_user, from_address): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM sign_in_failure WHERE lower(username) = lower($1) AND at > $3), \
                (SELECT count(*) FROM sign_in_failure WHERE address = $2 AND at > $3)",
    )
    .bind(username.trim())
    .bind(address)
    .bind(since)
    .fetch_one(pool)
    .await?;
    Ok(Failures { for_user, from_address })
}

/// Records a failed sign-in, and forgets failures older than `forget_before`.
pub async fn record_sign_in_failure(
    pool: &PgPool,
    username: &str,
    address: &str,
    now: DateTime<Utc>,
    forget_before: DateTime<Utc>,
) -> Result<(), Error> {
    let username: String = username.trim().chars().take(64).collect();
    sqlx::query("INSERT INTO sign_in_failure (username, address, at) VALUES ($1, $2, $3)")
        .bind(username)
        .bind(address)
        .bind(now)
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM sign_in_failure WHERE at < $1").bind(forget_before).execute(pool).await?;
    Ok(())
}

/// Forgets a user's failed sign-ins after a successful one.
pub async fn clear_sign_in_failures(pool: &PgPool, username: &str) -> Result<(), Error> {
    sqlx::query("DELETE FROM sign_in_failure WHERE lower(username) = lower($1)")
        .bind(username.trim())
        .execute(pool)
        .await?;
    Ok(())
}

/// What a token lets a script do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// Read everything a viewer may read.
    Read,
    /// Everything an administrator may do.
    Admin,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Admin => "admin",
        }
    }

    /// The role a script with this scope acts with.
    pub fn role(self) -> Role {
        match self {
            TokenScope::Read => Role::Viewer,
            TokenScope::Admin => Role::Admin,
        }
    }
}

impl std::str::FromStr for TokenScope {
    type Err = String;

    fn from_str(s: &str) -> Result<TokenScope, String> {
        match s.trim() {
            "read" => Ok(TokenScope::Read),
            "admin" => Ok(TokenScope::Admin),
            other => Err(format!("`{other}` is not a token scope: choose read or admin")),
        }
    }
}

impl TryFrom<String> for TokenScope {
    type Error = String;

    fn try_from(s: String) -> Result<TokenScope, String> {
        s.parse()
    }
}

/// An API token as administrators see it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub id: i32,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub scope: TokenScope,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The select list and source of [`ApiToken`], for `concat!` (queries must be static strings).
macro_rules! tokens {
    () => {
        "SELECT t.id, t.name, t.scope, u.username AS created_by, t.created_at, t.last_used_at, t.revoked_at \
         FROM api_token t LEFT JOIN app_user u ON u.id = t.created_by"
    };
}

/// Creates a token; returns it and its secret, which is shown only this once.
pub async fn create_token(
    pool: &PgPool,
    name: &str,
    scope: TokenScope,
    created_by: Option<i32>,
    now: DateTime<Utc>,
) -> Result<(ApiToken, String), Error> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Error::field("name", "a token's name has 1 to 100 characters"));
    }
    let secret = password::new_secret();
    let id: i32 = sqlx::query_scalar(
        "INSERT INTO api_token (name, digest, scope, created_by, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(name)
    .bind(password::digest(&secret))
    .bind(scope.as_str())
    .bind(created_by)
    .bind(now)
    .fetch_one(pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            Error::field("name", format!("a token named `{name}` already exists"))
        }
        _ => Error::Database(e),
    })?;
    let token = sqlx::query_as(concat!(tokens!(), " WHERE t.id = $1")).bind(id).fetch_one(pool).await?;
    Ok((token, secret))
}

/// Every token, revoked ones included, newest first.
pub async fn list_tokens(pool: &PgPool) -> Result<Vec<ApiToken>, Error> {
    Ok(sqlx::query_as(concat!(tokens!(), " ORDER BY t.id DESC")).fetch_all(pool).await?)
}

/// Revokes a token: it stops working at once.
pub async fn revoke_token(pool: &PgPool, id: i32, now: DateTime<Utc>) -> Result<(), Error> {
    let n = sqlx::query("UPDATE api_token SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(Error::NotFound(format!("there is no API token {id}")));
    }
    Ok(())
}

/// The live token whose secret is `secret`, marked used (at most once a minute).
pub async fn token(pool: &PgPool, secret: &str, now: DateTime<Utc>) -> Result<Option<ApiToken>, Error> {
    let token: Option<ApiToken> = sqlx::query_as(concat!(tokens!(), " WHERE t.digest = $1 AND t.revoked_at IS NULL"))
        .bind(password::digest(secret))
        .fetch_optional(pool)
        .await?;
    if let Some(t) = &token
        && t.last_used_at.is_none_or(|at| now - at > Duration::minutes(1))
    {
        sqlx::query("UPDATE api_token SET last_used_at = $2 WHERE id = $1").bind(t.id).bind(now).execute(pool).await?;
    }
    Ok(token)
}

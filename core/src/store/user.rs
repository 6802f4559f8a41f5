//! Users: operators (tablets, with a numeric PIN) and the people who use the browser, each with a role.

use sqlx::PgPool;

use crate::access::Role;
use crate::error::Error;
use crate::password;

/// A user as administrators see them.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: i32,
    pub username: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    /// The reference's flag: the role is `admin`.
    pub admin: bool,
    /// An inactive user can sign in nowhere; their history stays.
    pub active: bool,
    /// The next browser sign-in must choose a new password first.
    pub must_change_password: bool,
}

/// The columns of [`User`], for `concat!` (queries must be static strings).
macro_rules! columns {
    () => {
        "id, username, role, admin, active, must_change_password"
    };
}

/// Shortest password of a user who signs in to the browser.
pub const MIN_WEB_PASSWORD: usize = 8;

/// Refuses a password that does not suit the role: operators type a PIN on the tablet's digit keypad (4 to 12
/// digits); people who use the browser need at least [`MIN_WEB_PASSWORD`] characters. `field` names the input.
pub fn check_password_for(role: Role, pw: &str, field: &'static str) -> Result<(), Error> {
    if role.signs_in_to_web() {
        if pw.chars().count() < MIN_WEB_PASSWORD {
            return Err(Error::field(field, format!("use at least {MIN_WEB_PASSWORD} characters")));
        }
        if pw.len() > 200 {
            return Err(Error::field(field, "use at most 200 characters"));
        }
    } else if !(4..=12).contains(&pw.len()) || !pw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::field(field, "an operator's PIN is 4 to 12 digits (the tablet's keypad has only digits)"));
    }
    Ok(())
}

fn check_username(username: &str) -> Result<&str, Error> {
    let username = username.trim();
    if username.is_empty() || username.chars().count() > 64 {
        return Err(Error::field("username", "a user name has 1 to 64 characters"));
    }
    if username.chars().any(char::is_control) {
        return Err(Error::field("username", "a user name cannot hold control characters"));
    }
    Ok(username)
}

fn unique_name(e: sqlx::Error, username: &str) -> Error {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            Error::field("username", format!("a user named `{username}` already exists"))
        }
        _ => Error::Database(e),
    }
}

/// Creates a user with a role. `must_change_password`: the password was chosen by someone else (an
/// administrator), so the user's first browser sign-in asks for a new one.
pub async fn add_user(
    pool: &PgPool,
    username: &str,
    password: &str,
    role: Role,
    must_change_password: bool,
) -> Result<User, Error> {
    let username = check_username(username)?;
    check_password_for(role, password, "password")?;
    let hash = password::hash(password)?;
    sqlx::query_as(concat!(
        "INSERT INTO app_user (username, password_hash, role, must_change_password) VALUES ($1, $2, $3, $4) \
         RETURNING ",
        columns!()
    ))
    .bind(username)
    .bind(hash)
    .bind(role.as_str())
    .bind(must_change_password && role.signs_in_to_web())
    .fetch_one(pool)
    .await
    .map_err(|e| unique_name(e, username))
}

/// Changes a user's name, role and whether they are active. Deactivating ends their browser sessions. The
/// last active administrator cannot be demoted or deactivated (nobody could administer the plant then).
pub async fn update_user(pool: &PgPool, id: i32, username: &str, role: Role, active: bool) -> Result<User, Error> {
    let username = check_username(username)?;
    let mut tx = pool.begin().await?;
    let before: Option<(String, bool)> = sqlx::query_as("SELECT role, active FROM app_user WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some((old_role, was_active)) = before else {
        return Err(Error::NotFound(format!("there is no user {id}")));
    };
    if old_role == "admin" && was_active && (role != Role::Admin || !active) {
        let others: i64 =
            sqlx::query_scalar("SELECT count(*) FROM app_user WHERE role = 'admin' AND active AND id <> $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        if others == 0 {
            let field = if active { "role" } else { "active" };
            return Err(Error::field(field, "this is the last active administrator: make someone else admin first"));
        }
    }
    let user: User = sqlx::query_as(concat!(
        "UPDATE app_user SET username = $2, role = $3, active = $4 WHERE id = $1 RETURNING ",
        columns!()
    ))
    .bind(id)
    .bind(username)
    .bind(role.as_str())
    .bind(active)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| unique_name(e, username))?;
    if !active || role < Role::Viewer {
        sqlx::query("DELETE FROM web_session WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(user)
}

/// Sets user `id`'s password. `chosen_by_user`: the user typed it themselves (so no change is asked for
/// later); otherwise an administrator set it and the next browser sign-in asks for a new one. Every browser
/// session of the user but `keep_session` (a digest) ends.
pub async fn set_password_by_id(
    pool: &PgPool,
    id: i32,
    password: &str,
    chosen_by_user: bool,
    keep_session: Option<&str>,
) -> Result<(), Error> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM app_user WHERE id = $1").bind(id).fetch_optional(pool).await?;
    let role: Role =
        role.ok_or_else(|| Error::NotFound(format!("there is no user {id}")))?.parse().map_err(Error::Invalid)?;
    check_password_for(role, password, "password")?;
    let hash = password::hash(password)?;
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE app_user SET password_hash = $2, must_change_password = $3 WHERE id = $1")
        .bind(id)
        .bind(hash)
        .bind(!chosen_by_user && role.signs_in_to_web())
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM web_session WHERE user_id = $1 AND digest IS DISTINCT FROM $2")
        .bind(id)
        .bind(keep_session)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Sets a user's password, by name (the command line). The user chose it: no change is asked for later.
pub async fn set_password(pool: &PgPool, username: &str, password: &str) -> Result<(), Error> {
    let id: Option<i32> =
        sqlx::query_scalar("SELECT id FROM app_user WHERE username = $1").bind(username).fetch_optional(pool).await?;
    let id =
        id.ok_or_else(|| Error::NotFound(format!("no user named `{username}` (oee-server user list shows them)")))?;
    set_password_by_id(pool, id, password, true, None).await
}

/// Every user, by id.
pub async fn list_users(pool: &PgPool) -> Result<Vec<User>, Error> {
    Ok(sqlx::query_as(concat!("SELECT ", columns!(), " FROM app_user ORDER BY id")).fetch_all(pool).await?)
}

/// One user.
pub async fn user(pool: &PgPool, id: i32) -> Result<Option<User>, Error> {
    Ok(sqlx::query_as(concat!("SELECT ", columns!(), " FROM app_user WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// The user named `username` (any case) if `password` is theirs; `None` for an unknown name or a wrong
/// password alike. Inactive users are returned too: the caller says why they cannot sign in.
pub async fn authenticate(pool: &PgPool, username: &str, password: &str) -> Result<Option<User>, Error> {
    let row: Option<(String, i32)> = sqlx::query_as(
        "SELECT password_hash, id FROM app_user WHERE lower(username) = lower($1) ORDER BY username = $1 DESC LIMIT 1",
    )
    .bind(username.trim())
    .fetch_optional(pool)
    .await?;
    let Some((hash, id)) = row else {
        // The same work as a real check, so timing does not tell which names exist.
        let _ = password::verify(password, &DUMMY_HASH);
        return Ok(None);
    };
    if !password::verify(password, &hash) {
        return Ok(None);
    }
    user(pool, id).await
}

/// A hash of a random secret nobody knows, checked against when a name is unknown.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| password::hash(&password::new_secret()).unwrap_or_default());

/// Whether `password` is the user's password (active users only).
pub async fn check_password(pool: &PgPool, username: &str, password: &str) -> Result<bool, Error> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM app_user WHERE username = $1 AND active")
            .bind(username)
            .fetch_optional(pool)
            .await?;
    Ok(stored.is_some_and(|h| password::verify(password, &h)))
}

/// Whether active user `id` exists, and if so whether `password` is theirs (the tablets' log-in).
pub async fn check_password_by_id(pool: &PgPool, id: i32, password: &str) -> Result<Option<bool>, Error> {
    let stored: Option<String> = sqlx::query_scalar("SELECT password_hash FROM app_user WHERE id = $1 AND active")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(stored.map(|h| password::verify(password, &h)))
}

/// Makes the user's next browser sign-in choose a new password (their password is known to others).
pub async fn require_password_change(pool: &PgPool, id: i32) -> Result<(), Error> {
    sqlx::query("UPDATE app_user SET must_change_password = true WHERE id = $1").bind(id).execute(pool).await?;
    Ok(())
}

//! Users: operators and web users.

use sqlx::PgPool;

use crate::error::Error;
use crate::password;

/// A user as listed to administrators.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    pub id: i32,
    pub username: String,
    pub admin: bool,
}

/// Creates a user; the name must be new.
pub async fn add_user(pool: &PgPool, username: &str, password: &str, admin: bool) -> Result<User, Error> {
    let username = username.trim();
    if username.is_empty() || username.len() > 64 {
        return Err(Error::Invalid("a user name must have 1 to 64 characters".into()));
    }
    let hash = password::hash(password)?;
    sqlx::query_as(
        "INSERT INTO app_user (username, password_hash, admin) VALUES ($1, $2, $3) RETURNING id, username, admin",
    )
    .bind(username)
    .bind(hash)
    .bind(admin)
    .fetch_one(pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            Error::Conflict(format!("a user named `{username}` already exists"))
        }
        _ => Error::Database(e),
    })
}

/// Sets a user's password.
pub async fn set_password(pool: &PgPool, username: &str, password: &str) -> Result<(), Error> {
    let hash = password::hash(password)?;
    let n = sqlx::query("UPDATE app_user SET password_hash = $2 WHERE username = $1")
        .bind(username)
        .bind(hash)
        .execute(pool)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(Error::NotFound(format!("no user named `{username}` (oee-server user list shows them)")));
    }
    Ok(())
}

/// Every user, by id.
pub async fn list_users(pool: &PgPool) -> Result<Vec<User>, Error> {
    Ok(sqlx::query_as("SELECT id, username, admin FROM app_user ORDER BY id").fetch_all(pool).await?)
}

/// Whether `password` is the user's password.
pub async fn check_password(pool: &PgPool, username: &str, password: &str) -> Result<bool, Error> {
    let stored: Option<String> = sqlx::query_scalar("SELECT password_hash FROM app_user WHERE username = $1")
        .bind(username)
        .fetch_optional(pool)
        .await?;
    Ok(stored.is_some_and(|h| password::verify(password, &h)))
}

/// Whether user `id` exists, and if so whether `password` is theirs.
pub async fn check_password_by_id(pool: &PgPool, id: i32, password: &str) -> Result<Option<bool>, Error> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM app_user WHERE id = $1").bind(id).fetch_optional(pool).await?;
    Ok(stored.map(|h| password::verify(password, &h)))
}

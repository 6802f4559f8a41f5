//! Secret links to the andon board: a wall screen shows a group's board (or every machine's) without
//! anyone signing in, as long as its link is not revoked. Only the secret's digest is stored.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::error::Error;
use crate::password;

/// A board link as administrators see it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct BoardLink {
    pub id: i32,
    /// What the screen is ("Hall 2 entrance").
    pub name: String,
    /// The group shown; `None`: every machine.
    pub group_id: Option<i32>,
    pub group_name: Option<String>,
    /// Who made it, by user name (`None`: an API token, or a user since deleted).
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When it was revoked; `None`: it is live.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The select list and source of [`BoardLink`], for `concat!` (queries must be static strings).
macro_rules! links {
    () => {
        "SELECT b.id, b.name, b.machine_group_id AS group_id, g.name AS group_name, u.username AS created_by, \
         b.created_at, b.revoked_at \
         FROM board_link b LEFT JOIN machine_group g ON g.id = b.machine_group_id \
         LEFT JOIN app_user u ON u.id = b.created_by"
    };
}

/// Makes a link to the board of `group` (or of every machine); returns it and its secret, which is shown
/// only this once.
pub async fn create_board_link(
    pool: &PgPool,
    name: &str,
    group: Option<i32>,
    created_by: Option<i32>,
    now: DateTime<Utc>,
) -> Result<(BoardLink, String), Error> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Error::field("name", "a board link's name has 1 to 100 characters, like `Hall 2 entrance`"));
    }
    let secret = password::new_secret();
    let id: i32 = sqlx::query_scalar(
        "INSERT INTO board_link (name, machine_group_id, digest, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(name)
    .bind(group)
    .bind(password::digest(&secret))
    .bind(created_by)
    .bind(now)
    .fetch_one(pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            Error::field("group", "that machine group does not exist: choose one from the list")
        }
        _ => Error::Database(e),
    })?;
    let link = sqlx::query_as(concat!(links!(), " WHERE b.id = $1")).bind(id).fetch_one(pool).await?;
    Ok((link, secret))
}

/// Every board link, revoked ones included, newest first.
pub async fn list_board_links(pool: &PgPool) -> Result<Vec<BoardLink>, Error> {
    Ok(sqlx::query_as(concat!(links!(), " ORDER BY b.id DESC")).fetch_all(pool).await?)
}

/// Revokes a board link: the screen showing it is refused from its next request on.
pub async fn revoke_board_link(pool: &PgPool, id: i32, now: DateTime<Utc>) -> Result<(), Error> {
    let n = sqlx::query("UPDATE board_link SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(Error::NotFound(format!("there is no board link {id}")));
    }
    Ok(())
}

/// The live board link whose secret is `secret`.
pub async fn board_link(pool: &PgPool, secret: &str) -> Result<Option<BoardLink>, Error> {
    Ok(sqlx::query_as(concat!(links!(), " WHERE b.digest = $1 AND b.revoked_at IS NULL"))
        .bind(password::digest(secret))
        .fetch_optional(pool)
        .await?)
}

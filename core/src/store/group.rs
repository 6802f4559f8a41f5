//! Machine groups: how machines are gathered for dashboards, reports and roll-ups (reference §5.3
//! `/edit-machine-group`). Groups are named uniquely and never deleted.

use sqlx::{PgExecutor, PgPool};

use crate::error::Error;

/// A group as listed to administrators.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GroupSummary {
    pub id: i32,
    pub name: String,
    /// How many machines (active or not) are in it.
    pub machine_count: i64,
}

/// A machine of a group.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GroupMachine {
    pub id: i32,
    pub name: String,
    pub active: bool,
}

/// A group with its machines, by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: i32,
    pub name: String,
    pub machines: Vec<GroupMachine>,
}

/// Every group, by id, with how many machines it has.
pub async fn list_groups(pool: &PgPool) -> Result<Vec<GroupSummary>, Error> {
    Ok(sqlx::query_as(
        "SELECT g.id, g.name, count(m.id) AS machine_count FROM machine_group g \
         LEFT JOIN machine m ON m.group_id = g.id GROUP BY g.id ORDER BY g.id",
    )
    .fetch_all(pool)
    .await?)
}

/// The group `id` and its machines.
pub async fn group(pool: &PgPool, id: i32) -> Result<Group, Error> {
    let name: String = sqlx::query_scalar("SELECT name FROM machine_group WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| not_found(&id.to_string()))?;
    let machines = sqlx::query_as("SELECT id, name, active FROM machine WHERE group_id = $1 ORDER BY id")
        .bind(id)
        .fetch_all(pool)
        .await?;
    Ok(Group { id, name, machines })
}

/// The id of the group named `group`, or with that id (a name wins over an id).
pub async fn group_id_by_name<'c>(db: impl PgExecutor<'c>, group: &str) -> Result<i32, Error> {
    let group = group.trim();
    let id: Option<i32> = sqlx::query_scalar(
        "SELECT id FROM machine_group WHERE name = $1 OR id::text = $1 ORDER BY name = $1 DESC LIMIT 1",
    )
    .bind(group)
    .fetch_optional(db)
    .await?;
    id.ok_or_else(|| not_found(group))
}

fn not_found(group: &str) -> Error {
    Error::NotFound(format!("there is no machine group `{group}` (by name or id): see `oee-server group list`"))
}

/// Creates a group; returns its id.
pub async fn create_group(pool: &PgPool, name: &str) -> Result<i32, Error> {
    let name = check_name(name)?;
    sqlx::query_scalar("INSERT INTO machine_group (name) VALUES ($1) RETURNING id")
        .bind(name)
        .fetch_one(pool)
        .await
        .map_err(|e| duplicate_name(e, name))
}

/// Renames the group `id`.
pub async fn rename_group(pool: &PgPool, id: i32, name: &str) -> Result<(), Error> {
    let name = check_name(name)?;
    let done = sqlx::query("UPDATE machine_group SET name = $2 WHERE id = $1")
        .bind(id)
        .bind(name)
        .execute(pool)
        .await
        .map_err(|e| duplicate_name(e, name))?;
    if done.rows_affected() == 0 {
        return Err(not_found(&id.to_string()));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<&str, Error> {
    super::check_name("group", name)
}

fn duplicate_name(e: sqlx::Error, name: &str) -> Error {
    super::duplicate_name(e, "group", name)
}

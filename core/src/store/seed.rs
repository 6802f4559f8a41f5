//! First-run seeding: the world the reference system starts with (reference §9.2), so its clients see
//! the same ids, texts and colours.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::error::Error;
use crate::password;
use crate::shift::standard_day;

/// The seeded administrator, as in the reference.
pub const DEFAULT_ADMIN: &str = "admin";
/// The seeded administrator's password; first start tells the user to change it.
pub const DEFAULT_ADMIN_PASSWORD: &str = "digitme2";

/// Codes 1–4 with the reference's ids, texts, states and colours, and their loss categories.
pub const SEEDED_CODES: [(i32, &str, &str, i16, &str, &str); 4] = [
    (1, "Up", "The machine is in use", 1, "#00ff80", "running"),
    (2, "Down", "Downtime that doesn't have an explanation from the user", 2, "#b22222", "breakdown"),
    (3, "Closed", "Planned downtime outside of shift hours", 3, "#C6C6C6", "not_scheduled"),
    (4, "Overtime", "Uptime outside of shift hours", 4, "#00ff80", "running"),
];

/// What a start-up's seeding did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    /// This was the first start of this database.
    pub first_run: bool,
    /// The default administrator was created (and its password must be changed).
    pub created_admin: bool,
}

/// Seeds a new database; on any later start it changes nothing. Safe to run from several processes at
/// once (a transaction-scoped advisory lock serialises them).
pub async fn seed_first_run(pool: &PgPool, now: DateTime<Utc>) -> Result<SeedReport, Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(7426001)").execute(&mut *tx).await?;
    let first_run = sqlx::query("INSERT INTO settings (id, first_start) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    if first_run {
        for (id, short, long, state, colour, category) in SEEDED_CODES {
            sqlx::query(
                "INSERT INTO activity_code \
                 (id, short_description, long_description, machine_state, graph_colour, loss_category) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(short)
            .bind(long)
            .bind(state)
            .bind(colour)
            .bind(category)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("INSERT INTO machine_group (name) VALUES ('Group 1') ON CONFLICT (name) DO NOTHING")
            .execute(&mut *tx)
            .await?;
        let shift_id: i32 = sqlx::query_scalar(
            "INSERT INTO shift (name) VALUES ('9-5') ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        )
        .fetch_one(&mut *tx)
        .await?;
        let periods: Vec<_> = (0..7u8).flat_map(|d| standard_day(d, 9 * 60, 17 * 60)).collect();
        super::schedule::insert_shift_periods(&mut tx, shift_id, &periods).await?;
    }
    let no_users: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM app_user)").fetch_one(&mut *tx).await?;
    if no_users {
        let hash = password::hash(DEFAULT_ADMIN_PASSWORD)?;
        sqlx::query(
            "INSERT INTO app_user (username, password_hash, role, must_change_password) VALUES ($1, $2, 'admin', true)",
        )
        .bind(DEFAULT_ADMIN)
        .bind(hash)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(SeedReport { first_run, created_admin: no_users })
}

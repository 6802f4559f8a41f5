//! Activity (reason) codes.

use sqlx::PgPool;

use crate::error::Error;
use crate::oee::LossCategory;

/// An activity code as devices and tablets list it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ActivityCode {
    pub id: i32,
    pub short_description: String,
    pub long_description: String,
    pub machine_state: i16,
    pub graph_colour: String,
    pub active: bool,
    /// How the code's time counts in OEE.
    #[sqlx(try_from = "String")]
    pub loss_category: LossCategory,
}

/// Every code, active or not, by id.
pub async fn list_codes(pool: &PgPool) -> Result<Vec<ActivityCode>, Error> {
    Ok(sqlx::query_as(
        "SELECT id, short_description, long_description, machine_state, graph_colour, active, loss_category \
         FROM activity_code ORDER BY id",
    )
    .fetch_all(pool)
    .await?)
}

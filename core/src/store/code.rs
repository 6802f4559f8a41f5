//! Activity (reason) codes: listing them, and creating and editing them as administrators do (reference
//! §5.3 `/edit-activity-code`). This is the one place a code is checked and written: codes are never
//! deleted, codes 1–4 keep their machine states and stay active (the state machine moves machines into
//! them), and a code's loss category must suit its state.

use sqlx::{PgExecutor, PgPool, Postgres, Transaction};

use crate::activity::{MachineState, OVERTIME_CODE_ID};
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

/// Longest short description (the column's width).
pub const SHORT_DESCRIPTION_MAX: usize = 100;

/// What an administrator gives for a new or edited code, as the form and the command line have it.
/// [`create_code`] and [`update_code`] check every field and refuse a wrong one with
/// [`Error::Field`] naming it (the form's field names: `short_description`, `long_description`,
/// `machine_state`, `loss_category`, `graph_colour`, `active`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeInput {
    pub short_description: String,
    pub long_description: String,
    /// 1 uptime, 2 unplanned downtime, 3 planned downtime, 4 overtime.
    pub machine_state: i16,
    /// A loss category's name (`running`, `breakdown`, …); empty: the usual one for the state.
    pub loss_category: String,
    /// `#RRGGBB`; the `#` may be left out.
    pub graph_colour: String,
    pub active: bool,
}

impl From<&ActivityCode> for CodeInput {
    /// The code as it is, to edit some of its fields.
    fn from(c: &ActivityCode) -> CodeInput {
        CodeInput {
            short_description: c.short_description.clone(),
            long_description: c.long_description.clone(),
            machine_state: c.machine_state,
            loss_category: c.loss_category.as_str().to_string(),
            graph_colour: c.graph_colour.clone(),
            active: c.active,
        }
    }
}

/// A [`CodeInput`] whose fields are each valid on their own.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CheckedCode {
    short_description: String,
    long_description: String,
    state: MachineState,
    category: LossCategory,
    colour: String,
    active: bool,
}

/// Checks what can be checked without the database: lengths, the state, the category for the state, the
/// colour.
fn check_input(input: &CodeInput) -> Result<CheckedCode, Error> {
    let short = input.short_description.trim();
    if short.is_empty() || short.chars().count() > SHORT_DESCRIPTION_MAX {
        return Err(Error::field(
            "short_description",
            format!("a code's short description must have 1 to {SHORT_DESCRIPTION_MAX} characters"),
        ));
    }
    let state = MachineState::try_from(input.machine_state).map_err(|_| {
        Error::field(
            "machine_state",
            format!(
                "the machine state must be 1 (uptime), 2 (unplanned downtime), 3 (planned downtime) or \
                 4 (overtime), not {}",
                input.machine_state
            ),
        )
    })?;
    let category = match input.loss_category.trim() {
        "" => LossCategory::default_for(state),
        name => name.parse::<LossCategory>().map_err(|e| Error::field("loss_category", e))?,
    };
    if !category.suits(state) {
        let suited: Vec<&str> = LossCategory::ALL.iter().filter(|c| c.suits(state)).map(|c| c.as_str()).collect();
        return Err(Error::field(
            "loss_category",
            format!(
                "a code in state {} ({}) cannot count as {}: choose {}",
                i16::from(state),
                state_name(state),
                category.as_str(),
                suited.join(", ")
            ),
        ));
    }
    Ok(CheckedCode {
        short_description: short.to_string(),
        long_description: input.long_description.trim().to_string(),
        state,
        category,
        colour: normalise_colour(&input.graph_colour)?,
        active: input.active,
    })
}

/// `#RRGGBB` from `#RRGGBB` or `RRGGBB` (hex digits in either case, kept as given). Anything else is
/// refused: the reference silently stored white instead.
pub fn normalise_colour(colour: &str) -> Result<String, Error> {
    let c = colour.trim();
    let hex = c.strip_prefix('#').unwrap_or(c);
    if hex.len() == 6 && hex.chars().all(|ch| ch.is_ascii_hexdigit()) {
        Ok(format!("#{hex}"))
    } else {
        Err(Error::field(
            "graph_colour",
            format!("`{c}` is not a colour: give six hexadecimal digits as #RRGGBB, e.g. #FF8000 for orange"),
        ))
    }
}

/// What people call a machine state.
pub fn state_name(state: MachineState) -> &'static str {
    match state {
        MachineState::Uptime => "uptime",
        MachineState::UnplannedDowntime => "unplanned downtime",
        MachineState::PlannedDowntime => "planned downtime",
        MachineState::Overtime => "overtime",
    }
}

/// Whether `id` is one of the four codes the state machine moves machines into (Up, Down, Closed, Overtime).
pub fn is_default_code(id: i32) -> bool {
    (1..=OVERTIME_CODE_ID).contains(&id)
}

const SELECT_CODE: &str = "SELECT id, short_description, long_description, machine_state, graph_colour, active, \
                           loss_category FROM activity_code";

/// Every code, active or not, by id.
pub async fn list_codes(pool: &PgPool) -> Result<Vec<ActivityCode>, Error> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_CODE} ORDER BY id"))).fetch_all(pool).await?)
}

/// The code `id`.
pub async fn code<'c>(db: impl PgExecutor<'c>, id: i32) -> Result<ActivityCode, Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_CODE} WHERE id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("there is no activity code {id}: see `oee-server code list`")))
}

/// The id of the code whose short description is `code`, or with that id (a description wins over an id).
pub async fn code_id_by_name<'c>(db: impl PgExecutor<'c>, code: &str) -> Result<i32, Error> {
    let code = code.trim();
    let id: Option<i32> = sqlx::query_scalar(
        "SELECT id FROM activity_code WHERE short_description = $1 OR id::text = $1 \
         ORDER BY short_description = $1 DESC LIMIT 1",
    )
    .bind(code)
    .fetch_optional(db)
    .await?;
    id.ok_or_else(|| {
        Error::NotFound(format!(
            "there is no activity code `{code}` (by description or id): see `oee-server code list`"
        ))
    })
}

/// Creates a code with the next id (the highest so far plus one, as the reference numbered them); returns it.
pub async fn create_code(pool: &PgPool, input: &CodeInput) -> Result<ActivityCode, Error> {
    let c = check_input(input)?;
    let mut tx = pool.begin().await?;
    // Two codes created at once would otherwise take the same id.
    sqlx::query("SELECT pg_advisory_xact_lock(7426002)").execute(&mut *tx).await?;
    check_unique_description(&mut tx, &c.short_description, None).await?;
    let id: i32 = sqlx::query_scalar("SELECT COALESCE(max(id), 0) + 1 FROM activity_code").fetch_one(&mut *tx).await?;
    write_code(&mut tx, id, &c, true).await?;
    let created = code(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(created)
}

/// Changes the code `id` to `input`; returns it as stored. Refused: a new machine state for codes 1–4, or
/// for a code a machine is in right now or starts its jobs in; deactivating codes 1–4 or a code a machine
/// starts its jobs in.
pub async fn update_code(pool: &PgPool, id: i32, input: &CodeInput) -> Result<ActivityCode, Error> {
    let c = check_input(input)?;
    let mut tx = pool.begin().await?;
    let old: ActivityCode = sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_CODE} WHERE id = $1 FOR UPDATE")))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::NotFound(format!("there is no activity code {id}: see `oee-server code list`")))?;
    let state_changes = old.machine_state != i16::from(c.state);
    if is_default_code(id) && state_changes {
        return Err(Error::field(
            "machine_state",
            format!(
                "code {id} (`{}`) is one of the four codes machines are moved into by the shift schedule and \
                 jobs: its machine state stays {} ({})",
                old.short_description,
                old.machine_state,
                MachineState::try_from(old.machine_state).map(state_name).unwrap_or("unknown")
            ),
        ));
    }
    if is_default_code(id) && !c.active {
        return Err(Error::field(
            "active",
            format!(
                "code {id} (`{}`) is one of the four codes machines are moved into by the shift schedule and \
                 jobs: it cannot be deactivated",
                old.short_description
            ),
        ));
    }
    if state_changes {
        let in_it = machine_names(&mut tx, "current_code_id", id).await?;
        if !in_it.is_empty() {
            return Err(Error::field(
                "machine_state",
                format!(
                    "{} in this code now: move {} to another code before changing its machine state",
                    describe_machines(&in_it),
                    if in_it.len() == 1 { "it" } else { "them" }
                ),
            ));
        }
    }
    if c.state != MachineState::Uptime || !c.active {
        let starting = machine_names(&mut tx, "job_start_activity_id", id).await?;
        if !starting.is_empty() {
            let field = if c.active { "machine_state" } else { "active" };
            return Err(Error::field(
                field,
                format!(
                    "{} start{} jobs in this code, which must stay an active uptime code: give {} another job \
                     start code first",
                    describe_machines(&starting),
                    if starting.len() == 1 { "s" } else { "" },
                    if starting.len() == 1 { "it" } else { "them" }
                ),
            ));
        }
    }
    check_unique_description(&mut tx, &c.short_description, Some(id)).await?;
    write_code(&mut tx, id, &c, false).await?;
    let updated = code(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(updated)
}

/// Stores the checked code `c` as code `id`: a `new` one, or over the existing one.
async fn write_code(tx: &mut Transaction<'_, Postgres>, id: i32, c: &CheckedCode, new: bool) -> Result<(), Error> {
    let written = sqlx::query(
        "INSERT INTO activity_code \
         (id, short_description, long_description, machine_state, loss_category, graph_colour, active) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (id) DO UPDATE SET short_description = EXCLUDED.short_description, \
             long_description = EXCLUDED.long_description, machine_state = EXCLUDED.machine_state, \
             loss_category = EXCLUDED.loss_category, graph_colour = EXCLUDED.graph_colour, active = EXCLUDED.active \
         WHERE NOT $8",
    )
    .bind(id)
    .bind(&c.short_description)
    .bind(&c.long_description)
    .bind(i16::from(c.state))
    .bind(c.category.as_str())
    .bind(&c.colour)
    .bind(c.active)
    .bind(new)
    .execute(&mut **tx)
    .await
    .map_err(|e| duplicate_description(e, &c.short_description))?;
    if written.rows_affected() == 0 {
        // Only a code inserted outside create_code at the same moment can take the id.
        return Err(Error::Conflict(format!("code {id} was created elsewhere at the same moment: try again")));
    }
    Ok(())
}

/// Names of the machines whose `column` is the code `id`.
async fn machine_names(tx: &mut Transaction<'_, Postgres>, column: &str, id: i32) -> Result<Vec<String>, Error> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT name FROM machine WHERE {column} = $1 ORDER BY id")))
        .bind(id)
        .fetch_all(&mut **tx)
        .await?)
}

fn describe_machines(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.len() {
        1 => format!("machine {}", quoted[0]),
        _ => format!("machines {}", quoted.join(", ")),
    }
}

async fn check_unique_description(
    tx: &mut Transaction<'_, Postgres>,
    short: &str,
    except: Option<i32>,
) -> Result<(), Error> {
    let taken: Option<i32> =
        sqlx::query_scalar("SELECT id FROM activity_code WHERE short_description = $1 AND id IS DISTINCT FROM $2")
            .bind(short)
            .bind(except)
            .fetch_optional(&mut **tx)
            .await?;
    match taken {
        Some(other) => Err(already_exists(short, other)),
        None => Ok(()),
    }
}

fn already_exists(short: &str, other: i32) -> Error {
    Error::field("short_description", format!("code {other} is already called `{short}`: choose another description"))
}

/// A unique violation (a code given the same description at the same moment) as the field error.
fn duplicate_description(e: sqlx::Error, short: &str) -> Error {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => Error::field(
            "short_description",
            format!("a code called `{short}` already exists: choose another description"),
        ),
        _ => Error::Database(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(state: i16, category: &str, colour: &str) -> CodeInput {
        CodeInput {
            short_description: " Jam ".into(),
            long_description: "Material jammed in the feeder".into(),
            machine_state: state,
            loss_category: category.into(),
            graph_colour: colour.into(),
            active: true,
        }
    }

    fn refused_field(i: &CodeInput) -> &'static str {
        match check_input(i) {
            Err(Error::Field { field, .. }) => field,
            other => panic!("{i:?} was not refused with a field error: {other:?}"),
        }
    }

    #[test]
    fn colours_are_six_hex_digits_with_or_without_a_hash() {
        assert_eq!(normalise_colour("#ff8000").unwrap(), "#ff8000");
        assert_eq!(normalise_colour(" A0B1C2 ").unwrap(), "#A0B1C2");
        for bad in ["", "#", "red", "#fff", "#GG0000", "##ff8000", "#ff80000", "ff 800"] {
            let e = normalise_colour(bad).unwrap_err();
            assert!(matches!(e, Error::Field { field: "graph_colour", .. }), "{bad}: {e:?}");
            assert!(e.to_string().contains("#RRGGBB"), "{e}");
        }
    }

    #[test]
    fn a_valid_code_is_trimmed_and_gets_the_usual_category_of_its_state() {
        let c = check_input(&input(2, "", "b22222")).unwrap();
        assert_eq!(c.short_description, "Jam");
        assert_eq!(
            (c.state, c.category, c.colour.as_str()),
            (MachineState::UnplannedDowntime, LossCategory::Breakdown, "#b22222")
        );
        let c = check_input(&input(3, "setup", "#C6C6C6")).unwrap();
        assert_eq!(c.category, LossCategory::Setup);
    }

    #[test]
    fn each_wrong_field_is_named() {
        let cases = [
            (CodeInput { short_description: "  ".into(), ..input(2, "", "#000000") }, "short_description"),
            (CodeInput { short_description: "x".repeat(101), ..input(2, "", "#000000") }, "short_description"),
            (input(0, "", "#000000"), "machine_state"),
            (input(5, "", "#000000"), "machine_state"),
            (input(2, "downtime", "#000000"), "loss_category"),
            (input(1, "breakdown", "#000000"), "loss_category"),
            (input(3, "running", "#000000"), "loss_category"),
            (input(2, "breakdown", "white"), "graph_colour"),
        ];
        for (i, field) in cases {
            assert_eq!(refused_field(&i), field, "{i:?}");
        }
        // 100 characters (not bytes) fit
        assert!(check_input(&CodeInput { short_description: "é".repeat(100), ..input(2, "", "#000000") }).is_ok());
        let e = check_input(&input(1, "breakdown", "#000000")).unwrap_err().to_string();
        assert!(e.contains("running, minor_stop, reduced_speed"), "{e}");
    }
}

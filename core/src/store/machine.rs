//! Machines: creating them, listing them, their settings as administrators edit them (reference §5.3
//! `/edit-machine`), and their current status. Machines are never deleted: a machine taken out of use is
//! made inactive.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::{PgPool, Postgres, Transaction};

use crate::activity::{CLOSED_CODE_ID, DOWN_CODE_ID, MachineState, ScheduleState, UP_CODE_ID};
use crate::error::Error;
use crate::payload::MachineStatus;
use crate::shift::{Period, schedule_at};
use crate::tablet::{CycleInput, JobNumberInput, Workflow};
use crate::topic::slugify;

/// A machine as listed to administrators.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MachineSummary {
    pub id: i32,
    pub name: String,
    pub topic_name: Option<String>,
    pub group_name: Option<String>,
    pub shift_name: Option<String>,
    pub activity_code: String,
    /// An inactive machine is kept (with its history) but no longer moved by its shift pattern.
    pub active: bool,
}

/// The id of the machine named `machine`, or with that id (a name wins over an id).
pub async fn machine_id_by_name<'c>(db: impl sqlx::PgExecutor<'c>, machine: &str) -> Result<i32, Error> {
    let machine = machine.trim();
    let id: Option<i32> =
        sqlx::query_scalar("SELECT id FROM machine WHERE name = $1 OR id::text = $1 ORDER BY name = $1 DESC LIMIT 1")
            .bind(machine)
            .fetch_optional(db)
            .await?;
    id.ok_or_else(|| {
        Error::NotFound(format!(
            "there is no machine named `{machine}` (or with that id): see `oee-server machine list`"
        ))
    })
}

/// The id of the machine a topic segment names (its id or its topic name), if there is one.
pub async fn machine_id_by_segment(pool: &PgPool, segment: &str) -> Result<Option<i32>, Error> {
    Ok(sqlx::query_scalar("SELECT id FROM machine WHERE id::text = $1 OR topic_name = $1 LIMIT 1")
        .bind(segment)
        .fetch_optional(pool)
        .await?)
}

/// Creates a machine in the first group and shift pattern, in the schedule state the pattern gives now,
/// with a first open activity: Down in shift, Closed out of shift; the scheduler takes it from `now` on. Its
/// topic name is derived from its name.
pub async fn add_machine(pool: &PgPool, name: &str, tz: Tz, now: DateTime<Utc>) -> Result<MachineSummary, Error> {
    let name = check_name(name)?;
    let mut tx = pool.begin().await?;
    let group_id: Option<i32> = sqlx::query_scalar("SELECT min(id) FROM machine_group").fetch_one(&mut *tx).await?;
    let shift_id: Option<i32> = sqlx::query_scalar("SELECT min(id) FROM shift").fetch_one(&mut *tx).await?;
    let schedule = match shift_id {
        Some(id) => schedule_at(&shift_periods(&mut tx, id, now).await?, tz, now),
        None => ScheduleState::OutOfShift,
    };
    let code = if schedule == ScheduleState::InShift { DOWN_CODE_ID } else { CLOSED_CODE_ID };
    let slug = free_slug(&mut tx, &slugify(name)).await?;
    let id: i32 = sqlx::query_scalar(
        "INSERT INTO machine (name, topic_name, group_id, shift_id, schedule_state, current_code_id, current_since, \
                              schedule_applied_until) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
    )
    .bind(name)
    .bind(&slug)
    .bind(group_id)
    .bind(shift_id)
    .bind(i16::from(schedule))
    .bind(code)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| duplicate_name(e, name))?;
    sqlx::query("INSERT INTO activity (machine_id, activity_code_id, start_time) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(code)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    list_machines(pool)
        .await?
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| Error::NotFound(format!("machine {id} vanished after it was created")))
}

/// The settings [`add_machine`] gives a new machine named `name` (the first group and shift pattern, the
/// table's defaults otherwise): what a form for a new machine starts from.
pub async fn new_machine_settings(pool: &PgPool, name: &str) -> Result<MachineSettings, Error> {
    let (group_id, shift_id): (Option<i32>, Option<i32>) =
        sqlx::query_as("SELECT (SELECT min(id) FROM machine_group), (SELECT min(id) FROM shift)")
            .fetch_one(pool)
            .await?;
    Ok(MachineSettings {
        name: name.to_string(),
        active: true,
        group_id,
        shift_id,
        workflow: Workflow::Default,
        job_start_input: CycleInput::CycleTimeSeconds,
        autofill: false,
        autofill_amount: 0.0,
        job_start_code_id: UP_CODE_ID,
        job_number_input: JobNumberInput::Number,
        end_job_on_shift_end: true,
        excluded_code_ids: Vec::new(),
        topic_name: None,
    })
}

fn check_name(name: &str) -> Result<&str, Error> {
    super::check_name("machine", name)
}

fn duplicate_name(e: sqlx::Error, name: &str) -> Error {
    super::duplicate_name(e, "machine", name)
}

/// Everything an administrator sets on a machine (reference §5.3 `/edit-machine`). [`update_machine_settings`]
/// checks every field and refuses a wrong one with [`Error::Field`] naming it as the form does: `name`,
/// `group`, `shift_pattern`, `workflow_type`, `job_start_input_type`, `autofill_input_amount`,
/// `job_start_activity`, `job_number_input_type`, `excluded_codes`.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineSettings {
    pub name: String,
    /// An inactive machine keeps its history but is no longer moved by its shift pattern.
    pub active: bool,
    /// `None`: in no group.
    pub group_id: Option<i32>,
    /// The shift pattern it follows. `None` only for a machine added while there was no pattern: once it
    /// follows one it always follows one (a pattern without shifts keeps it out of shift).
    pub shift_id: Option<i32>,
    pub workflow: Workflow,
    /// How the tablet asks for the job's speed.
    pub job_start_input: CycleInput,
    /// Whether the tablet pre-fills the speed field with `autofill_amount`.
    pub autofill: bool,
    /// The pre-filled speed; at least 0. Stored as 0 while `autofill` is off, because the tablet API (like the
    /// reference's) pre-fills any amount that is not 0.
    pub autofill_amount: f64,
    /// The code a started job moves the machine to: an active uptime code.
    pub job_start_code_id: i32,
    pub job_number_input: JobNumberInput,
    /// End the running job when the shift ends (else the machine goes on in overtime).
    pub end_job_on_shift_end: bool,
    /// Codes the machine's tablet does not offer (never codes 1–4), by id.
    pub excluded_code_ids: Vec<i32>,
    /// How MQTT topics may name the machine besides its id: shown, never changed here (devices use it).
    pub topic_name: Option<String>,
}

type SettingsRow =
    (String, bool, Option<i32>, Option<i32>, String, String, bool, f64, i32, String, bool, Option<String>);

/// The settings of machine `id`.
pub async fn machine_settings(pool: &PgPool, id: i32) -> Result<MachineSettings, Error> {
    let row: Option<SettingsRow> = sqlx::query_as(
        "SELECT name, active, group_id, shift_id, workflow_type, job_start_input_type, autofill_job_start_input, \
                autofill_job_start_amount, job_start_activity_id, job_number_input_type, end_job_on_shift_end, \
                topic_name \
         FROM machine WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let (name, active, group_id, shift_id, workflow, input, autofill, amount, start_code, number, end_job, topic) =
        row.ok_or_else(|| machine_not_found(id))?;
    let excluded_code_ids = sqlx::query_scalar(
        "SELECT activity_code_id FROM machine_activity_code_exclusion WHERE machine_id = $1 ORDER BY activity_code_id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(MachineSettings {
        name,
        active,
        group_id,
        shift_id,
        workflow: workflow.parse().map_err(Error::Invalid)?,
        job_start_input: input.parse().map_err(Error::Invalid)?,
        autofill,
        autofill_amount: amount,
        job_start_code_id: start_code,
        job_number_input: number.parse().map_err(Error::Invalid)?,
        end_job_on_shift_end: end_job,
        excluded_code_ids,
        topic_name: topic,
    })
}

fn machine_not_found(id: i32) -> Error {
    Error::NotFound(format!("there is no machine {id}: see `oee-server machine list`"))
}

/// The pre-filled speed to store: `amount` while autofill is on (it must be a number, at least 0), else 0.
fn autofill_amount(autofill: bool, amount: f64) -> Result<f64, Error> {
    if !autofill {
        return Ok(0.0);
    }
    if !amount.is_finite() || amount < 0.0 {
        return Err(Error::field(
            "autofill_input_amount",
            format!("the autofill amount must be a number of 0 or more, not {amount}"),
        ));
    }
    Ok(amount)
}

/// The excluded codes without repeats, in order, when none is one of codes 1–4.
fn check_exclusions(ids: &[i32]) -> Result<Vec<i32>, Error> {
    let mut out: Vec<i32> = ids.to_vec();
    out.sort_unstable();
    out.dedup();
    if let Some(id) = out.iter().find(|&&id| super::code::is_default_code(id)) {
        return Err(Error::field(
            "excluded_codes",
            format!("code {id} cannot be excluded: codes 1 to 4 are always offered (machines are moved into them)"),
        ));
    }
    Ok(out)
}

/// Changes machine `id`'s settings to `s` (its topic name is left as it is); returns them as stored.
///
/// Every field is checked first; then everything but the shift pattern is written in one transaction
/// under the machine's row lock. A new shift pattern is then applied by [`super::schedule::set_machine_shift`],
/// the one way a machine changes pattern, so the machine follows it from now on as after `oee-server
/// machine shift`.
pub async fn update_machine_settings(pool: &PgPool, id: i32, s: &MachineSettings) -> Result<MachineSettings, Error> {
    let mut tx = pool.begin().await?;
    let current_shift: Option<i32> =
        sqlx::query_scalar::<_, Option<i32>>("SELECT shift_id FROM machine WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| machine_not_found(id))?;
    let checked = check_settings(&mut tx, Some(id), current_shift, s).await?;
    sqlx::query(
        "UPDATE machine SET name = $2, active = $3, group_id = $4, workflow_type = $5, job_start_input_type = $6, \
                autofill_job_start_input = $7, autofill_job_start_amount = $8, job_start_activity_id = $9, \
                job_number_input_type = $10, end_job_on_shift_end = $11 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(checked.name)
    .bind(s.active)
    .bind(s.group_id)
    .bind(s.workflow.as_str())
    .bind(s.job_start_input.as_str())
    .bind(s.autofill)
    .bind(checked.amount)
    .bind(s.job_start_code_id)
    .bind(s.job_number_input.as_str())
    .bind(s.end_job_on_shift_end)
    .execute(&mut *tx)
    .await
    .map_err(|e| duplicate_name(e, checked.name))?;
    sqlx::query("DELETE FROM machine_activity_code_exclusion WHERE machine_id = $1").bind(id).execute(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO machine_activity_code_exclusion (machine_id, activity_code_id) SELECT $1, * FROM UNNEST($2::int4[])",
    )
    .bind(id)
    .bind(&checked.excluded)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if let Some(shift) = checked.new_shift {
        super::schedule::set_machine_shift(pool, checked.name, &shift).await?;
    }
    machine_settings(pool, id).await
}

/// Refuses settings `s` for a machine not added yet exactly as [`update_machine_settings`] would refuse
/// them once [`add_machine`] has added it (on the first shift pattern). Creating a machine is adding it and
/// then saving its settings; checking them first means a refused form or request adds no machine.
pub async fn check_new_machine_settings(pool: &PgPool, s: &MachineSettings) -> Result<(), Error> {
    let mut tx = pool.begin().await?;
    let first_shift: Option<i32> = sqlx::query_scalar("SELECT min(id) FROM shift").fetch_one(&mut *tx).await?;
    check_settings(&mut tx, None, first_shift, s).await?;
    // Nothing was written: ending the transaction only lets go of the job start code's row.
    tx.rollback().await?;
    Ok(())
}

/// Settings as [`check_settings`] passed them: what is written besides the fields taken as they are.
struct CheckedSettings<'s> {
    name: &'s str,
    amount: f64,
    excluded: Vec<i32>,
    /// The name of the shift pattern to move the machine to, when it changes.
    new_shift: Option<String>,
}

/// Checks every field of `s` for machine `id` (`None`: one about to be added) that follows `current_shift`.
async fn check_settings<'s>(
    tx: &mut Transaction<'_, Postgres>,
    id: Option<i32>,
    current_shift: Option<i32>,
    s: &'s MachineSettings,
) -> Result<CheckedSettings<'s>, Error> {
    let name = check_name(&s.name)?;
    let amount = autofill_amount(s.autofill, s.autofill_amount)?;
    let excluded = check_exclusions(&s.excluded_code_ids)?;
    let taken: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM machine WHERE name = $1 AND id IS DISTINCT FROM $2)")
            .bind(name)
            .bind(id)
            .fetch_one(&mut **tx)
            .await?;
    if taken {
        return Err(super::name_taken("machine", name));
    }
    if let Some(g) = s.group_id {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM machine_group WHERE id = $1)")
            .bind(g)
            .fetch_one(&mut **tx)
            .await?;
        if !exists {
            return Err(Error::field("group", format!("there is no machine group {g}: choose one of the groups")));
        }
    }
    let new_shift = match s.shift_id {
        unchanged if unchanged == current_shift => None,
        None => {
            return Err(Error::field(
                "shift_pattern",
                "choose a shift pattern: a machine follows one (a pattern with no shifts keeps it out of shift)",
            ));
        }
        Some(new) => Some(
            sqlx::query_scalar::<_, String>("SELECT name FROM shift WHERE id = $1")
                .bind(new)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| {
                    Error::field(
                        "shift_pattern",
                        format!("there is no shift pattern {new}: choose one of the patterns"),
                    )
                })?,
        ),
    };
    check_job_start_code(tx, s.job_start_code_id).await?;
    let known: Vec<i32> = sqlx::query_scalar("SELECT id FROM activity_code WHERE id = ANY($1)")
        .bind(&excluded)
        .fetch_all(&mut **tx)
        .await?;
    if let Some(id) = excluded.iter().find(|id| !known.contains(id)) {
        return Err(Error::field("excluded_codes", format!("there is no activity code {id} to exclude")));
    }
    if excluded.contains(&s.job_start_code_id) {
        return Err(Error::field(
            "excluded_codes",
            format!(
                "code {} is the machine's job start code: it cannot be excluded from its tablet",
                s.job_start_code_id
            ),
        ));
    }
    Ok(CheckedSettings { name, amount, excluded, new_shift })
}

/// Refuses a job start code that does not exist, is inactive or is not an uptime code. The code's row is
/// held (shared) until the transaction ends, so an edit of the code that would make it unfit waits and then
/// sees this machine among those that start jobs in it.
async fn check_job_start_code(tx: &mut Transaction<'_, Postgres>, id: i32) -> Result<(), Error> {
    let code: Option<(String, i16, bool)> =
        sqlx::query_as("SELECT short_description, machine_state, active FROM activity_code WHERE id = $1 FOR SHARE")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    let Some((short, state, active)) = code else {
        return Err(Error::field("job_start_activity", format!("there is no activity code {id}")));
    };
    if state != i16::from(MachineState::Uptime) {
        return Err(Error::field(
            "job_start_activity",
            format!(
                "code {id} (`{short}`) is not an uptime code (its machine state is {state}): a started job needs an \
                 uptime code, such as {UP_CODE_ID} (`Up`)"
            ),
        ));
    }
    if !active {
        return Err(Error::field(
            "job_start_activity",
            format!("code {id} (`{short}`) is inactive: choose an active uptime code"),
        ));
    }
    Ok(())
}

async fn free_slug(tx: &mut Transaction<'_, Postgres>, base: &str) -> Result<String, Error> {
    let taken: Vec<String> = sqlx::query_scalar("SELECT topic_name FROM machine WHERE topic_name LIKE $1 || '%'")
        .bind(base)
        .fetch_all(&mut **tx)
        .await?;
    let mut candidate = base.to_string();
    let mut n = 2;
    while taken.contains(&candidate) {
        candidate = format!("{base}-{n}");
        n += 1;
    }
    Ok(candidate)
}

/// The periods of one shift pattern in force at `at`.
pub async fn shift_periods(
    tx: &mut Transaction<'_, Postgres>,
    shift_id: i32,
    at: DateTime<Utc>,
) -> Result<Vec<Period>, Error> {
    let rows: Vec<(i16, i16, i16)> = sqlx::query_as(
        "SELECT day, start_minute, shift_state FROM shift_period WHERE version_id = \
         (SELECT id FROM shift_version WHERE shift_id = $1 AND effective_from <= $2 \
          ORDER BY effective_from DESC LIMIT 1)",
    )
    .bind(shift_id)
    .bind(at)
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter()
        .map(|(day, start, state)| {
            Ok(Period {
                day: day as u8,
                start_minute: start as u16,
                state: ScheduleState::try_from(state).map_err(Error::Invalid)?,
            })
        })
        .collect()
}

/// Every machine, by id.
pub async fn list_machines(pool: &PgPool) -> Result<Vec<MachineSummary>, Error> {
    Ok(sqlx::query_as(
        "SELECT m.id, m.name, m.topic_name, g.name AS group_name, s.name AS shift_name, \
                c.short_description AS activity_code, m.active \
         FROM machine m \
         LEFT JOIN machine_group g ON g.id = m.group_id \
         LEFT JOIN shift s ON s.id = m.shift_id \
         JOIN activity_code c ON c.id = m.current_code_id \
         ORDER BY m.id",
    )
    .fetch_all(pool)
    .await?)
}

/// Current status of the given machines (all machines when `ids` is `None`); `signal` is left `Ok` for the
/// caller to judge from `last_signal_at`.
pub async fn machine_statuses(pool: &PgPool, ids: Option<&[i32]>) -> Result<Vec<MachineStatus>, Error> {
    Ok(sqlx::query_as(
        "SELECT m.id AS machine_id, m.name AS machine_name, m.topic_name, m.current_code_id AS activity_code_id, \
                c.short_description AS activity_code, c.graph_colour AS colour, c.machine_state, \
                m.schedule_state, m.active_job_id AS job_id, j.job_number, m.current_user_id AS user_id, \
                m.current_since AS since, d.id AS input_device_id, d.active_user_session_id AS session_id, \
                GREATEST(m.current_since, t.ts, p.end_time) AS last_signal_at \
         FROM machine m \
         JOIN activity_code c ON c.id = m.current_code_id \
         LEFT JOIN job j ON j.id = m.active_job_id \
         LEFT JOIN input_device d ON d.machine_id = m.id \
         LEFT JOIN LATERAL (SELECT ts FROM telemetry WHERE machine_id = m.id ORDER BY ts DESC LIMIT 1) t ON true \
         LEFT JOIN LATERAL (SELECT end_time FROM production_quantity WHERE machine_id = m.id \
                            ORDER BY end_time DESC LIMIT 1) p ON true \
         WHERE $1::int4[] IS NULL OR m.id = ANY($1) \
         ORDER BY m.id",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?)
}

/// What the status page shows of a machine beside its status: its group and the name of the person at it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BoardMachine {
    pub machine_id: i32,
    pub group_id: Option<i32>,
    /// The user of the machine's current activity (the tablet's operator, or whoever changed it last).
    pub user_name: Option<String>,
}

/// Every active machine of the status page, by id, in group `group` when one is given.
pub async fn board_machines(pool: &PgPool, group: Option<i32>) -> Result<Vec<BoardMachine>, Error> {
    Ok(sqlx::query_as(
        "SELECT m.id AS machine_id, m.group_id, u.username AS user_name \
         FROM machine m LEFT JOIN app_user u ON u.id = m.current_user_id \
         WHERE m.active AND ($1::int4 IS NULL OR m.group_id = $1) \
         ORDER BY m.id",
    )
    .bind(group)
    .fetch_all(pool)
    .await?)
}

/// The name of user `id`, if there is one.
pub async fn user_name(pool: &PgPool, id: i32) -> Result<Option<String>, Error> {
    Ok(sqlx::query_scalar("SELECT username FROM app_user WHERE id = $1").bind(id).fetch_optional(pool).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NAME_MAX;

    fn field_of(r: Result<impl std::fmt::Debug, Error>) -> &'static str {
        match r {
            Err(Error::Field { field, .. }) => field,
            other => panic!("not refused with a field error: {other:?}"),
        }
    }

    #[test]
    fn names_are_trimmed_and_limited_in_characters() {
        assert_eq!(check_name(" Press 1 ").unwrap(), "Press 1");
        assert!(check_name(&"ä".repeat(NAME_MAX)).is_ok());
        assert_eq!(field_of(check_name(" ")), "name");
        assert_eq!(field_of(check_name(&"x".repeat(NAME_MAX + 1))), "name");
    }

    #[test]
    fn the_autofill_amount_is_a_number_of_zero_or_more_and_zero_while_off() {
        assert_eq!(autofill_amount(true, 12.5).unwrap(), 12.5);
        assert_eq!(autofill_amount(true, 0.0).unwrap(), 0.0);
        assert_eq!(autofill_amount(false, 30.0).unwrap(), 0.0);
        assert_eq!(autofill_amount(false, f64::NAN).unwrap(), 0.0);
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(field_of(autofill_amount(true, bad)), "autofill_input_amount", "{bad}");
        }
    }

    #[test]
    fn codes_one_to_four_cannot_be_excluded() {
        assert_eq!(check_exclusions(&[7, 5, 7]).unwrap(), vec![5, 7]);
        assert_eq!(check_exclusions(&[]).unwrap(), Vec::<i32>::new());
        for default in 1..=4 {
            assert_eq!(field_of(check_exclusions(&[5, default])), "excluded_codes");
        }
    }
}

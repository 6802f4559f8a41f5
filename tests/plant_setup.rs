//! Setting up a plant through `core::store`, the one place the admin pages and the command line check and
//! write activity codes, machine groups and machine settings: each wrong input is refused with the form
//! field it is about, and nothing is half-written.

mod common;

use chrono::TimeZone;
use common::*;
use oee_core::Error;
use oee_core::store::code::{self, CodeInput};
use oee_core::store::machine::{self, MachineSettings};
use oee_core::store::{group, schedule};
use oee_core::tablet::{CycleInput, JobNumberInput, Workflow};
use sqlx::PgPool;

/// The field a refusal names, and its message.
fn refused<T: std::fmt::Debug>(r: Result<T, Error>) -> (&'static str, String) {
    match r {
        Err(Error::Field { field, message }) => (field, message),
        other => panic!("not refused with a field error: {other:?}"),
    }
}

fn code_input(short: &str, state: i16, colour: &str) -> CodeInput {
    CodeInput {
        short_description: short.into(),
        long_description: String::new(),
        machine_state: state,
        loss_category: String::new(),
        graph_colour: colour.into(),
        active: true,
    }
}

async fn add_machine(pool: &PgPool, name: &str) -> i32 {
    // Any fixed instant: the machine's first activity only depends on the seeded 9-5 pattern at that instant.
    let at = chrono::Utc.with_ymd_and_hms(2024, 3, 4, 10, 0, 0).unwrap();
    machine::add_machine(pool, name, chrono_tz::UTC, at).await.unwrap().id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_are_checked_numbered_and_never_lose_their_meaning() {
    let db = seeded_db().await;
    let pool = db.pool().await;

    let jam = code::create_code(&pool, &code_input(" Jam ", 2, "ff8000")).await.unwrap();
    assert_eq!((jam.id, jam.short_description.as_str(), jam.graph_colour.as_str()), (5, "Jam", "#ff8000"));
    assert_eq!(jam.loss_category.as_str(), "breakdown", "the usual category of unplanned downtime");
    let setup =
        code::create_code(&pool, &CodeInput { loss_category: "setup".into(), ..code_input("Setup", 3, "#4080FF") })
            .await
            .unwrap();
    assert_eq!(setup.id, 6, "ids are the highest so far plus one");

    // each wrong field is named, and nothing is stored
    let (field, message) = refused(code::create_code(&pool, &code_input("Jam", 2, "#000000")).await);
    assert_eq!(field, "short_description");
    assert!(message.contains("code 5 is already called `Jam`"), "{message}");
    let (field, message) = refused(code::create_code(&pool, &code_input("Smoke", 2, "#FFFFF")).await);
    assert_eq!(field, "graph_colour");
    assert!(message.contains("#RRGGBB"), "{message}");
    let wrong_category = CodeInput { loss_category: "running".into(), ..code_input("Idle", 2, "#000000") };
    assert_eq!(refused(code::create_code(&pool, &wrong_category).await).0, "loss_category");
    assert_eq!(refused(code::create_code(&pool, &code_input("Odd", 7, "#000000")).await).0, "machine_state");
    assert_eq!(code::list_codes(&pool).await.unwrap().len(), 6);

    // codes 1-4 keep their states and stay active; their texts, colours and categories may change
    for id in 1..=4 {
        let before = code::code(&pool, id).await.unwrap();
        let other_state = if before.machine_state == 2 { 3 } else { 2 };
        let change = CodeInput { machine_state: other_state, loss_category: String::new(), ..CodeInput::from(&before) };
        let (field, message) = refused(code::update_code(&pool, id, &change).await);
        assert_eq!(field, "machine_state", "code {id}");
        assert!(message.contains(&format!("stays {}", before.machine_state)), "{message}");
        let off = CodeInput { active: false, ..CodeInput::from(&before) };
        assert_eq!(refused(code::update_code(&pool, id, &off).await).0, "active", "code {id}");
        assert_eq!(code::code(&pool, id).await.unwrap(), before, "code {id} is unchanged");
    }
    let closed = code::code(&pool, 3).await.unwrap();
    let planned = CodeInput {
        short_description: "Shut".into(),
        loss_category: "planned_stop".into(),
        graph_colour: "808080".into(),
        ..CodeInput::from(&closed)
    };
    let closed = code::update_code(&pool, 3, &planned).await.unwrap();
    assert_eq!(
        (closed.short_description.as_str(), closed.machine_state, closed.graph_colour.as_str()),
        ("Shut", 3, "#808080")
    );
    assert_eq!(closed.loss_category.as_str(), "planned_stop");

    // renaming onto another code's description is refused; other codes may be deactivated
    let (field, _) = refused(code::update_code(&pool, jam.id, &CodeInput::from(&setup)).await);
    assert_eq!(field, "short_description");
    let off = code::update_code(&pool, jam.id, &CodeInput { active: false, ..CodeInput::from(&jam) }).await.unwrap();
    assert!(!off.active);
    assert!(matches!(code::update_code(&pool, 99, &CodeInput::from(&jam)).await, Err(Error::NotFound(_))));
    assert!(matches!(code::code(&pool, 99).await, Err(Error::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_a_machine_needs_keeps_its_state() {
    let db = seeded_db().await;
    let pool = db.pool().await;
    let fast = code::create_code(&pool, &code_input("Fast run", 1, "#00aa00")).await.unwrap();
    let press = add_machine(&pool, "Press").await;
    let mut s = machine::machine_settings(&pool, press).await.unwrap();
    s.job_start_code_id = fast.id;
    machine::update_machine_settings(&pool, press, &s).await.unwrap();

    let (field, message) =
        refused(code::update_code(&pool, fast.id, &CodeInput { active: false, ..CodeInput::from(&fast) }).await);
    assert_eq!(field, "active");
    assert!(message.contains("machine `Press` starts jobs in this code"), "{message}");
    let down = CodeInput { machine_state: 2, loss_category: String::new(), ..CodeInput::from(&fast) };
    assert_eq!(refused(code::update_code(&pool, fast.id, &down).await).0, "machine_state");

    // a machine in a code now keeps that code's state too
    let jam = code::create_code(&pool, &code_input("Jam", 2, "#ff0000")).await.unwrap();
    sqlx::query("UPDATE machine SET current_code_id = $2 WHERE id = $1")
        .bind(press)
        .bind(jam.id)
        .execute(&pool)
        .await
        .unwrap();
    let planned = CodeInput { machine_state: 3, loss_category: String::new(), ..CodeInput::from(&jam) };
    let (field, message) = refused(code::update_code(&pool, jam.id, &planned).await);
    assert_eq!(field, "machine_state");
    assert!(message.contains("machine `Press` in this code now"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_have_unique_names_and_list_their_machines() {
    let db = seeded_db().await;
    let pool = db.pool().await;
    let presses = group::create_group(&pool, "Presses").await.unwrap();
    let (field, message) = refused(group::create_group(&pool, " Presses ").await);
    assert_eq!(field, "name");
    assert!(message.contains("a group named `Presses` already exists"), "{message}");
    assert_eq!(refused(group::create_group(&pool, "  ").await).0, "name");
    assert_eq!(refused(group::rename_group(&pool, presses, "Group 1").await).0, "name");
    assert!(matches!(group::rename_group(&pool, 99, "Lathes").await, Err(Error::NotFound(_))));
    assert!(matches!(group::group(&pool, 99).await, Err(Error::NotFound(_))));

    let m = add_machine(&pool, "Press 1").await;
    let mut s = machine::machine_settings(&pool, m).await.unwrap();
    s.group_id = Some(presses);
    machine::update_machine_settings(&pool, m, &s).await.unwrap();
    group::rename_group(&pool, presses, "Press shop").await.unwrap();
    let listed: Vec<(String, i64)> =
        group::list_groups(&pool).await.unwrap().into_iter().map(|g| (g.name, g.machine_count)).collect();
    assert_eq!(listed, vec![("Group 1".to_string(), 0), ("Press shop".to_string(), 1)]);
    let g = group::group(&pool, presses).await.unwrap();
    assert_eq!((g.name.as_str(), g.machines.len(), g.machines[0].name.as_str()), ("Press shop", 1, "Press 1"));
    assert_eq!(group::group_id_by_name(&pool, &presses.to_string()).await.unwrap(), presses);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_settings_round_trip_and_each_wrong_field_is_named() {
    let db = seeded_db().await;
    let pool = db.pool().await;
    let press = add_machine(&pool, "Press").await;
    add_machine(&pool, "Lathe").await;
    let fast = code::create_code(&pool, &code_input("Fast run", 1, "#00aa00")).await.unwrap();
    let jam = code::create_code(&pool, &code_input("Jam", 2, "#ff0000")).await.unwrap();
    let lathes = group::create_group(&pool, "Lathes").await.unwrap();
    let nights = schedule::add_shift(&pool, "Nights").await.unwrap();

    let before = machine::machine_settings(&pool, press).await.unwrap();
    assert_eq!(
        (before.workflow, before.job_start_code_id, before.topic_name.as_deref()),
        (Workflow::Default, 1, Some("press"))
    );
    let wanted = MachineSettings {
        name: " Press 1 ".into(),
        active: true,
        group_id: Some(lathes),
        shift_id: Some(nights),
        workflow: Workflow::Pausable,
        job_start_input: CycleInput::PartsPerHour,
        autofill: true,
        autofill_amount: 120.5,
        job_start_code_id: fast.id,
        job_number_input: JobNumberInput::Text,
        end_job_on_shift_end: false,
        excluded_code_ids: vec![jam.id, jam.id],
        topic_name: Some("ignored".into()),
    };
    let stored = machine::update_machine_settings(&pool, press, &wanted).await.unwrap();
    assert_eq!(
        stored,
        MachineSettings {
            name: "Press 1".into(),
            excluded_code_ids: vec![jam.id],
            topic_name: Some("press".into()),
            ..wanted.clone()
        }
    );
    assert_eq!(machine::machine_settings(&pool, press).await.unwrap(), stored);
    // the new pattern applies from now on, as after `machine shift`
    let applied: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT schedule_applied_until FROM machine WHERE id = $1")
            .bind(press)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(applied, None);

    // autofill off stores no amount (the tablet pre-fills any amount that is not 0)
    let off = machine::update_machine_settings(&pool, press, &MachineSettings { autofill: false, ..stored.clone() })
        .await
        .unwrap();
    assert_eq!((off.autofill, off.autofill_amount), (false, 0.0));
    assert_eq!(machine::update_machine_settings(&pool, press, &stored).await.unwrap(), stored);

    let inactive_up =
        code::create_code(&pool, &CodeInput { active: false, ..code_input("Trial", 1, "#00ff00") }).await.unwrap();
    let wrong = [
        (MachineSettings { name: "Lathe".into(), ..stored.clone() }, "name", "a machine named `Lathe` already exists"),
        (MachineSettings { name: "".into(), ..stored.clone() }, "name", "1 to 100 characters"),
        (MachineSettings { group_id: Some(99), ..stored.clone() }, "group", "no machine group 99"),
        (MachineSettings { shift_id: Some(99), ..stored.clone() }, "shift_pattern", "no shift pattern 99"),
        (MachineSettings { shift_id: None, ..stored.clone() }, "shift_pattern", "choose a shift pattern"),
        (MachineSettings { job_start_code_id: jam.id, ..stored.clone() }, "job_start_activity", "not an uptime code"),
        (MachineSettings { job_start_code_id: 4, ..stored.clone() }, "job_start_activity", "not an uptime code"),
        (MachineSettings { job_start_code_id: inactive_up.id, ..stored.clone() }, "job_start_activity", "inactive"),
        (MachineSettings { job_start_code_id: 99, ..stored.clone() }, "job_start_activity", "no activity code 99"),
        (MachineSettings { autofill_amount: -1.0, ..stored.clone() }, "autofill_input_amount", "0 or more"),
        (MachineSettings { autofill_amount: f64::NAN, ..stored.clone() }, "autofill_input_amount", "0 or more"),
        (MachineSettings { excluded_code_ids: vec![jam.id, 2], ..stored.clone() }, "excluded_codes", "code 2"),
        (MachineSettings { excluded_code_ids: vec![99], ..stored.clone() }, "excluded_codes", "no activity code 99"),
        (MachineSettings { excluded_code_ids: vec![fast.id], ..stored.clone() }, "excluded_codes", "job start code"),
    ];
    for (settings, field, words) in wrong {
        let (got, message) = refused(machine::update_machine_settings(&pool, press, &settings).await);
        assert_eq!(got, field, "{settings:?}");
        assert!(message.contains(words), "{field}: {message}");
        assert_eq!(machine::machine_settings(&pool, press).await.unwrap(), stored, "nothing was written for {field}");
    }
    assert!(matches!(machine::update_machine_settings(&pool, 99, &stored).await, Err(Error::NotFound(_))));
    assert!(matches!(machine::machine_settings(&pool, 99).await, Err(Error::NotFound(_))));

    // a machine is taken out of use, never deleted; adding one with a taken name names the field
    let retired =
        machine::update_machine_settings(&pool, press, &MachineSettings { active: false, ..stored }).await.unwrap();
    assert!(!retired.active);
    let at = chrono::Utc.with_ymd_and_hms(2024, 3, 4, 10, 0, 0).unwrap();
    assert_eq!(refused(machine::add_machine(&pool, "Lathe", chrono_tz::UTC, at).await).0, "name");
}

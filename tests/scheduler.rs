//! The shift scheduler: a week of shift transitions with an injected clock (a day without shifts,
//! midnight, a DST change), catching up after a restart, and pattern changes made beside a running server.

mod common;

use chrono::{DateTime, Duration, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Europe::London;
use common::*;
use oee_core::activity::{Code, MachineState, judge_job_start};
use oee_core::shift::{Week, WeekShift, parse_day_hours};
use oee_core::store::command::{apply_changes, insert_job, lock_machines, set_active_jobs};
use oee_core::store::machine::add_machine;
use oee_core::store::schedule::{
    add_shift, rename_shift, set_machine_shift, set_shift_days, set_shift_week, shift_id_by_name_or_id, shift_week,
};
use oee_ingest::scheduler::reconcile;
use rumqttc::QoS;
use sqlx::PgPool;

const CLOSED: i32 = 3;
const DOWN: i32 = 2;
const UP: i32 = 1;
const OVERTIME: i32 = 4;

fn utc(m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, m, d, h, 0, 0).unwrap()
}

/// Activities of a machine as (code, start, end), in time order.
async fn activities(pool: &PgPool, machine: i32) -> Vec<(i32, DateTime<Utc>, Option<DateTime<Utc>>)> {
    sqlx::query_as(
        "SELECT activity_code_id, start_time, end_time FROM activity WHERE machine_id = $1 ORDER BY start_time, id",
    )
    .bind(machine)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// (schedule state, current code, running job) of a machine.
async fn machine_state(pool: &PgPool, machine: i32) -> (i16, i32, Option<i64>) {
    sqlx::query_as("SELECT schedule_state, current_code_id, active_job_id FROM machine WHERE id = $1")
        .bind(machine)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Starts a job at `at` the way ingest does: locked row, judged start code, one transaction.
async fn start_job(pool: &PgPool, machine: i32, at: DateTime<Utc>) -> i64 {
    let mut tx = pool.begin().await.unwrap();
    let locked = lock_machines(&mut tx, &[machine], &[]).await.unwrap();
    let change = judge_job_start(&locked[0].snapshot, Code { id: UP, state: MachineState::Uptime }, at, None).unwrap();
    let job = insert_job(&mut tx, machine, "J1", Some(10.0), at).await.unwrap();
    set_active_jobs(&mut tx, &[(machine, Some(job))]).await.unwrap();
    apply_changes(&mut tx, &[change]).await.unwrap();
    tx.commit().await.unwrap();
    job
}

async fn set_end_job_on_shift_end(pool: &PgPool, machine: i32, value: bool) {
    sqlx::query("UPDATE machine SET end_job_on_shift_end = $2 WHERE id = $1")
        .bind(machine)
        .bind(value)
        .execute(pool)
        .await
        .unwrap();
}

async fn job_end(pool: &PgPool, job: i64) -> (bool, Option<DateTime<Utc>>) {
    sqlx::query_as("SELECT active, end_time FROM job WHERE id = $1").bind(job).fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_of_shifts_moves_the_machine_on_time_across_midnight_a_day_off_and_dst() {
    let db = seeded_db().await;
    let pool = db.pool().await;
    let week = TimeDelta::days(7);
    // Plant in London; the week of 2026-10-19, whose Sunday the clocks go back (BST, UTC+1, to GMT).
    add_shift(&pool, "week").await.unwrap();
    let weekdays: Vec<_> = (0..5).flat_map(|d| parse_day_hours(d, "0900-1700").unwrap()).collect();
    let set_at = utc(10, 19, 0);
    set_shift_days(&pool, "week", &[0, 1, 2, 3, 4], &weekdays, set_at).await.unwrap();
    set_shift_days(&pool, "week", &[5], &[], set_at).await.unwrap();
    set_shift_days(&pool, "week", &[6], &parse_day_hours(6, "0900-1700").unwrap(), set_at).await.unwrap();

    // Monday 06:00 BST: out of shift, Closed.
    let m = add_machine(&pool, "Press", London, utc(10, 19, 5)).await.unwrap().id;
    set_machine_shift(&pool, "Press", "week").await.unwrap();
    assert_eq!(reconcile(&pool, London, utc(10, 19, 5), week).await.unwrap(), Vec::<i32>::new());

    // Monday 12:00 BST: the shift began at 09:00 BST (08:00 UTC).
    assert_eq!(reconcile(&pool, London, utc(10, 19, 11), week).await.unwrap(), vec![m]);
    assert_eq!(machine_state(&pool, m).await, (1, DOWN, None));
    // the same instant again changes nothing
    assert!(reconcile(&pool, London, utc(10, 19, 11), week).await.unwrap().is_empty());
    assert_eq!(activities(&pool, m).await.len(), 2);

    // A job from 13:00 BST is ended by the shift end at 17:00 BST; Tuesday's shift opens at 09:00 BST.
    let job1 = start_job(&pool, m, utc(10, 19, 12)).await;
    reconcile(&pool, London, utc(10, 20, 9), week).await.unwrap();
    assert_eq!(job_end(&pool, job1).await, (false, Some(utc(10, 19, 16))));
    assert_eq!(machine_state(&pool, m).await, (1, DOWN, None));

    // Wednesday: a job allowed past shift end becomes Overtime at 17:00 BST...
    reconcile(&pool, London, utc(10, 21, 15), week).await.unwrap();
    set_end_job_on_shift_end(&pool, m, false).await;
    let job2 = start_job(&pool, m, utc(10, 21, 15)).await;
    reconcile(&pool, London, utc(10, 21, 17), week).await.unwrap();
    assert_eq!(machine_state(&pool, m).await, (3, OVERTIME, Some(job2)));
    // ...and, once jobs end with shifts again, the midnight period (00:00 BST Thursday) ends it.
    set_end_job_on_shift_end(&pool, m, true).await;
    reconcile(&pool, London, utc(10, 22, 0), week).await.unwrap();
    assert_eq!(job_end(&pool, job2).await, (false, Some(utc(10, 21, 23))));
    assert_eq!(machine_state(&pool, m).await, (3, CLOSED, None));

    // Saturday has no shifts: nothing happens on it, and it does not fail.
    reconcile(&pool, London, utc(10, 24, 11), week).await.unwrap();
    assert_eq!(machine_state(&pool, m).await, (3, CLOSED, None));
    // Sunday the clocks go back at 02:00 BST: its 09:00 is 09:00 UTC.
    reconcile(&pool, London, utc(10, 25, 12), week).await.unwrap();
    assert_eq!(machine_state(&pool, m).await.0, 1);
    reconcile(&pool, London, utc(10, 26, 10), week).await.unwrap();

    let want = vec![
        (CLOSED, utc(10, 19, 5)),
        (DOWN, utc(10, 19, 8)),
        (UP, utc(10, 19, 12)),
        (CLOSED, utc(10, 19, 16)),
        (DOWN, utc(10, 20, 8)),
        (CLOSED, utc(10, 20, 16)),
        (DOWN, utc(10, 21, 8)),
        (UP, utc(10, 21, 15)),
        (OVERTIME, utc(10, 21, 16)),
        (CLOSED, utc(10, 21, 23)),
        (DOWN, utc(10, 22, 8)),
        (CLOSED, utc(10, 22, 16)),
        (DOWN, utc(10, 23, 8)),
        (CLOSED, utc(10, 23, 16)),
        (DOWN, utc(10, 25, 9)),
        (CLOSED, utc(10, 25, 17)),
        (DOWN, utc(10, 26, 9)),
    ];
    let got = activities(&pool, m).await;
    assert_eq!(got.iter().map(|a| (a.0, a.1)).collect::<Vec<_>>(), want);
    // The activities tile time: each ends where the next begins, the last is open.
    for (a, b) in got.iter().zip(got.iter().skip(1)) {
        assert_eq!(a.2, Some(b.1));
    }
    assert_eq!(got.last().unwrap().2, None);
    assert_eq!(machine_state(&pool, m).await, (1, DOWN, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_catches_up_the_transitions_it_missed_at_their_own_instants() {
    let db = seeded_db().await;
    let pool = db.pool().await;
    // The server last applied the seeded 9-5 pattern (UTC plant) at midnight two days ago, then stopped.
    let last = (Utc::now() - Duration::days(2)).date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let m = add_machine(&pool, "Lathe", chrono_tz::Tz::UTC, last).await.unwrap().id;
    assert_eq!(machine_state(&pool, m).await, (3, CLOSED, None));

    let t = spawn_app_with(test_config(&db), db.clone(), oee_server::Services::ALL).await;
    eventually("the start-up round applied the missed transitions", || async {
        let until: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT schedule_applied_until FROM machine WHERE id = $1")
                .bind(m)
                .fetch_one(&t.pool)
                .await
                .unwrap();
        until.is_some_and(|u| u > last + Duration::days(2))
    })
    .await;
    // One snapshot of how far the scheduler got and what it wrote.
    let (until, codes, starts): (DateTime<Utc>, Vec<i32>, Vec<DateTime<Utc>>) = sqlx::query_as(
        "SELECT m.schedule_applied_until, array_agg(a.activity_code_id ORDER BY a.start_time, a.id), \
                array_agg(a.start_time ORDER BY a.start_time, a.id) \
         FROM machine m JOIN activity a ON a.machine_id = m.id WHERE m.id = $1 GROUP BY m.id",
    )
    .bind(m)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    // Down at each 09:00, Closed at each 17:00 (the midnights change nothing on a Closed machine).
    let mut want = vec![(CLOSED, last)];
    let mut day: NaiveDate = last.date_naive();
    loop {
        let (open, close) = (day.and_hms_opt(9, 0, 0).unwrap().and_utc(), day.and_hms_opt(17, 0, 0).unwrap().and_utc());
        if open > until {
            break;
        }
        want.push((DOWN, open));
        if close > until {
            break;
        }
        want.push((CLOSED, close));
        day = day.succ_opt().unwrap();
    }
    assert!(want.len() >= 5, "two whole days were missed: {want:?}");
    assert_eq!(codes.into_iter().zip(starts).collect::<Vec<_>>(), want);
    let in_shift = want.last().unwrap().0 == DOWN;
    assert_eq!(machine_state(&t.pool, m).await.0, if in_shift { 1 } else { 3 });
}

const BIN: &str = env!("CARGO_BIN_EXE_oee-server");

/// Runs an administration command against the test's database, beside the running server.
async fn admin(db: &TestDb, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .env("OEE_DATABASE__URL", db.url())
        .env("OEE_PLANT__TIMEZONE", "UTC")
        .env("OEE_DATA_DIR", scratch_dir(&format!("{}-cli", db.name)))
        .kill_on_drop(true)
        .output()
        .await
        .expect("run oee-server");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Reads the machine's status topic until `check` holds for a message.
async fn status_until(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
    topic: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    loop {
        let v = next_on(rx, topic).await;
        if check(&v) {
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_added_from_the_command_line_has_its_retained_status_at_once() {
    let t = spawn_app().await;
    let (ok, out) = admin(&t.db, &["machine", "add", "Saw"]).await;
    assert!(ok, "{out}");
    let m: i32 = out
        .split_whitespace()
        .skip_while(|w| *w != "machine")
        .nth(1)
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no machine id in `{out}`"));
    // Subscribing after the insert: only a retained status can answer, whatever the hour (in or out of
    // the seeded 9-5 shift), with the state the machine was added in.
    let (state, code, _) = machine_state(&t.pool, m).await;
    for (i, topic) in
        [format!("oee/v1/machines/{m}/status"), "oee/v1/machines/saw/status".to_string()].iter().enumerate()
    {
        let (client, mut rx) = t.mqtt_client(&format!("watcher-{i}")).await;
        client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
        let v = status_until(&mut rx, topic, |v| v["machine_id"] == m).await;
        assert_eq!(
            (v["schedule_state"].as_i64(), v["activity_code_id"].as_i64()),
            (Some(state.into()), Some(code.into()))
        );
        assert_eq!(v["machine_name"], "Saw");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_changed_from_the_command_line_applies_at_once_to_the_running_server() {
    let t = spawn_app().await;
    let m = t.add_machine("Mill").await;
    let (client, mut rx) = t.mqtt_client("watcher").await;
    let topic = format!("oee/v1/machines/{m}/status");
    client.subscribe(&topic, QoS::AtLeastOnce).await.unwrap();

    let (ok, out) = admin(&t.db, &["shift", "add", "Always"]).await;
    assert!(ok && out.contains("added shift pattern"), "{out}");
    let (ok, out) = admin(&t.db, &["shift", "set", "Always", "mon", "2200-0600"]).await;
    assert!(!ok && out.contains("ends before it starts") && out.contains("0000-0600"), "{out}");
    let (ok, out) = admin(&t.db, &["shift", "set", "Nobody", "mon", "0900-1700"]).await;
    assert!(!ok && out.contains("no shift pattern named `Nobody`"), "{out}");

    // Each step below is a real change at any hour, weekday and zone: a new pattern has no shifts, so the
    // machine first goes out of shift (Closed, whether or not the seeded 9-5 had it in shift), then in
    // shift all week (Down), then out again.
    let (ok, out) = admin(&t.db, &["machine", "shift", "Mill", "Always"]).await;
    assert!(ok, "{out}");
    eventually("the machine is out of shift", || async { machine_state(&t.pool, m).await == (3, CLOSED, None) }).await;
    let v = status_until(&mut rx, &topic, |v| v["schedule_state"] == 3).await;
    assert_eq!(v["activity_code_id"], CLOSED);

    let (ok, out) = admin(&t.db, &["shift", "set", "Always", "all", "0000-2400"]).await;
    assert!(ok, "{out}");
    eventually("the machine is in shift", || async { machine_state(&t.pool, m).await == (1, DOWN, None) }).await;
    let v = status_until(&mut rx, &topic, |v| v["schedule_state"] == 1).await;
    assert_eq!(v["activity_code_id"], DOWN);

    // No shifts on any day: out of shift, and Down without a job closes.
    let (ok, out) = admin(&t.db, &["shift", "set", "Always", "all", "off"]).await;
    assert!(ok, "{out}");
    eventually("the machine is out of shift", || async { machine_state(&t.pool, m).await == (3, CLOSED, None) }).await;
    let v = status_until(&mut rx, &topic, |v| v["schedule_state"] == 3).await;
    assert_eq!(v["activity_code_id"], CLOSED);

    let (ok, out) = admin(&t.db, &["shift", "list"]).await;
    assert!(ok && out.contains("Always") && out.contains("mon off") && out.contains("machines: Mill"), "{out}");
    let (_, out) = admin(&t.db, &["shift", "list"]).await;
    assert!(out.contains("9-5") && out.contains("sun 0900-1700"), "{out}");
}

/// A week with the same shifts every day.
fn every_day(shifts: &[(&str, &str, bool)]) -> Week {
    let day: Vec<WeekShift> = shifts.iter().map(|(s, e, o)| WeekShift::new(s, e, *o)).collect();
    Week { days: std::array::from_fn(|_| day.clone()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_made_while_the_server_was_stopped_is_caught_up_at_its_own_instant() {
    let db = seeded_db().await;
    let pool = db.pool().await;
    let week = TimeDelta::days(7);
    let t = |d: u32, h: u32| utc(1, d, h);
    // 2026-01-05 is a Monday; the plant is in UTC. Nobody follows the new pattern yet, so setting it keeps
    // no history.
    let rota = add_shift(&pool, "Rota").await.unwrap();
    set_shift_week(&pool, rota, &every_day(&[("09:00", "17:00", false)]), t(5, 0)).await.unwrap();
    let m = add_machine(&pool, "Press", chrono_tz::Tz::UTC, t(5, 5)).await.unwrap().id;
    set_machine_shift(&pool, "Press", "Rota").await.unwrap();
    reconcile(&pool, chrono_tz::Tz::UTC, t(5, 5), week).await.unwrap();
    reconcile(&pool, chrono_tz::Tz::UTC, t(5, 10), week).await.unwrap();
    assert_eq!(machine_state(&pool, m).await, (1, DOWN, None));

    // With the server stopped, the pattern becomes two shifts (06–14, 14–22) on Tuesday at 12:00; the
    // server is back on Wednesday at 10:00.
    let two = every_day(&[("06:00", "14:00", false), ("14:00", "22:00", false)]);
    set_shift_week(&pool, rota, &two, t(6, 12)).await.unwrap();
    assert_eq!(reconcile(&pool, chrono_tz::Tz::UTC, t(7, 10), week).await.unwrap(), vec![m]);
    let got: Vec<(i32, DateTime<Utc>)> = activities(&pool, m).await.into_iter().map(|a| (a.0, a.1)).collect();
    assert_eq!(
        got,
        vec![
            (CLOSED, t(5, 5)),
            (DOWN, t(5, 9)),
            // the old version until Tuesday noon: Monday's shift ends at 17:00, Tuesday's begins at 09:00
            (CLOSED, t(5, 17)),
            (DOWN, t(6, 9)),
            // the new one after: in shift at noon as before, so the shift runs on to 22:00
            (CLOSED, t(6, 22)),
            (DOWN, t(7, 6)),
        ]
    );
    // The editor reads the new week back.
    assert_eq!(shift_week(&pool, rota).await.unwrap(), two);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_edited_beside_the_running_server_applies_at_once_from_the_edit_on() {
    let t = spawn_app().await;
    let m = t.add_machine("Mill").await;
    let always = add_shift(&t.pool, "Always").await.unwrap();
    set_shift_week(&t.pool, always, &every_day(&[("00:00", "24:00", false)]), Utc::now()).await.unwrap();
    // In shift all week, then no shifts at all: each a change at any hour and weekday.
    set_machine_shift(&t.pool, "Mill", &always.to_string()).await.unwrap();
    eventually("the machine is in shift", || async { machine_state(&t.pool, m).await == (1, DOWN, None) }).await;
    let before = activities(&t.pool, m).await;

    let edit = Utc::now();
    set_shift_week(&t.pool, always, &Week::default(), edit).await.unwrap();
    eventually("the machine is out of shift", || async { machine_state(&t.pool, m).await == (3, CLOSED, None) }).await;
    let after = activities(&t.pool, m).await;
    assert_eq!(after.len(), before.len() + 1);
    let closed = after.last().unwrap();
    // Stamped at the edit (as stored, to the microsecond), or just after it if a round was under way.
    let edit = DateTime::from_timestamp_micros(edit.timestamp_micros()).unwrap();
    assert!(closed.0 == CLOSED && closed.1 >= edit && closed.1 <= Utc::now(), "{closed:?} edit {edit}");
    assert_eq!(after[..before.len() - 1], before[..before.len() - 1], "history before the edit is kept");
    let versions: i64 = sqlx::query_scalar("SELECT count(*) FROM shift_version WHERE shift_id = $1")
        .bind(always)
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(versions, 2, "the week it had stays as the version before the edit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_round_trips_through_the_store_and_a_refusal_names_its_field() {
    let db = seeded_db().await;
    let pool = db.pool().await;
    let id = add_shift(&pool, "Two shifts").await.unwrap();
    // Two shifts on weekdays, a night shift from Friday into Saturday, no shifts on Sunday.
    let mut week = Week::default();
    for d in 0..4 {
        week.days[d] = vec![WeekShift::new("06:00", "14:00", false), WeekShift::new("14:00", "22:00", false)];
    }
    week.days[4] = vec![WeekShift::new("06:00", "14:00", false), WeekShift::new("22:00", "06:00", true)];
    set_shift_week(&pool, id, &week, Utc::now()).await.unwrap();
    let read = shift_week(&pool, id).await.unwrap();
    assert_eq!(read, week);
    let preview = read.preview().unwrap();
    let drawn = |d: usize| -> Vec<(String, String)> {
        preview[d].intervals.iter().map(|i| (i.start.clone(), i.end.clone())).collect()
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(drawn(4), vec![pair("06:00", "14:00"), pair("22:00", "24:00")]);
    assert_eq!(drawn(5), vec![pair("00:00", "06:00")]);
    assert_eq!(drawn(6), vec![]);

    let refused = |mut w: Week, d: usize, shifts: Vec<WeekShift>| {
        w.days[d] = shifts;
        w
    };
    let cases = [
        (refused(week.clone(), 1, vec![WeekShift::new("14:00", "06:00", false)]), "tue.0.end", "before it starts"),
        (
            refused(
                week.clone(),
                2,
                vec![WeekShift::new("06:00", "14:00", false), WeekShift::new("13:30", "22:00", false)],
            ),
            "wed.1.start",
            "may not overlap",
        ),
        (refused(week.clone(), 5, vec![WeekShift::new("05:00", "09:00", false)]), "sat.0.start", "fri 22:00"),
    ];
    for (w, field, needle) in cases {
        match set_shift_week(&pool, id, &w, Utc::now()).await {
            Err(oee_core::Error::Field { field: f, message }) => {
                assert_eq!(f, field, "{message}");
                assert!(message.contains(needle), "{message}");
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    assert_eq!(shift_week(&pool, id).await.unwrap(), week, "a refused week changes nothing");

    // Names and ids.
    assert_eq!(shift_id_by_name_or_id(&pool, "Two shifts").await.unwrap(), id);
    assert_eq!(shift_id_by_name_or_id(&pool, &format!(" {id} ")).await.unwrap(), id);
    let e = shift_id_by_name_or_id(&pool, "Nobody").await.unwrap_err().to_string();
    assert!(e.contains("no shift pattern named `Nobody`"), "{e}");
    rename_shift(&pool, id, " Earlies ").await.unwrap();
    assert_eq!(shift_id_by_name_or_id(&pool, "Earlies").await.unwrap(), id);
    match rename_shift(&pool, id, "9-5").await {
        Err(oee_core::Error::Field { field: "name", message }) => {
            assert!(message.contains("already exists"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(rename_shift(&pool, id, "  ").await, Err(oee_core::Error::Field { field: "name", .. })));
    assert!(matches!(shift_week(&pool, 9999).await, Err(oee_core::Error::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_takes_a_pattern_by_name_or_id() {
    let db = seeded_db().await;
    let pool = db.pool().await;
    let (ok, out) = admin(&db, &["shift", "add", "Nights"]).await;
    assert!(ok && out.contains("added shift pattern 2 `Nights`"), "{out}");
    let (ok, out) = admin(&db, &["shift", "set", "2", "all", "2200-2400"]).await;
    assert!(ok && out.contains("shift pattern 2: mon,tue,wed,thu,fri,sat,sun 2200-2400 from now on"), "{out}");
    let (ok, out) = admin(&db, &["shift", "list", "Nights"]).await;
    assert!(ok && out.contains("Nights") && out.contains("mon 2200-2400") && !out.contains("9-5"), "{out}");
    let (ok, out) = admin(&db, &["shift", "list", "1"]).await;
    assert!(ok && out.contains("9-5") && !out.contains("Nights"), "{out}");
    let (ok, out) = admin(&db, &["shift", "list", "Days"]).await;
    assert!(!ok && out.contains("no shift pattern named `Days`"), "{out}");

    let m = add_machine(&pool, "Mill", chrono_tz::Tz::UTC, Utc::now()).await.unwrap().id;
    let (ok, out) = admin(&db, &["machine", "shift", "Mill", "2"]).await;
    assert!(ok, "{out}");
    let shift: i32 =
        sqlx::query_scalar("SELECT shift_id FROM machine WHERE id = $1").bind(m).fetch_one(&pool).await.unwrap();
    assert_eq!(shift, 2);
    // Once followed, an edit keeps the week before as history.
    let (ok, out) = admin(&db, &["shift", "set", "Nights", "sun", "off"]).await;
    assert!(ok, "{out}");
    let (ok, out) = admin(&db, &["shift", "rename", "2", "Lates"]).await;
    assert!(ok && out.contains("shift pattern 2 is now `Lates`"), "{out}");
    let (ok, out) = admin(&db, &["shift", "list", "Lates"]).await;
    assert!(ok && out.contains("as set on") && out.contains("sun off") && out.contains("machines: Mill"), "{out}");
}

//! The Tables page and its exports: the reference's OEE report (contract C49), CSV and XLSX downloads read
//! back and compared with `GET /api/v1/oee`, production pro-rated over midnight, the v1 API, and refusals.

mod common;

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx, open_workbook_from_rs};
use common::*;
use oee_core::access::Role;

const C49: [&str; 12] = ["M1", "300", "60", "60", "180", "360", "100", "10", "75.0", "27.8", "90.0", "18.8"];

/// The cells of the first body row of the first table of a page.
fn first_row(html: &str) -> Vec<String> {
    let body = &html[html.find("<tbody>").expect("a table body")..];
    let row = &body[body.find("<tr>").expect("a row")..body.find("</tr>").expect("a row's end")];
    row.split("<td>").skip(1).map(|c| c.split("</td>").next().unwrap().to_string()).collect()
}

async fn api_get(t: &TestApp, path: &str, accept: Option<&str>) -> reqwest::Response {
    let mut req = t.api.get(format!("{}{path}", t.http));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    req.send().await.unwrap()
}

/// An attribute's text as the browser reads it (the templates escape `=` and `&`).
fn unescape(html: &str) -> String {
    html.replace("&#x3D;", "=").replace("&amp;", "&")
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

fn csv_header(text: &str) -> Vec<String> {
    csv::Reader::from_reader(text.as_bytes()).headers().unwrap().iter().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_oee_report_form_answers_contract_c49() {
    let t = spawn_app().await;
    t.worked_example("M1").await;
    let (b, _) = Browser::signed_in_as(&t, "vera", Role::Viewer).await;
    let r = b.post_form("/tables", &[("formType", "OeeTableForm"), ("date", "2024-01-10")]).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("<h1>OEE Report</h1>"), "{html}");
    assert!(html.contains(r#"class="dataTable table table-striped table-bordered""#));
    assert_eq!(first_row(&html), C49);
    for h in ["Machine", "Total Duration (min)", "Expected Qty", "Rejects Qty", "OEE (%)"] {
        assert!(html.contains(&format!(">{h}</a>")), "column {h}");
    }

    // The same table as our page, with its export buttons.
    let r = b.get("/tables?table=oee&date=2024-01-10").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert_eq!(first_row(&html), C49);
    assert!(html.contains("Export CSV") && html.contains("Export XLSX"));
    let links = unescape(&html);
    assert!(links.contains(r#"href="/tables?table=oee&date=2024-01-10&format=csv""#), "{html}");
    assert!(links.contains(r#"href="/tables?table=oee&date=2024-01-10&format=xlsx""#));

    // Its CSV, from the page's button.
    let r = b.get("/tables?table=oee&date=2024-01-10&format=csv").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let cd = r.headers()["content-disposition"].to_str().unwrap().to_string();
    assert_eq!(cd, "attachment; filename=\"oee_report_2024-01-10.csv\"");
    let text = r.text().await.unwrap();
    assert_eq!(csv_header(&text)[5], "Expected Qty");
    assert_eq!(csv_rows(&text), vec![C49.map(String::from).to_vec()]);

    // Its workbook: typed cells, percentages as fractions.
    let r = b.get("/tables?table=oee&date=2024-01-10&format=xlsx").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let bytes = r.bytes().await.unwrap();
    let mut wb: Xlsx<_> = open_workbook_from_rs(Cursor::new(bytes.to_vec())).unwrap();
    let range = wb.worksheet_range("Table").unwrap();
    assert_eq!(range.get_value((0, 5)), Some(&Data::String("Expected Qty".into())));
    assert_eq!(range.get_value((1, 0)), Some(&Data::String("M1".into())));
    assert_eq!(range.get_value((1, 5)), Some(&Data::Float(360.0)));
    assert_eq!(range.get_value((1, 8)), Some(&Data::Float(0.75)));
    match range.get_value((1, 11)) {
        Some(Data::Float(x)) => assert!((x - 0.1875).abs() < 1e-12, "{x}"),
        other => panic!("OEE cell {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_oee_exports_match_the_v1_oee_report() {
    let t = spawn_app().await;
    let m = t.worked_example("M1").await;
    let r = api_get(&t, &format!("/api/v1/oee?machine={m}&from=2024-01-10&to=2024-01-11"), None).await;
    assert_eq!(r.status(), 200);
    let v1: serde_json::Value = r.json().await.unwrap();
    let oee = v1["total"]["figures"]["oee"].as_f64().expect("an OEE for the day");

    let r = api_get(&t, "/api/v1/tables/daily_oee?from=2024-01-09&to=2024-01-11&format=csv", None).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert_eq!(csv_header(&text), ["Machine", "2024-01-09", "2024-01-10", "2024-01-11"]);
    let rows = csv_rows(&text);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0], "M1");
    assert_eq!(rows[0][2], format!("{:.1}", oee * 100.0));

    // The workbook by the Accept header: dates as dates, OEE as a fraction, and a chart of the trend.
    let xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
    let r = api_get(&t, "/api/v1/tables/daily_oee?from=2024-01-09&to=2024-01-11", Some(xlsx)).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-disposition"].to_str().unwrap().starts_with("attachment;"));
    let bytes = r.bytes().await.unwrap().to_vec();
    // File names inside a zip archive are stored as they are.
    assert!(bytes.windows(20).any(|w| w == b"xl/charts/chart1.xml"), "the workbook has a chart");
    let mut wb: Xlsx<_> = open_workbook_from_rs(Cursor::new(bytes)).unwrap();
    assert_eq!(wb.sheet_names(), ["Table", "OEE trend"]);
    let range = wb.worksheet_range("Table").unwrap();
    match range.get_value((0, 2)) {
        // 2024-01-10 is day 45301 of Excel's calendar.
        Some(Data::DateTime(d)) => assert_eq!(d.as_f64(), 45301.0),
        other => panic!("the header's date {other:?}"),
    }
    match range.get_value((1, 2)) {
        Some(Data::Float(x)) => assert!((x - oee).abs() < 1e-12, "{x} against {oee}"),
        other => panic!("OEE cell {other:?}"),
    }

    // JSON is the default, with the same figure.
    let r = api_get(&t, "/api/v1/tables/daily_oee?from=2024-01-10&to=2024-01-10", None).await;
    let json: serde_json::Value = r.json().await.unwrap();
    assert!((json["rows"][0][1].as_f64().unwrap() - oee).abs() < 1e-12, "{json}");

    // Jobs in the range, with times as dates in the workbook.
    let r = api_get(&t, "/api/v1/tables/jobs?from=2024-01-10&to=2024-01-10&format=csv", None).await;
    let rows = csv_rows(&r.text().await.unwrap());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][1..], ["J1", "M1", "2024-01-10 08:00", "2024-01-10 12:00", "30", "90", "10"]);
    let r = api_get(&t, "/api/v1/tables/jobs?from=2024-01-10&to=2024-01-10&format=xlsx", None).await;
    let mut wb: Xlsx<_> = open_workbook_from_rs(Cursor::new(r.bytes().await.unwrap().to_vec())).unwrap();
    let range = wb.worksheet_range("Table").unwrap();
    match range.get_value((1, 3)) {
        Some(Data::DateTime(d)) => assert_eq!(d.as_f64(), 45301.0 + 8.0 / 24.0),
        other => panic!("the job's start {other:?}"),
    }

    // Activity durations by machine: 180 min up, 60 down, 60 closed.
    let r = api_get(&t, "/api/v1/tables/activity?from=2024-01-10&to=2024-01-10&format=csv", None).await;
    let rows = csv_rows(&r.text().await.unwrap());
    let mut minutes: Vec<i64> = rows[0][1..].iter().map(|c| c.parse().unwrap()).filter(|n| *n != 0).collect();
    minutes.sort();
    assert_eq!((rows[0][0].as_str(), minutes), ("M1", vec![60, 60, 180]));
    let r = api_get(&t, "/api/v1/tables/activity?from=2024-01-10&to=2024-01-10&by=user&format=csv", None).await;
    let text = r.text().await.unwrap();
    assert_eq!(csv_header(&text)[0], "User Activity Durations (minutes)");
    assert_eq!(csv_rows(&text)[0][0], "(nobody)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_midnight_is_counted_once_in_daily_production() {
    let t = spawn_app().await;
    let m = t.add_machine("Night").await;
    let job: i64 = sqlx::query_scalar(
        "INSERT INTO job (machine_id, job_number, ideal_cycle_time_s, start_time, end_time, active) \
         VALUES ($1, 'N1', 60, '2024-02-01 22:00Z', '2024-02-02 02:00Z', false) RETURNING id",
    )
    .bind(m)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO production_quantity (machine_id, job_id, start_time, end_time, quantity_good, quantity_rejects) \
         VALUES ($1, $2, '2024-02-01 22:00Z', '2024-02-02 02:00Z', 40, 0)",
    )
    .bind(m)
    .bind(job)
    .execute(&t.pool)
    .await
    .unwrap();
    let r = api_get(&t, "/api/v1/tables/production?from=2024-01-31&to=2024-02-03&format=csv", None).await;
    assert_eq!(r.status(), 200);
    let rows = csv_rows(&r.text().await.unwrap());
    assert_eq!(rows, vec![vec!["Night", "0", "20", "20", "0"]]);
    // The reference would have shown 40 on both days; the job itself is listed once.
    let r = api_get(&t, "/api/v1/tables/jobs?from=2024-02-01&to=2024-02-02&format=csv", None).await;
    assert_eq!(csv_rows(&r.text().await.unwrap()).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_callers_and_bad_queries_are_refused() {
    let t = spawn_app().await;
    let anonymous = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for path in ["/tables", "/tables?table=oee&format=csv", "/tables?table=daily_oee&format=xlsx"] {
        let r = anonymous.get(format!("{}{path}", t.http)).send().await.unwrap();
        assert_eq!(r.status(), 302, "{path}");
        assert!(r.headers()["location"].to_str().unwrap().starts_with("/login?next="));
    }
    let r = anonymous.get(format!("{}/api/v1/tables/oee?format=csv", t.http)).send().await.unwrap();
    assert_eq!(r.status(), 401);

    for (path, says) in [
        ("/api/v1/tables/nope", "no table `nope`"),
        ("/api/v1/tables/oee?format=pdf", "`format` must be"),
        ("/api/v1/tables/jobs?from=2024-02-02&to=2024-02-01", "swap them"),
        ("/api/v1/tables/jobs?from=2020-01-01&to=2024-01-01", "shorten it"),
        ("/api/v1/tables/oee?date=2999-01-01", "future"),
        ("/api/v1/tables/activity?by=shift", "machine or user"),
    ] {
        let r = api_get(&t, path, None).await;
        assert_eq!(r.status(), 400, "{path}");
        assert!(r.text().await.unwrap().contains(says), "{path}");
    }
    let (b, _) = Browser::signed_in_as(&t, "vic", Role::Viewer).await;
    let r = b.get("/tables?table=jobs&from=2024-02-02&to=2024-02-01").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("swap them"));
    let r = b.get("/tables?table=oee&format=pdf").await;
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_has_its_export_buttons_and_pages_sort_on_the_server() {
    let t = spawn_app().await;
    t.worked_example("M1").await;
    t.add_machine("A2").await;
    let (b, _) = Browser::signed_in_as(&t, "vera", Role::Viewer).await;
    for table in ["oee", "daily_oee", "production", "jobs", "activity"] {
        let r = b.get(&format!("/tables?table={table}&from=2024-01-08&to=2024-01-12&date=2024-01-10")).await;
        assert_eq!(r.status(), 200, "{table}");
        let html = unescape(&r.text().await.unwrap());
        assert!(html.contains("format=csv") && html.contains("format=xlsx"), "{table} has both buttons");
        assert!(!html.contains("<script"), "no script");
    }
    let r = b.get("/tables?table=oee&date=2024-01-10&sort=0&dir=asc").await;
    assert_eq!(first_row(&r.text().await.unwrap())[0], "A2");
    let r = b.get("/tables?table=oee&date=2024-01-10&sort=0&dir=desc").await;
    assert_eq!(first_row(&r.text().await.unwrap())[0], "M1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_year_of_a_hundred_machines_exports_as_a_workbook() {
    let t = spawn_app().await;
    for n in 1..=100 {
        t.add_machine(&format!("P{n:03}")).await;
    }
    let started = std::time::Instant::now();
    let r = api_get(&t, "/api/v1/tables/daily_oee?from=2023-01-01&to=2023-12-31&format=xlsx", None).await;
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap().to_vec();
    eprintln!("a year of 100 machines: {} bytes in {:?}", bytes.len(), started.elapsed());
    let mut wb: Xlsx<_> = open_workbook_from_rs(Cursor::new(bytes)).unwrap();
    let range = wb.worksheet_range("Table").unwrap();
    assert_eq!(range.get_size(), (101, 366));
    assert_eq!(range.get_value((100, 0)), Some(&Data::String("P100".into())));
}

/// The cells of every body row of the first table of a page.
fn body_rows(html: &str) -> Vec<Vec<String>> {
    let Some(at) = html.find("<tbody>") else { return Vec::new() };
    let body = &html[at..html[at..].find("</tbody>").map_or(html.len(), |e| at + e)];
    body.split("<tr>")
        .skip(1)
        .map(|row| {
            let row = row.split("</tr>").next().unwrap();
            row.split("<td>").skip(1).map(|c| c.split("</td>").next().unwrap().to_string()).collect()
        })
        .collect()
}

/// The rows a sort should give: `rows` (in the table's own order) sorted by column `col` as the page
/// sorts (numbers as numbers, empty cells first, text by code point), stably, so that rows with the same
/// value keep the table's order in either direction.
fn sorted_by(rows: &[Vec<String>], col: usize, desc: bool) -> Vec<Vec<String>> {
    let key = |r: &Vec<String>| r[col].clone();
    let mut out = rows.to_vec();
    out.sort_by(|a, b| {
        let (a, b) = (key(a), key(b));
        let o = match (a.is_empty(), b.is_empty(), a.parse::<f64>(), b.parse::<f64>()) {
            (true, true, _, _) => std::cmp::Ordering::Equal,
            (true, false, _, _) => std::cmp::Ordering::Less,
            (false, true, _, _) => std::cmp::Ordering::Greater,
            (_, _, Ok(x), Ok(y)) => x.total_cmp(&y),
            _ => a.cmp(&b),
        };
        if desc { o.reverse() } else { o }
    });
    out
}

/// Every row of a table's pages, sorted by `sort` (`None`: the table's order), read page after page
/// through the links the page gives; checks that every page but the last is full.
async fn all_pages(b: &Browser, query: &str, sort: Option<(usize, &str)>) -> Vec<Vec<String>> {
    let mut path = format!("/tables?{query}");
    if let Some((col, dir)) = sort {
        path.push_str(&format!("&sort={col}&dir={dir}"));
    }
    let mut rows = Vec::new();
    let mut page = 1;
    loop {
        let r = b.get(&format!("{path}&page={page}")).await;
        assert_eq!(r.status(), 200, "{path} page {page}");
        let html = unescape(&r.text().await.unwrap());
        let these = body_rows(&html);
        let next = format!("page={}\"", page + 1);
        let has_next = html.contains("rel=\"next\"");
        if has_next {
            assert_eq!(these.len(), 50, "{path}: page {page} is full");
            assert!(html.contains(&next), "{path}: a link to page {}", page + 1);
            if let Some((col, dir)) = sort {
                assert!(html.contains(&format!("sort={col}&dir={dir}&page={}", page + 1)), "the links keep the sort");
            }
        }
        rows.extend(these);
        if !has_next {
            return rows;
        }
        page += 1;
    }
}

/// `n` jobs from 2024-03-04 00:40Z, 40 minutes apart, on three machines, with scrambled numbers, lengths,
/// cycle times (none for every seventh) and quantities; the last job of two machines still runs.
async fn many_jobs(t: &TestApp, n: i32) {
    let machines = [t.add_machine("Press").await, t.add_machine("Lathe").await, t.add_machine("mill").await];
    sqlx::query(
        "WITH j AS ( \
           INSERT INTO job (machine_id, job_number, ideal_cycle_time_s, start_time, end_time, active) \
           SELECT ($1::int[])[i % 3 + 1], 'J' || lpad(((i * 37) % 101)::text, 3, '0'), \
                  CASE WHEN i % 7 = 0 THEN NULL ELSE ((i * 13) % 50 + 5)::float8 END, \
                  timestamptz '2024-03-04 00:00Z' + i * interval '40 minutes', \
                  CASE WHEN i > $2 - 2 THEN NULL \
                       ELSE timestamptz '2024-03-04 00:00Z' + i * interval '40 minutes' \
                            + ((i * 7) % 11 + 1) * interval '3 minutes' END, \
                  i > $2 - 2 \
           FROM generate_series(1, $2) AS i RETURNING id, machine_id, start_time) \
         INSERT INTO production_quantity (machine_id, job_id, start_time, end_time, quantity_good, quantity_rejects) \
         SELECT machine_id, id, start_time, start_time + interval '1 minute', (id * 17) % 100, (id * 5) % 9 FROM j",
    )
    .bind(&machines[..])
    .bind(n)
    .execute(&t.pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_sorted_and_paged_by_the_database_and_exported_whole() {
    let t = spawn_app().await;
    many_jobs(&t, 64).await;
    let (b, _) = Browser::signed_in_as(&t, "vera", Role::Viewer).await;
    let range = "table=jobs&from=2024-03-04&to=2024-03-06";

    // The export has every job, in the table's own order (by start).
    let r = b.get(&format!("/tables?{range}&format=csv")).await;
    assert_eq!(r.status(), 200);
    let all = csv_rows(&r.text().await.unwrap());
    assert_eq!(all.len(), 64, "every job is exported");
    assert!(all.iter().any(|r| r[4].is_empty()) && all.iter().any(|r| r[5].is_empty()), "some cells are empty");
    let r = b.get(&format!("/tables?{range}&sort=6&dir=desc&format=xlsx")).await;
    let mut wb: Xlsx<_> = open_workbook_from_rs(Cursor::new(r.bytes().await.unwrap().to_vec())).unwrap();
    assert_eq!(wb.worksheet_range("Table").unwrap().get_size(), (65, 8), "the workbook has every job too");

    // The first page: 50 jobs, the count of all of them, and links to the next page.
    let r = b.get(&format!("/tables?{range}")).await;
    assert_eq!(r.status(), 200);
    let html = unescape(&r.text().await.unwrap());
    assert_eq!(body_rows(&html), all[..50].to_vec());
    assert!(html.contains("Rows 1–50 of 64"), "{html}");
    assert!(html.contains(&format!("href=\"/tables?{range}&page=2\" rel=\"next\"")), "{html}");
    // Page 2 holds the next jobs; a page past the last shows the last.
    for page in ["2", "9"] {
        let r = b.get(&format!("/tables?{range}&page={page}")).await;
        assert_eq!(r.status(), 200);
        let html = unescape(&r.text().await.unwrap());
        assert_eq!(body_rows(&html), all[50..].to_vec(), "page {page}");
        assert!(html.contains("Rows 51–64 of 64") && html.contains("rel=\"prev\""), "{html}");
    }

    // Every column sorts both ways, across the pages.
    for col in 0..8 {
        for dir in ["asc", "desc"] {
            let got = all_pages(&b, range, Some((col, dir))).await;
            assert_eq!(got, sorted_by(&all, col, dir == "desc"), "sort={col}&dir={dir}");
        }
    }
    // The second page of one sort holds exactly the next rows of that sort.
    let r = b.get(&format!("/tables?{range}&sort=1&dir=desc&page=2")).await;
    let html = r.text().await.unwrap();
    assert_eq!(body_rows(&html), sorted_by(&all, 1, true)[50..].to_vec());
    assert!(html.contains("Job Number</a>▼"), "the sorted column is marked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sort_or_page_that_does_not_fit_the_table_is_refused() {
    let t = spawn_app().await;
    let (b, _) = Browser::signed_in_as(&t, "vera", Role::Viewer).await;
    let range = "table=jobs&from=2024-03-04&to=2024-03-06";
    for (query, says) in [
        ("sort=8", "`sort` must be the number of one of this table's columns, 0 to 7, not `8`"),
        ("sort=name", "not `name`: click a column's heading"),
        ("sort=-1", "0 to 7"),
        ("sort=1&dir=up", "`dir` must be asc or desc, not `up`"),
        ("page=0", "`page` must be a page number from 1, not `0`"),
        ("page=two", "not `two`"),
    ] {
        let r = b.get(&format!("/tables?{range}&{query}")).await;
        assert_eq!(r.status(), 400, "{query}");
        let html = r.text().await.unwrap();
        let text = unescape(&html).replace("&#x60;", "`").replace("&#x27;", "'");
        assert!(text.contains(says), "{query}: {html}");
    }
    // The OEE report has twelve columns, the activity table one more than there are codes.
    let r = b.get("/tables?table=oee&date=2024-03-04&sort=12").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("0 to 11"));
    assert_eq!(b.get("/tables?table=oee&date=2024-03-04&sort=11&dir=desc").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tables_by_machine_sort_and_page_by_name_by_day_and_by_code() {
    let t = spawn_app().await;
    // 55 machines, added in an order that is not their names' order.
    let mut machines = Vec::new();
    for k in 1..=55 {
        let name = format!("M{:02}", (k * 23) % 56);
        machines.push(t.add_machine(&name).await);
    }
    // Parts on each of two days, and minutes up and down on the first, all in whole minutes.
    sqlx::query(
        "INSERT INTO production_quantity (machine_id, start_time, end_time, quantity_good, quantity_rejects) \
         SELECT m, timestamptz '2024-03-04 08:00Z' + d * interval '1 day', \
                timestamptz '2024-03-04 09:00Z' + d * interval '1 day', (m * 29 + d * 11) % 97, 0 \
         FROM unnest($1::int[]) AS m, generate_series(0, 1) AS d",
    )
    .bind(&machines)
    .execute(&t.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO activity (machine_id, activity_code_id, start_time, end_time) \
         SELECT m, 1, timestamptz '2024-03-04 06:00Z', \
                timestamptz '2024-03-04 06:00Z' + (m % 17) * interval '1 minute' \
         FROM unnest($1::int[]) AS m \
         UNION ALL \
         SELECT m, 2, timestamptz '2024-03-04 07:00Z', \
                timestamptz '2024-03-04 07:00Z' + (m % 13) * interval '1 minute' \
         FROM unnest($1::int[]) AS m",
    )
    .bind(&machines)
    .execute(&t.pool)
    .await
    .unwrap();
    let (b, _) = Browser::signed_in_as(&t, "vera", Role::Viewer).await;

    // Daily production: by id without a sort, by name, and by each day, both ways.
    let range = "table=production&from=2024-03-04&to=2024-03-05";
    let r = b.get(&format!("/tables?{range}&format=csv")).await;
    let all = csv_rows(&r.text().await.unwrap());
    assert_eq!(all.len(), 55, "the export has every machine");
    assert_eq!(all_pages(&b, range, None).await, all, "the table's own order");
    let r = b.get(&format!("/tables?{range}&page=2")).await;
    assert!(r.text().await.unwrap().contains("Rows 51–55 of 55"));
    for col in 0..3 {
        for dir in ["asc", "desc"] {
            let got = all_pages(&b, range, Some((col, dir))).await;
            assert_eq!(got, sorted_by(&all, col, dir == "desc"), "production sort={col}&dir={dir}");
        }
    }

    // Daily OEE by a day: every machine's figure of that day, its link to the breakdown kept.
    let range = "table=daily_oee&from=2024-03-04&to=2024-03-05";
    let r = b.get(&format!("/tables?{range}&format=csv")).await;
    let all = csv_rows(&r.text().await.unwrap());
    let texts = |rows: Vec<Vec<String>>| -> Vec<Vec<String>> {
        rows.into_iter()
            .map(|r| r.into_iter().map(|c| c.split('>').nth(1).map_or(c.clone(), |t| t.replace("</a", ""))).collect())
            .collect()
    };
    assert_eq!(texts(all_pages(&b, range, Some((2, "desc"))).await), sorted_by(&all, 2, true));

    // Activity durations by machine, by the minutes of a code, across pages.
    let down: String = sqlx::query_scalar("SELECT short_description FROM activity_code WHERE id = 2")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    let range = "table=activity&from=2024-03-04&to=2024-03-04";
    let r = b.get(&format!("/tables?{range}&format=csv")).await;
    let text = r.text().await.unwrap();
    let col = csv_header(&text).iter().position(|h| *h == down).expect("a column per code");
    let all = csv_rows(&text);
    assert_eq!(all.len(), 55);
    assert_eq!(all_pages(&b, range, None).await, all, "by name, as the export");
    for (col, dir) in [(col, "desc"), (col, "asc"), (0, "desc"), (1, "asc")] {
        let got = all_pages(&b, range, Some((col, dir))).await;
        assert_eq!(got, sorted_by(&all, col, dir == "desc"), "activity sort={col}&dir={dir}");
    }
}

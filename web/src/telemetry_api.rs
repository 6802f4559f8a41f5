//! `GET /api/v1/telemetry`: a machine's telemetry readings in a window, or with `bucket` one key's readings
//! cut into buckets of a fixed length with one value each (avg, min, max, last, count or sum), as JSON or
//! CSV; and `GET /api/v1/telemetry/keys`: the keys a machine sends.
//!
//! Buckets are counted from 2000-01-01T00:00:00Z (so `1d` is a UTC day) and the window is widened to whole
//! buckets. Buckets of whole hours are read from the hourly rollups, shorter ones from the readings; see
//! `oee_core::store::telemetry`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use oee_core::store::telemetry::{self as store, Agg, Source};
use oee_core::store::{report, timescale};
use serde_json::{Value, json};

use crate::WebState;
use crate::oee_api::{ApiError, bad, id_param, time_param};

/// The longest bucket.
const MAX_BUCKET_DAYS: i64 = 3650;

/// Bucket lengths offered when a window has too many buckets, shortest first.
const LADDER: [&str; 19] = [
    "1s", "5s", "10s", "15s", "30s", "1m", "5m", "10m", "15m", "30m", "1h", "2h", "3h", "6h", "12h", "1d", "7d", "30d",
    "365d",
];

/// A bucket length as the API writes it: a whole number and a unit, `s`, `m`, `h` or `d`, like `15m`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bucket {
    text: String,
    width: Duration,
}

impl Bucket {
    fn parse(text: &str) -> Result<Bucket, ApiError> {
        let text = text.trim();
        let refuse = || {
            bad(format!(
                "`bucket` must be a whole number and a unit, s, m, h or d (like 30s, 15m, 1h, 1d), of at most \
                 {MAX_BUCKET_DAYS} days, not `{text}`"
            ))
        };
        let unit = text.chars().last().ok_or_else(refuse)?;
        let n: i64 = text[..text.len() - unit.len_utf8()].parse().map_err(|_| refuse())?;
        let seconds = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(refuse()),
        };
        if n < 1 || n > MAX_BUCKET_DAYS * 86_400 / seconds {
            return Err(refuse());
        }
        Ok(Bucket { text: format!("{n}{unit}"), width: Duration::seconds(n * seconds) })
    }

    /// How many buckets cover [from, to) once widened to bucket starts.
    fn count(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        let span = store::bucket_ceil(to, self.width) - store::bucket_floor(from, self.width);
        span.num_seconds() / self.width.num_seconds()
    }
}

/// What an answer is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

impl Format {
    /// `format`, or else the first of JSON and CSV that `Accept` lists; JSON by default.
    fn of(q: &HashMap<String, String>, headers: &HeaderMap) -> Result<Format, ApiError> {
        if let Some(f) = q.get("format") {
            return match f.trim().to_ascii_lowercase().as_str() {
                "json" => Ok(Format::Json),
                "csv" => Ok(Format::Csv),
                other => Err(bad(format!("`format` must be json or csv, not `{other}`"))),
            };
        }
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        for part in accept.split(',') {
            match part.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
                "text/csv" => return Ok(Format::Csv),
                "application/json" => return Ok(Format::Json),
                _ => {}
            }
        }
        Ok(Format::Json)
    }
}

/// `GET /api/v1/telemetry`.
#[utoipa::path(
    get,
    path = "/api/v1/telemetry",
    tag = "reports",
    operation_id = "telemetry_readings",
    summary = "A machine's telemetry readings in a window, or one key's readings per bucket",
    description = "Without `bucket`: the readings stored for a machine (of `key` only, when given), oldest first, \
                   at most `limit` of them (`truncated` says whether there were more); as CSV one row per \
                   reading, `ts,key,value` (header `X-Truncated: true` when there were more).\n\n\
                   With `bucket`: the readings of `key` cut into buckets of that length, one value per bucket \
                   that has readings (`agg` of them; a bucket without readings is left out). Buckets are counted \
                   from 2000-01-01T00:00:00Z, so `1d` is a UTC day and `7d` starts on a Saturday; `from` is \
                   moved back and `to` forward to bucket starts. Buckets of whole hours (`1h`, `6h`, `1d`…) are \
                   read from hourly rollups completed with the readings not rolled up yet (`source` = \
                   `rollup`), shorter ones from the readings (`raw`); both give the same values. At most the \
                   server's `oee.max_buckets` buckets. As CSV: `bucket_start,value`.\n\n\
                   The format is `format`, or else the `Accept` header (application/json or text/csv); JSON by \
                   default.",
    params(
        ("machine" = i32, Query, description = "The machine's id"),
        ("from" = Option<String>, Query, description = "Start: an RFC 3339 time like 2026-01-05T06:00:00Z, or a date like 2026-01-05 meaning the start of that plant day; default: 24 hours before `to`"),
        ("to" = Option<String>, Query, description = "End: an RFC 3339 time like 2026-01-05T06:00:00Z, or a date like 2026-01-05 meaning the start of that plant day; default: now"),
        ("key" = Option<String>, Query, description = "The key to read, like `temperature` (needed with `bucket`); see /api/v1/telemetry/keys"),
        ("bucket" = Option<String>, Query, description = "The length of a bucket: a whole number and a unit, s, m, h or d, like 30s, 15m, 1h or 1d"),
        ("agg" = Option<crate::openapi::TelemetryAgg>, Query, description = "With `bucket`: how a bucket's readings become its value; default avg"),
        ("limit" = Option<i64>, Query, description = "Without `bucket`: the most readings (JSON: messages, CSV: rows) to give, from 1 to the server's `oee.telemetry_max_rows` (its default)"),
        ("format" = Option<String>, Query, description = "json or csv; wins over `Accept`"),
    ),
    responses(
        (status = 200, description = "The readings, or the values per bucket",
         content((crate::openapi::TelemetryAnswer = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A parameter is wrong, or the window has too many buckets", body = crate::openapi::ReportError),
        (status = 404, description = "No such machine", body = crate::openapi::ReportError),
        (status = 503, description = "The database is not available", body = crate::openapi::ReportError),
    )
)]
pub(crate) async fn telemetry(
    State(state): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let machine = id_param(&q, "machine")?.ok_or_else(|| bad("give `machine=N`"))?;
    let to = time_param(&q, "to", state.tz)?.unwrap_or_else(Utc::now);
    let from = time_param(&q, "from", state.tz)?.unwrap_or(to - Duration::hours(24));
    if to <= from {
        return Err(bad(format!("`to` ({to}) must be after `from` ({from})")));
    }
    let format = Format::of(&q, &headers)?;
    let key = match q.get("key").map(|k| k.trim()) {
        None => None,
        Some(k) if (1..=oee_core::store::NAME_MAX).contains(&k.chars().count()) => Some(k.to_string()),
        Some(k) => {
            let most = oee_core::store::NAME_MAX;
            return Err(bad(format!("`key` must have 1 to {most} characters, not `{k}`")));
        }
    };
    match q.get("bucket") {
        Some(b) => bucketed(&state, &q, machine, key, from, to, Bucket::parse(b)?, format).await,
        None => {
            if q.contains_key("agg") {
                return Err(bad("`agg` needs `bucket`: give a bucket length like bucket=1h, or leave `agg` out"));
            }
            readings(&state, &q, machine, key, from, to, format).await
        }
    }
}

async fn machine_must_exist(state: &WebState, machine: i32) -> Result<(), ApiError> {
    if !report::machine_exists(&state.pool, machine).await? {
        return Err(ApiError::NotFound(format!("machine {machine} does not exist: check the id")));
    }
    Ok(())
}

/// The readings as stored, without buckets.
async fn readings(
    state: &WebState,
    q: &HashMap<String, String>,
    machine: i32,
    key: Option<String>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    format: Format,
) -> Result<Response, ApiError> {
    let max = state.oee.telemetry_max_rows;
    let limit = match q.get("limit") {
        None => max,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => return Err(bad(format!("`limit` must be a number from 1 to {max}, not `{v}`"))),
        },
    };
    machine_must_exist(state, machine).await?;
    let key = key.as_deref();
    if format == Format::Csv {
        let mut rows = store::readings(&state.pool, machine, key, from, to, limit + 1).await?;
        let truncated = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let lines = rows.into_iter().map(|r| [csv_time(r.ts), r.key, r.value.to_string()]);
        let mut response = csv(machine, ["ts", "key", "value"], lines)?;
        if truncated {
            response.headers_mut().insert("x-truncated", HeaderValue::from_static("true"));
        }
        return Ok(response);
    }
    let mut rows = store::messages(&state.pool, machine, key, from, to, limit + 1).await?;
    let truncated = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let readings: Vec<Value> = rows.into_iter().map(|(ts, data)| json!({ "ts": ts, "data": data })).collect();
    Ok(Json(json!({
        "machine": machine,
        "from": from,
        "to": to,
        "limit": limit,
        "truncated": truncated,
        "readings": readings,
    }))
    .into_response())
}

/// One key's readings per bucket.
#[allow(clippy::too_many_arguments)]
async fn bucketed(
    state: &WebState,
    q: &HashMap<String, String>,
    machine: i32,
    key: Option<String>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: Bucket,
    format: Format,
) -> Result<Response, ApiError> {
    let key = key.ok_or_else(|| {
        bad(format!(
            "`bucket` needs `key`: give the key to read, like key=temperature (/api/v1/telemetry/keys?machine={machine} \
             lists them)"
        ))
    })?;
    let agg = match q.get("agg").map(|a| a.trim()) {
        None => Agg::Avg,
        Some(a) => Agg::parse(a).ok_or_else(|| {
            let names: Vec<&str> = Agg::ALL.iter().map(|a| a.name()).collect();
            bad(format!("`agg` must be one of {}, not `{a}`", names.join(", ")))
        })?,
    };
    if q.contains_key("limit") {
        return Err(bad("`limit` is for readings without `bucket`: leave it out (`oee.max_buckets` bounds buckets)"));
    }
    let max = state.oee.max_buckets as i64;
    let count = bucket.count(from, to);
    if count > max {
        let wider = LADDER
            .iter()
            .filter_map(|b| Bucket::parse(b).ok())
            .find(|b| b.width > bucket.width && b.count(from, to) <= max);
        let advice = match wider {
            Some(b) => format!("use bucket={} or longer, or shorten the window", b.text),
            None => "shorten the window".to_string(),
        };
        return Err(bad(format!(
            "the window holds {count} buckets of {}, more than the {max} one answer may have: {advice}",
            bucket.text
        )));
    }
    machine_must_exist(state, machine).await?;
    let (from, to) = (store::bucket_floor(from, bucket.width), store::bucket_ceil(to, bucket.width));
    let timescale = timescale::status(&state.pool).await?;
    let source = Source::for_bucket(bucket.width);
    let points = store::series(&state.pool, &timescale, source, machine, &key, from, to, bucket.width, agg).await?;
    // Counts are whole numbers.
    let value = |v: f64| if agg == Agg::Count { json!(v as i64) } else { json!(v) };
    if format == Format::Csv {
        let text = |v: f64| if agg == Agg::Count { (v as i64).to_string() } else { v.to_string() };
        let lines = points.into_iter().map(|p| [csv_time(p.t), text(p.v)]);
        return csv(machine, ["bucket_start", "value"], lines);
    }
    let points: Vec<Value> = points.into_iter().map(|p| json!({ "t": p.t, "v": value(p.v) })).collect();
    Ok(Json(json!({
        "machine": machine,
        "key": key,
        "from": from,
        "to": to,
        "bucket": bucket.text,
        "agg": agg.name(),
        "source": source.name(),
        "points": points,
    }))
    .into_response())
}

/// A time as the JSON answers write it: RFC 3339 in UTC, like 2024-01-10T08:00:00Z.
fn csv_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A CSV download of `rows` under `header` (bounded by the caller: at most `oee.max_buckets` buckets or
/// `limit` readings).
fn csv<const N: usize>(
    machine: i32,
    header: [&str; N],
    rows: impl Iterator<Item = [String; N]>,
) -> Result<Response, ApiError> {
    let failed = |e: csv::Error| bad(format!("the CSV could not be written: {e}"));
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(header).map_err(failed)?;
    for row in rows {
        out.write_record(&row).map_err(failed)?;
    }
    let body = out.into_inner().map_err(|e| failed(e.into_error().into()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"telemetry-{machine}.csv\"")),
        ],
        body,
    )
        .into_response())
}

/// `GET /api/v1/telemetry/keys`.
#[utoipa::path(
    get,
    path = "/api/v1/telemetry/keys",
    tag = "reports",
    operation_id = "telemetry_keys",
    summary = "The telemetry keys a machine sends",
    description = "Each key the machine has readings of, by name, with the time of its first and last reading and \
                   how many readings it has (read from the hourly rollups, so it is fast however long the \
                   history).",
    params(("machine" = i32, Query, description = "The machine's id")),
    responses(
        (status = 200, description = "The keys", body = crate::openapi::TelemetryKeys),
        (status = 400, description = "A parameter is wrong", body = crate::openapi::ReportError),
        (status = 404, description = "No such machine", body = crate::openapi::ReportError),
        (status = 503, description = "The database is not available", body = crate::openapi::ReportError),
    )
)]
pub(crate) async fn keys(
    State(state): State<WebState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let machine = id_param(&q, "machine")?.ok_or_else(|| bad("give `machine=N`"))?;
    machine_must_exist(&state, machine).await?;
    let timescale = timescale::status(&state.pool).await?;
    let keys: Vec<Value> = store::keys(&state.pool, &timescale, machine)
        .await?
        .into_iter()
        .map(|k| json!({ "key": k.key, "first": k.first, "last": k.last, "count": k.count }))
        .collect();
    Ok(Json(json!({ "machine": machine, "keys": keys })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_a_number_and_a_unit() {
        for (text, seconds, shown) in
            [("15m", 900, "15m"), (" 1h ", 3600, "1h"), ("90s", 90, "90s"), ("1d", 86_400, "1d"), ("01h", 3600, "1h")]
        {
            let b = Bucket::parse(text).unwrap();
            assert_eq!((b.width.num_seconds(), b.text.as_str()), (seconds, shown), "{text}");
        }
        for text in ["", "h", "0m", "-1h", "1w", "1.5h", "PT1H", "1 h", "3651d", "99999999999999999999s", "1é"] {
            assert!(Bucket::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn bucket_counts_cover_the_widened_window() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let hour = Bucket::parse("1h").unwrap();
        assert_eq!(hour.count(at("2024-01-10T08:30:00Z"), at("2024-01-10T10:00:00Z")), 2);
        assert_eq!(hour.count(at("2024-01-10T08:30:00Z"), at("2024-01-10T10:00:01Z")), 3);
        assert_eq!(Bucket::parse("1d").unwrap().count(at("2024-01-01T00:00:00Z"), at("2025-01-01T00:00:00Z")), 366);
    }
}

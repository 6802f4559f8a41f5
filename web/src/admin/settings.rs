//! Plant settings: the minor-stop threshold, which an administrator changes at run time (it overrides the
//! config file's `[oee] minor_stop_threshold_s` while set, and changing it forgets the cached report days),
//! and, read-only, the config file's switches an administrator should know about, each with its key.

use axum::Extension;
use axum::extract::{Form, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use oee_core::access::Role;
use oee_core::store::setting::{self, MAX_MINOR_STOP_THRESHOLD_S, Setting};
use serde::{Deserialize, Deserializer, Serialize};

use crate::WebState;
use crate::access::{Access, Caller, Route};
use crate::api::{ApiError, ApiJson};
use crate::page::{Field, FormPage, Page, flash, found, place_error, refused};

pub(super) fn routes() -> Vec<Route> {
    let admin = Access::Role(Role::Admin);
    vec![
        Route::get("/admin/settings", admin, page),
        Route::post("/admin/settings", admin, save),
        Route::get("/api/v1/settings", admin, api_get),
        Route::put("/api/v1/settings", admin, api_put),
    ]
}

/// A switch of the config file as a fact: its label, `on` or `off`, and what that means here.
fn switch(label: &str, on: bool, when_on: &str, when_off: &str) -> (String, String) {
    (label.into(), if on { format!("on: {when_on}") } else { format!("off: {when_off}") })
}

/// The read-only facts: what the config file decides, in words, with the key that changes it.
fn config_facts(state: &WebState) -> Vec<(String, String)> {
    let c = &state.config;
    let public_url = if c.http.public_url.is_empty() { "not set".to_string() } else { c.http.public_url.clone() };
    vec![
        (
            "How to change these".into(),
            "in the config file (or its OEE_SECTION__KEY environment variable); a restart applies them".into(),
        ),
        (
            "Plant time zone ([plant] timezone)".into(),
            format!(
                "{}. Not changed here: every shift change the scheduler has planned, every plant day and every \
                 report day is reckoned in it, so the whole server must start again with the new one.",
                state.tz.name()
            ),
        ),
        switch(
            "Anonymous MQTT clients ([broker] allow_anonymous)",
            c.broker.allow_anonymous,
            "any MQTT client may send machine commands without credentials",
            "each MQTT client needs a device's credentials (oee-server device add)",
        ),
        switch(
            "Open device API ([bridge] open_device_api)",
            c.bridge.open_device_api,
            "HTTP devices send commands for any machine without a token, as in the old system",
            "each HTTP device sends its own token",
        ),
        switch(
            "Open tablet registration ([tablets] open_registration)",
            c.tablets.open_registration,
            "any new tablet registers itself on its first request",
            "new tablets register only while the pairing window is open (Admin › Tablets)",
        ),
        switch(
            "Tablets pair themselves ([tablets] auto_pair)",
            c.tablets.auto_pair,
            "a new tablet takes the first machine without one, and tablets may choose their machine",
            "an administrator pairs each tablet (Admin › Tablets)",
        ),
        (
            "Public address ([http] public_url)".into(),
            format!(
                "{public_url}{}",
                if c.http.public_url.starts_with("https://") {
                    " (session cookies are sent over HTTPS only)"
                } else {
                    " (session cookies are not marked HTTPS-only)"
                }
            ),
        ),
        (
            "Sessions ([web] session_idle_minutes, session_lifetime_hours)".into(),
            format!(
                "end after {} minutes unused, and {} hours after sign-in at the latest",
                c.web.session_idle_minutes, c.web.session_lifetime_hours
            ),
        ),
    ]
}

fn threshold_fact(state: &WebState, set: Option<&Setting<u64>>) -> (String, String) {
    let config = state.config.oee.minor_stop_threshold_s;
    let text = match set {
        Some(s) => format!(
            "{} s, set here{} on {} (the config file says {config} s)",
            s.value,
            s.updated_by.as_deref().map_or_else(String::new, |b| format!(" by {b}")),
            s.updated_at.with_timezone(&state.tz).format("%Y-%m-%d %H:%M")
        ),
        None => format!("{config} s, from the config file ([oee] minor_stop_threshold_s)"),
    };
    ("Minor-stop threshold in force".into(), text)
}

async fn settings_form(
    state: &WebState,
    c: &Caller,
    value: String,
    e: Option<&oee_core::Error>,
) -> Result<Response, oee_core::Error> {
    let set = setting::minor_stop_threshold(&state.pool).await?;
    let mut fields =
        vec![Field::text("minor_stop_threshold_s", "Minor-stop threshold (seconds)", value).kind("number").hint(
            format!(
                "Breakdowns shorter than this count as minor stops (a performance loss) instead of availability \
             losses; 0: only codes whose loss category is minor stop. Empty: the config file's value applies \
             ({} s). 0 to {MAX_MINOR_STOP_THRESHOLD_S}. Saving clears the cached report days, which are \
             computed again with the new threshold.",
                state.config.oee.minor_stop_threshold_s
            ),
        )];
    let mut error = None;
    if let Some(e) = e {
        place_error(&mut fields, &mut error, e);
    }
    let mut facts = vec![threshold_fact(state, set.as_ref())];
    facts.extend(config_facts(state));
    let body = FormPage {
        heading: "Plant settings".into(),
        action: "/admin/settings".into(),
        submit: "Save",
        fields,
        error,
        back: "/admin-home".into(),
        facts,
        more: vec![],
    };
    let page = Page::new(state, Some(c), "Plant settings", "admin", body).await;
    Ok(state.pages.render("form", &page))
}

async fn page(State(state): State<WebState>, Extension(c): Extension<Caller>) -> Result<Response, ApiError> {
    let set = setting::minor_stop_threshold(&state.pool).await?;
    Ok(settings_form(&state, &c, set.map(|s| s.value.to_string()).unwrap_or_default(), None).await?)
}

#[derive(Debug, Deserialize, Default)]
struct SettingsForm {
    #[serde(default)]
    minor_stop_threshold_s: String,
}

/// A threshold as typed: empty for the config file's, else whole seconds.
fn threshold_of(text: &str) -> Result<Option<u64>, oee_core::Error> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<u64>().map(Some).map_err(|_| {
        oee_core::Error::field(
            "minor_stop_threshold_s",
            format!(
                "`{text}` is not a whole number of seconds: give 0 to {MAX_MINOR_STOP_THRESHOLD_S}, or leave it empty \
                 for the config file's value"
            ),
        )
    })
}

async fn save(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Form(form): Form<SettingsForm>,
) -> Result<Response, ApiError> {
    let outcome = async {
        let seconds = threshold_of(&form.minor_stop_threshold_s)?;
        let forgotten = setting::set_minor_stop_threshold(&state.pool, seconds, Some(&c.name), Utc::now()).await?;
        Ok::<_, oee_core::Error>((seconds, forgotten))
    }
    .await;
    match outcome {
        Ok((seconds, forgotten)) => {
            let now = match seconds {
                Some(s) => format!("{s} s"),
                None => format!("the config file's {} s", state.config.oee.minor_stop_threshold_s),
            };
            flash(
                &state,
                &c,
                &format!(
                    "The minor-stop threshold is {now}. {forgotten} cached report day(s) were cleared; reports compute \
                     them again with it."
                ),
            )
            .await;
            Ok(found("/admin/settings"))
        }
        Err(e) => Ok(refused(settings_form(&state, &c, form.minor_stop_threshold_s.clone(), Some(&e)).await?, &e)),
    }
}

/// The settings as the API gives them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct SettingsJson {
    /// The plant's time zone (`[plant] timezone`; read-only, applied at start).
    timezone: String,
    /// The minor-stop threshold in force, in seconds.
    minor_stop_threshold_s: u64,
    /// `setting` (set here) or `config` (the config file's `[oee] minor_stop_threshold_s`).
    minor_stop_threshold_source: ThresholdSource,
    /// The config file's value, which applies while none is set here.
    minor_stop_threshold_config_s: u64,
    /// When it was set here (`null`: the config file's applies).
    minor_stop_threshold_updated_at: Option<DateTime<Utc>>,
    /// Who set it here.
    minor_stop_threshold_updated_by: Option<String>,
    config: ConfigSwitches,
}

/// Where the minor-stop threshold in force comes from.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum ThresholdSource {
    /// Set here (`PUT /api/v1/settings`, or Admin › Plant settings).
    Setting,
    /// The config file's `[oee] minor_stop_threshold_s`.
    Config,
}

/// Read-only switches of the config file, by their key (changed in the file; a restart applies them).
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ConfigSwitches {
    #[serde(rename = "plant.timezone")]
    plant_timezone: String,
    #[serde(rename = "broker.allow_anonymous")]
    broker_allow_anonymous: bool,
    #[serde(rename = "bridge.open_device_api")]
    bridge_open_device_api: bool,
    #[serde(rename = "tablets.open_registration")]
    tablets_open_registration: bool,
    #[serde(rename = "tablets.auto_pair")]
    tablets_auto_pair: bool,
    #[serde(rename = "http.public_url")]
    http_public_url: String,
    #[serde(rename = "web.session_idle_minutes")]
    web_session_idle_minutes: u32,
    #[serde(rename = "web.session_lifetime_hours")]
    web_session_lifetime_hours: u32,
}

async fn settings_json(state: &WebState) -> Result<SettingsJson, oee_core::Error> {
    let set = setting::minor_stop_threshold(&state.pool).await?;
    let c = &state.config;
    Ok(SettingsJson {
        timezone: state.tz.name().to_string(),
        minor_stop_threshold_s: set.as_ref().map_or(c.oee.minor_stop_threshold_s, |s| s.value),
        minor_stop_threshold_source: if set.is_some() { ThresholdSource::Setting } else { ThresholdSource::Config },
        minor_stop_threshold_config_s: c.oee.minor_stop_threshold_s,
        minor_stop_threshold_updated_at: set.as_ref().map(|s| s.updated_at),
        minor_stop_threshold_updated_by: set.and_then(|s| s.updated_by),
        config: ConfigSwitches {
            plant_timezone: state.tz.name().to_string(),
            broker_allow_anonymous: c.broker.allow_anonymous,
            bridge_open_device_api: c.bridge.open_device_api,
            tablets_open_registration: c.tablets.open_registration,
            tablets_auto_pair: c.tablets.auto_pair,
            http_public_url: c.http.public_url.clone(),
            web_session_idle_minutes: c.web.session_idle_minutes,
            web_session_lifetime_hours: c.web.session_lifetime_hours,
        },
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/settings",
    tag = "settings",
    operation_id = "get_settings",
    summary = "The plant settings",
    description = "The minor-stop threshold in force and where it comes from, and the config file's switches an \
                   administrator should know about.",
    responses(
        (status = 200, description = "The settings", body = SettingsJson),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_get(State(state): State<WebState>) -> Result<axum::Json<SettingsJson>, ApiError> {
    Ok(axum::Json(settings_json(&state).await?))
}

/// Tells a field that is absent (`None`: leave it) from one that is `null` (`Some(None)`: back to the
/// config file's value).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The body of `PUT /api/v1/settings`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SettingsUpdate {
    /// Seconds (0 to 86400), or `null` for the config file's value; left out: unchanged.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>)]
    minor_stop_threshold_s: Option<Option<u64>>,
}

#[utoipa::path(
    put,
    path = "/api/v1/settings",
    tag = "settings",
    operation_id = "update_settings",
    summary = "Change the plant settings",
    description = "Setting the minor-stop threshold (or clearing it with `null`) forgets every cached report day: \
                   they are computed again with the threshold now in force.",
    request_body = SettingsUpdate,
    responses(
        (status = 200, description = "Saved: the settings now", body = SettingsJson),
        (status = 400, description = "An input is refused: `field` names it", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_put(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    ApiJson(body): ApiJson<SettingsUpdate>,
) -> Result<axum::Json<SettingsJson>, ApiError> {
    if let Some(seconds) = body.minor_stop_threshold_s {
        setting::set_minor_stop_threshold(&state.pool, seconds, Some(&c.name), Utc::now()).await?;
    }
    Ok(axum::Json(settings_json(&state).await?))
}

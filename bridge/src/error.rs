//! Every HTTP answer of the device API that is not a plain success, decided in one place.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use oee_core::verdict::{Refusal, UPTIME_WITHOUT_JOB_409_BODY, Verdict};

use crate::body::BodyFault;
use oee_core::request::SendError;

/// An error answer of the device API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not taken: not declared as JSON (the reference answers 415), not a JSON object, or
    /// carrying a NUL.
    #[error("{0}")]
    Body(#[from] BodyFault),
    /// A refusal decided before or by ingest.
    #[error("{0}")]
    Refused(Refusal),
    /// Ingest's verdict, passed through.
    #[error("{}", .0.message.as_deref().unwrap_or("refused"))]
    Verdict(Verdict),
    /// No verdict in time: nothing was acknowledged, the client should retry.
    #[error("the change was not confirmed ({0}): try again")]
    Unavailable(SendError),
    /// Not sent, because it could not be: too large for MQTT, or naming no possible topic.
    #[error("{0}")]
    Unsendable(SendError),
    #[error("database: {0}")]
    Database(#[from] oee_core::Error),
    /// No usable credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Credentials that do not cover this request.
    #[error("{0}")]
    Forbidden(String),
}

impl From<SendError> for ApiError {
    fn from(e: SendError) -> ApiError {
        if e.is_retryable() { ApiError::Unavailable(e) } else { ApiError::Unsendable(e) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, reason) = match &self {
            ApiError::Body(BodyFault::NotJson) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_json".to_string()),
            ApiError::Body(f) => (StatusCode::BAD_REQUEST, f.reason().to_string()),
            ApiError::Unsendable(e @ SendError::TooLarge { .. }) => (status_code(e.status()), "too_large".to_string()),
            ApiError::Unsendable(e) => (status_code(e.status()), "bad_topic".to_string()),
            ApiError::Refused(r) => (status_code(r.status()), r.reason().to_string()),
            ApiError::Verdict(v) => (status_code(v.status), v.reason.clone().unwrap_or_default()),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable".to_string()),
            ApiError::Unauthorized(_) => {
                let body = ErrorBody::new(self.to_string(), "unauthorized");
                return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response();
            }
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden".to_string()),
            ApiError::Database(e) => {
                tracing::error!("device API database error: {e}");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable".to_string())
            }
        };
        // The reference's exact body for an up-state code other than Up with no job (contract C37).
        if status == StatusCode::CONFLICT && reason == "uptime_without_job" {
            return (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], UPTIME_WITHOUT_JOB_409_BODY)
                .into_response();
        }
        (status, ErrorBody::new(self.to_string(), reason)).into_response()
    }
}

/// The body of a refusal the bridge makes itself, before ingest judged the command (ingest's own refusals are
/// [`Verdict`]s).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = BridgeError)]
pub(crate) struct ErrorBody {
    /// What was wrong and what to do.
    pub error: String,
    /// A short machine-readable name of the refusal, e.g. `unauthorized`, `not_json`, `unknown_command`.
    pub reason: String,
}

impl ErrorBody {
    pub(crate) fn new(error: impl Into<String>, reason: impl Into<String>) -> axum::Json<ErrorBody> {
        axum::Json(ErrorBody { error: error.into(), reason: reason.into() })
    }
}

fn status_code(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

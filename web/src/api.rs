//! The JSON side of the admin API: one error type whose `IntoResponse` decides every status, and a JSON
//! body extractor whose refusals are JSON too.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A refusal of an admin API call: `{"message": …}` and, for one bad input, `"field": …`.
#[derive(Debug)]
pub(crate) struct ApiError(pub oee_core::Error);

impl From<oee_core::Error> for ApiError {
    fn from(e: oee_core::Error) -> ApiError {
        ApiError(e)
    }
}

/// The body of every refusal of the admin API (and of the access check): what was wrong and what to do, and
/// for a refusal of one input, its name.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    message: String,
    /// The input that was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use oee_core::Error as E;
        let status = match &self.0 {
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::Conflict(_) => StatusCode::CONFLICT,
            E::Field { message, .. } if message.contains("already") => StatusCode::CONFLICT,
            E::Field { .. } | E::Invalid(_) => StatusCode::BAD_REQUEST,
            other => {
                tracing::warn!("admin API: {other}");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        let (message, field) = match self.0 {
            E::Field { field, message } => (message, Some(field)),
            other => (other.to_string(), None),
        };
        (status, axum::Json(ErrorBody { message, field })).into_response()
    }
}

/// A JSON body; a body that is not JSON of the expected shape gets 400 with a JSON message.
pub(crate) struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => {
                let message = match &rejection {
                    JsonRejection::MissingJsonContentType(_) => {
                        "send the body as JSON with Content-Type: application/json".to_string()
                    }
                    other => format!("the body is not what this call takes: {}", other.body_text()),
                };
                Err((StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({ "message": message }))).into_response())
            }
        }
    }
}

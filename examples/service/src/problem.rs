//! Errors as HTTP answers, in one stable JSON shape:
//! `{"error": {"code": "...", "message": "..."}}`. The code is a fixed word
//! scripts can match; the message says what was wrong. Neither carries a
//! secret: the crate's errors never do.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

/// An error answer.
#[derive(Debug)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// A fixed word scripts can match (`not_found`, `invalid_request`,
    /// `cache_unavailable`, `wrong_code`, `code_voided`).
    pub code: &'static str,
    /// What was wrong.
    pub message: String,
}

impl Problem {
    /// An error answer.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

impl From<StoreError> for Problem {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Invalid(why) => Problem::invalid(why),
            StoreError::Redis(err) => {
                tracing::warn!(error = %err, "cache request failed");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cache_unavailable",
                    format!("the cache failed: {err}"),
                )
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

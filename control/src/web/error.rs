//! API errors: a status and one fixed, generic message. Nothing from the inside (error chains, stack traces,
//! user existence, secrets) ever reaches a response body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Every error an API route can answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400 with a fixed hint naming what was wrong with the input.
    BadRequest(&'static str),
    /// 401: no valid session. One message for every reason.
    Unauthorized,
    /// 401 from login: the same words for an unknown user and a wrong password.
    BadCredentials,
    /// 403.
    Forbidden(&'static str),
    /// 404.
    NotFound,
    /// 409.
    Conflict(&'static str),
    /// 413.
    PayloadTooLarge,
    /// 415.
    UnsupportedMediaType,
    /// 429 with `Retry-After`.
    TooManyRequests(Duration),
    /// 503: a dependency (engine queue, store, audit) is unavailable.
    Unavailable(&'static str),
    /// 500.
    Internal,
}

impl ApiError {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::BadCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message.
    pub fn message(&self) -> &'static str {
        match self {
            Self::BadRequest(m) | Self::Forbidden(m) | Self::Conflict(m) | Self::Unavailable(m) => {
                m
            }
            Self::Unauthorized => "authentication required",
            Self::BadCredentials => "invalid username or password",
            Self::NotFound => "not found",
            Self::PayloadTooLarge => "request body too large",
            Self::UnsupportedMediaType => "send Content-Type: application/json",
            Self::TooManyRequests(_) => "too many requests; try again later",
            Self::Internal => "internal error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message() }).to_string();
        let mut r = (
            self.status(),
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        if let Self::TooManyRequests(d) = self {
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if matches!(self, Self::Unauthorized) {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"aegis\""),
            );
        }
        r
    }
}

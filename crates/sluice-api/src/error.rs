//! Every HTTP error is a JSON body `{"error": "...", "detail": "..."}` with the right
//! status (SPEC §2).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sluice_core::{DecodeError, ValidationError};
use sluice_store::StoreError;
use sluice_store::catalog::CatalogError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub detail: String,
    /// The request field at fault (JSON path such as `protection.window`), when one is.
    pub field: Option<String>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            detail: detail.into(),
            field: None,
            retry_after: None,
        }
    }
    /// 400 for a field that is unknown, of the wrong type, or outside its bounds; the
    /// answer names the field (in `detail` and in `field`).
    pub fn invalid_field(field: impl Into<String>, reason: impl std::fmt::Display) -> ApiError {
        let field = field.into();
        ApiError {
            field: Some(field.clone()),
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("{field}: {reason}"),
            )
        }
    }
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad request", detail)
    }
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not found", detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }
    pub fn too_large(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload too large", detail)
    }
    pub fn unsupported_type(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported media type",
            detail,
        )
    }
    pub fn unavailable(detail: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable",
                detail,
            )
        }
    }
    /// 429 for a client address that sent too many wrong admin tokens.
    pub fn too_many_auth_failures(retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many authentication failures",
                "too many wrong admin tokens from this address; wait before trying again",
            )
        }
    }
    pub fn rate_limited(detail: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate limited", detail)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.error, "detail": self.detail });
        if let Some(f) = self.field {
            body["field"] = f.into();
        }
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::TooMany { .. } => ApiError::too_large(e.to_string()),
            _ => ApiError::bad_request(e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    /// Only a transient store error is a 503 with `Retry-After`; a permanent one is the
    /// 4xx that says what is wrong with the request, or a 500.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable { .. } => {
                tracing::warn!(error = %e, "storage cannot serve the request for now");
                ApiError::unavailable(e.to_string(), 5)
            }
            StoreError::EntryTooLarge { .. } => ApiError::too_large(e.to_string()),
            StoreError::InvalidEnvId(_) => ApiError::not_found(e.to_string()),
            StoreError::InvalidKey(_) => ApiError::bad_request(e.to_string()),
            StoreError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            StoreError::Corrupt { .. } | StoreError::Encode { .. } | StoreError::Config(_) => {
                tracing::error!(error = %e, "storage error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error",
                    e.to_string(),
                )
            }
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(v: ValidationError) -> Self {
        ApiError::invalid_field(v.field, v.reason)
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound(d) => ApiError::not_found(format!("{d} not found")),
            CatalogError::Conflict(d) => ApiError::new(StatusCode::CONFLICT, "conflict", d),
            CatalogError::Invalid(v) => v.into(),
            CatalogError::Store(s) => s.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_store::{Bucket, Corruption, Transient};

    fn answer(e: StoreError) -> (StatusCode, Option<u64>) {
        let a = ApiError::from(e);
        (a.status, a.retry_after)
    }

    #[test]
    fn only_transient_store_errors_are_503_with_retry_after() {
        for cause in [
            Transient::Full,
            Transient::Closed,
            Transient::Timeout(std::time::Duration::from_secs(5)),
            Transient::io(std::io::Error::other("disk")),
            Transient::Lagged(3),
        ] {
            assert_eq!(
                answer(StoreError::unavailable("x", cause)),
                (StatusCode::SERVICE_UNAVAILABLE, Some(5))
            );
        }
        let permanent = [
            (
                StoreError::EntryTooLarge { size: 2, limit: 1 },
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                StoreError::InvalidEnvId("a/b".into()),
                StatusCode::NOT_FOUND,
            ),
            (
                StoreError::InvalidKey(String::new()),
                StatusCode::BAD_REQUEST,
            ),
            (
                StoreError::conflict(Bucket::Projects, "p"),
                StatusCode::CONFLICT,
            ),
            (
                StoreError::corrupt("x", Corruption::Checksum),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                StoreError::Config("bad".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (e, status) in permanent {
            assert_eq!(answer(e), (status, None));
        }
    }
}

//! API errors and their JSON form.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use owl_api::{ErrorBody, ErrorDetail};
use owl_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), field: None }
    }
    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, code: "invalid_input", message: message.into(), field: Some(field.into()) }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
    }
}

impl From<owl_core::ValidationError> for ApiError {
    fn from(e: owl_core::ValidationError) -> Self {
        ApiError::bad_request(e.field.clone(), e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) | StoreError::ScheduleNotFound(_) | StoreError::TriggerNotFound(_) | StoreError::Missing(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            StoreError::UnknownDependency { item, .. } => ApiError {
                status: StatusCode::BAD_REQUEST,
                code: "unknown_dependency",
                message: format!("{e}; check the id with `owl ls`"),
                field: Some(match item {
                    Some(i) => format!("tasks[{i}].after"),
                    None => "after".into(),
                }),
            },
            StoreError::Invalid(v) => v.into(),
            StoreError::StaleAttempt { .. } | StoreError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            StoreError::Backend(detail) => {
                tracing::error!(error = %detail, "storage failure while serving a request");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "owl could not complete the request because of a storage error; see the daemon log",
                )
            }
        }
    }
}

impl From<owl_engine::chats::ChatError> for ApiError {
    fn from(e: owl_engine::chats::ChatError) -> Self {
        use owl_engine::chats::ChatError;
        match e {
            ChatError::Store(e) => e.into(),
            ChatError::Busy(_) => ApiError::new(StatusCode::CONFLICT, "chat_busy", e.to_string()),
            ChatError::NotRunning(_) => ApiError::new(StatusCode::CONFLICT, "no_turn_running", e.to_string()),
            ChatError::ShuttingDown => ApiError::unavailable(e.to_string()),
            ChatError::NoSuchAgent(_) => ApiError::bad_request("agent", e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_string(), message: self.message, field: self.field } };
        (self.status, axum::Json(body)).into_response()
    }
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no route for {}; the API is under /v1 (see /v1/openapi.json)", uri.path()))
}

pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not supported on {}; see /v1/openapi.json", uri.path()),
    )
}

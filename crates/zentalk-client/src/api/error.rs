//! Per-request errors: each one a status code and a JSON body `{"error": code, "detail": text}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Why a request was refused. The [`RequestError::code`] strings are stable and part of the
/// API; the `detail` text is for people and may change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No `Authorization: Bearer` token, or not the right one (401).
    #[error("missing or wrong API token")]
    Unauthorized,
    /// The request came from a web page whose origin is not allowed (403).
    #[error("origin not allowed: {origin}")]
    OriginNotAllowed {
        /// The request's `Origin` header.
        origin: String,
    },
    /// The `Host` header is not a loopback name (403; defeats DNS rebinding).
    #[error("host not allowed: {host}")]
    HostNotAllowed {
        /// The request's `Host` header.
        host: String,
    },
    /// The body is larger than [`super::MAX_BODY_BYTES`] (413).
    #[error("request body larger than {max} bytes")]
    BodyTooLarge {
        /// [`super::MAX_BODY_BYTES`].
        max: usize,
    },
    /// The body is not the JSON this endpoint takes (400).
    #[error("bad JSON body: {detail}")]
    BadJson {
        /// What serde said.
        detail: String,
    },
    /// An address is neither 64 hex nor 52 base32 characters of a valid address (400).
    #[error("bad address {found:?}: expected 64 hex or 52 base32 characters")]
    BadAddress {
        /// What was given (truncated to 80 characters).
        found: String,
    },
    /// An identity key is not 64 hex characters of a valid Ed25519 public key (400).
    #[error("bad identity key {found:?}: expected 64 hex characters of an Ed25519 public key")]
    BadIdentityKey {
        /// What was given (truncated to 80 characters).
        found: String,
    },
    /// The text to send is empty (400).
    #[error("empty text")]
    EmptyText,
    /// The text to send is longer than one message carries (400).
    #[error("text too long: at most {max} bytes, found {found}")]
    TextTooLong {
        /// [`crate::MAX_TEXT_LEN`].
        max: usize,
        /// The text's length in UTF-8 bytes.
        found: usize,
    },
    /// The query string is malformed or has unknown parameters (400).
    #[error("bad query: {detail}")]
    BadQuery {
        /// What is wrong.
        detail: String,
    },
    /// `limit` is 0 or above [`super::MAX_PAGE_LIMIT`] (400).
    #[error("limit must be 1..={max}, found {found}")]
    BadLimit {
        /// [`super::MAX_PAGE_LIMIT`].
        max: u32,
        /// What was given.
        found: u32,
    },
    /// `before` is not a cursor this API returned (400).
    #[error("bad cursor {found:?}")]
    BadCursor {
        /// What was given (truncated to 80 characters).
        found: String,
    },
    /// `GET /v1/events` without a WebSocket upgrade (400).
    #[error("this endpoint is a WebSocket: {detail}")]
    WebSocketRequired {
        /// What was missing.
        detail: String,
    },
    /// No such endpoint (404).
    #[error("no such endpoint")]
    NotFound,
    /// The endpoint exists but not with this method (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// No contact card for this identity key was found in the DHT (404).
    #[error("contact card not found: {detail}")]
    ContactNotFound {
        /// What the driver said.
        detail: String,
    },
    /// The address is not a contact: add it by identity key first (404).
    #[error("not a contact: add it by identity key first (POST /v1/contacts)")]
    UnknownContact,
    /// [`super::MAX_WEBSOCKETS`] event sockets are already open (503).
    #[error("too many event WebSockets (at most {max})")]
    TooManyWebSockets {
        /// [`super::MAX_WEBSOCKETS`].
        max: usize,
    },
    /// The driver has stopped or is shutting down (503).
    #[error("client driver unavailable: {detail}")]
    Unavailable {
        /// What the driver said.
        detail: String,
    },
    /// The network (DHT or relays) failed; the request may be retried (502).
    #[error("network: {detail}")]
    Network {
        /// What the driver said.
        detail: String,
    },
    /// The driver could not carry out the command (500).
    #[error("client driver error: {detail}")]
    Driver {
        /// What the driver said.
        detail: String,
    },
}

impl RequestError {
    /// The stable machine-readable code (the JSON body's `error` field).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::OriginNotAllowed { .. } => "origin_not_allowed",
            Self::HostNotAllowed { .. } => "host_not_allowed",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BadJson { .. } => "bad_json",
            Self::BadAddress { .. } => "bad_address",
            Self::BadIdentityKey { .. } => "bad_identity_key",
            Self::EmptyText => "empty_text",
            Self::TextTooLong { .. } => "text_too_long",
            Self::BadQuery { .. } => "bad_query",
            Self::BadLimit { .. } => "bad_limit",
            Self::BadCursor { .. } => "bad_cursor",
            Self::WebSocketRequired { .. } => "websocket_required",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::ContactNotFound { .. } => "contact_not_found",
            Self::UnknownContact => "unknown_contact",
            Self::Network { .. } => "network_error",
            Self::TooManyWebSockets { .. } => "too_many_websockets",
            Self::Unavailable { .. } => "unavailable",
            Self::Driver { .. } => "driver_error",
        }
    }

    /// The HTTP status it is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::OriginNotAllowed { .. } | Self::HostNotAllowed { .. } => StatusCode::FORBIDDEN,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadJson { .. }
            | Self::BadAddress { .. }
            | Self::BadIdentityKey { .. }
            | Self::EmptyText
            | Self::TextTooLong { .. }
            | Self::BadQuery { .. }
            | Self::BadLimit { .. }
            | Self::BadCursor { .. }
            | Self::WebSocketRequired { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound | Self::ContactNotFound { .. } | Self::UnknownContact => {
                StatusCode::NOT_FOUND
            }
            Self::Network { .. } => StatusCode::BAD_GATEWAY,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooManyWebSockets { .. } | Self::Unavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Driver { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code().to_owned(),
            detail: self.to_string(),
        }
    }
}

/// An echo of caller input in an error, cut to 80 characters.
pub(crate) fn truncated(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable code ([`RequestError::code`]).
    pub error: String,
    /// Human-readable explanation.
    pub detail: String,
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        if self == Self::Unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"zentalk\""),
            );
        }
        response
    }
}

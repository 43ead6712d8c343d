//! The router: a guard (host, origin, token) in front of every route, the JSON handlers and
//! the event WebSocket.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};
use zentalk_crypto::{Address, IdentityPublicKey};

use super::error::truncated;
use super::types::{addr, id_hex};
use super::{
    AddContactRequest, ApiEvent, Backend, DEFAULT_PAGE_LIMIT, MAX_BODY_BYTES, MAX_PAGE_LIMIT,
    MAX_WEBSOCKET_MESSAGE, MAX_WEBSOCKETS, MessagesPage, RequestError, SendRequest, SendResponse,
    Token, TypingRequest, WS_PROTOCOL, WS_TOKEN_PROTOCOL_PREFIX,
};
use crate::MAX_TEXT_LEN;

/// The path of the event WebSocket (the only one that accepts the token as a subprotocol).
const EVENTS_PATH: &str = "/v1/events";

struct AppState<B> {
    backend: B,
    token: Arc<Token>,
    origins: Arc<[String]>,
    ws_slots: Arc<Semaphore>,
    stopped: watch::Receiver<bool>,
}

impl<B: Clone> Clone for AppState<B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            token: Arc::clone(&self.token),
            origins: Arc::clone(&self.origins),
            ws_slots: Arc::clone(&self.ws_slots),
            stopped: self.stopped.clone(),
        }
    }
}

/// The whole API as an axum router.
pub(crate) fn router<B: Backend>(
    backend: B,
    token: Token,
    origins: Vec<String>,
    stopped: watch::Receiver<bool>,
) -> Router {
    let state = AppState {
        backend,
        token: Arc::new(token),
        origins: origins.into(),
        ws_slots: Arc::new(Semaphore::new(MAX_WEBSOCKETS)),
        stopped,
    };
    Router::new()
        .route("/v1/account", get(account::<B>))
        .route("/v1/contacts", get(contacts::<B>).post(add_contact::<B>))
        .route("/v1/conversations", get(conversations::<B>))
        .route("/v1/conversations/{address}/messages", get(messages::<B>))
        .route("/v1/conversations/{address}/read", post(mark_read::<B>))
        .route("/v1/conversations/{address}/typing", post(typing::<B>))
        .route("/v1/messages", post(send::<B>))
        .route(EVENTS_PATH, get(events::<B>))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), guard::<B>))
        .with_state(state)
}

async fn not_found() -> RequestError {
    RequestError::NotFound
}

async fn method_not_allowed() -> RequestError {
    RequestError::MethodNotAllowed
}

/// Runs before every route (and the fallbacks): refuses a non-loopback `Host`, an origin not
/// allowed, and a missing or wrong token, before any handler or extractor runs.
async fn guard<B: Backend>(State(state): State<AppState<B>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if let Some(host) = headers.get(header::HOST)
        && !host_is_loopback(host)
    {
        return RequestError::HostNotAllowed {
            host: truncated(&String::from_utf8_lossy(host.as_bytes())),
        }
        .into_response();
    }
    let allowed_origin = match headers.get(header::ORIGIN) {
        None => None,
        Some(origin) => {
            if state
                .origins
                .iter()
                .any(|o| o.as_bytes() == origin.as_bytes())
            {
                Some(origin.clone())
            } else {
                return RequestError::OriginNotAllowed {
                    origin: truncated(&String::from_utf8_lossy(origin.as_bytes())),
                }
                .into_response();
            }
        }
    };
    let mut response = if allowed_origin.is_some()
        && req.method() == Method::OPTIONS
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        preflight()
    } else if !authorized(&state.token, headers, req.uri().path() == EVENTS_PATH) {
        RequestError::Unauthorized.into_response()
    } else {
        next.run(req).await
    };
    if let Some(origin) = allowed_origin {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// The answer to a CORS preflight from an allowed origin (no token needed for it: it changes
/// nothing and says only what the real request may carry).
fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// Whether a `Host` header names this machine: `localhost` or a loopback IP, any port.
fn host_is_loopback(host: &HeaderValue) -> bool {
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, _)) => ip,
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether the request carries the token: `Authorization: Bearer <hex>`, or (only where
/// `allow_protocol`, the event WebSocket) a `Sec-WebSocket-Protocol` entry
/// `zentalk.token.<hex>` for browsers, which cannot set headers on a WebSocket.
fn authorized(token: &Token, headers: &HeaderMap, allow_protocol: bool) -> bool {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.as_bytes();
        return match value.split_at_checked(7) {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"bearer ") => {
                token.matches(rest.trim_ascii())
            }
            _ => false,
        };
    }
    allow_protocol
        && headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .filter_map(|p| {
                p.trim_ascii()
                    .strip_prefix(WS_TOKEN_PROTOCOL_PREFIX.as_bytes())
            })
            .any(|t| token.matches(t))
}

/// A JSON request body of at most [`MAX_BODY_BYTES`]: 413 above, 400 for bad JSON or
/// unknown fields.
struct JsonBody<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = RequestError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let too_large = RequestError::BodyTooLarge {
            max: MAX_BODY_BYTES,
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(too_large);
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| too_large)?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| RequestError::BadJson {
                detail: e.to_string(),
            })
    }
}

fn parse_address(s: &str) -> Result<Address, RequestError> {
    s.parse::<Address>().map_err(|_| RequestError::BadAddress {
        found: truncated(s),
    })
}

/// An identity key as the CLI prints it: 64 hex characters (either case) of a valid
/// Ed25519 point.
fn parse_identity(s: &str) -> Result<IdentityPublicKey, RequestError> {
    super::from_hex::<32>(s.as_bytes())
        .and_then(|b| IdentityPublicKey::from_bytes(&b).ok())
        .ok_or_else(|| RequestError::BadIdentityKey {
            found: truncated(s),
        })
}

fn path_address(path: Result<Path<String>, PathRejection>) -> Result<Address, RequestError> {
    match path {
        Ok(Path(s)) => parse_address(&s),
        Err(e) => Err(RequestError::BadAddress {
            found: truncated(&e.body_text()),
        }),
    }
}

async fn account<B: Backend>(State(s): State<AppState<B>>) -> Result<Response, RequestError> {
    Ok(Json(s.backend.account().await?).into_response())
}

async fn contacts<B: Backend>(State(s): State<AppState<B>>) -> Result<Response, RequestError> {
    Ok(Json(s.backend.contacts().await?).into_response())
}

async fn add_contact<B: Backend>(
    State(s): State<AppState<B>>,
    body: Result<JsonBody<AddContactRequest>, RequestError>,
) -> Result<Response, RequestError> {
    let JsonBody(req) = body?;
    let identity = parse_identity(&req.identity_key)?;
    Ok(Json(s.backend.add_contact(identity).await?).into_response())
}

async fn conversations<B: Backend>(State(s): State<AppState<B>>) -> Result<Response, RequestError> {
    Ok(Json(s.backend.conversations().await?).into_response())
}

/// `?before=&limit=` of the history endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesQuery {
    before: Option<String>,
    limit: Option<u32>,
}

async fn messages<B: Backend>(
    State(s): State<AppState<B>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<MessagesQuery>, QueryRejection>,
) -> Result<Response, RequestError> {
    let peer = path_address(path)?;
    let Query(q) = query.map_err(|e| RequestError::BadQuery {
        detail: e.body_text(),
    })?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
    if limit == 0 || limit > MAX_PAGE_LIMIT {
        return Err(RequestError::BadLimit {
            max: MAX_PAGE_LIMIT,
            found: limit,
        });
    }
    let before = q.before.filter(|b| !b.is_empty());
    let messages = s.backend.messages(peer, before, limit).await?;
    let full = u32::try_from(messages.len()).is_ok_and(|n| n >= limit);
    let next_before = if full {
        messages.last().map(|m| m.cursor.clone())
    } else {
        None
    };
    Ok(Json(MessagesPage {
        messages,
        next_before,
    })
    .into_response())
}

async fn send<B: Backend>(
    State(s): State<AppState<B>>,
    body: Result<JsonBody<SendRequest>, RequestError>,
) -> Result<Response, RequestError> {
    let JsonBody(req) = body?;
    let to = parse_address(&req.to)?;
    if req.text.is_empty() {
        return Err(RequestError::EmptyText);
    }
    if req.text.len() > MAX_TEXT_LEN {
        return Err(RequestError::TextTooLong {
            max: MAX_TEXT_LEN,
            found: req.text.len(),
        });
    }
    let id = s.backend.send_text(to, req.text).await?;
    let answer = SendResponse {
        id: id_hex(&id),
        to: addr(&to),
    };
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

async fn mark_read<B: Backend>(
    State(s): State<AppState<B>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, RequestError> {
    let peer = path_address(path)?;
    s.backend.mark_read(peer).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn typing<B: Backend>(
    State(s): State<AppState<B>>,
    path: Result<Path<String>, PathRejection>,
    body: Result<JsonBody<TypingRequest>, RequestError>,
) -> Result<Response, RequestError> {
    let peer = path_address(path)?;
    let JsonBody(req) = body?;
    s.backend.set_typing(peer, req.typing).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn events<B: Backend>(
    State(s): State<AppState<B>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, RequestError> {
    let ws = ws.map_err(|e| RequestError::WebSocketRequired {
        detail: e.body_text(),
    })?;
    let permit = Arc::clone(&s.ws_slots).try_acquire_owned().map_err(|_| {
        RequestError::TooManyWebSockets {
            max: MAX_WEBSOCKETS,
        }
    })?;
    // Subscribed before the upgrade answer: an app that saw the 101 misses no later event.
    let events = s.backend.subscribe();
    let stopped = s.stopped.clone();
    Ok(ws
        .protocols([WS_PROTOCOL])
        .max_message_size(MAX_WEBSOCKET_MESSAGE)
        .max_frame_size(MAX_WEBSOCKET_MESSAGE)
        .on_upgrade(move |socket| pump::<B>(socket, events, stopped, permit)))
}

/// Returns once the server is told to stop (or its [`super::ApiServer`] is dropped).
pub(crate) async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    loop {
        if *stopped.borrow_and_update() {
            return;
        }
        if stopped.changed().await.is_err() {
            return;
        }
    }
}

/// Forwards events to one socket until the app closes it, the driver stops or the server
/// shuts down. What the app sends is read (to see its close) and ignored.
async fn pump<B: Backend>(
    mut socket: WebSocket,
    mut events: broadcast::Receiver<B::Event>,
    mut stopped: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let close = |reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code: close_code::AWAY,
            reason: reason.into(),
        }))
    };
    loop {
        let api = tokio::select! {
            () = until_stopped(&mut stopped) => {
                let _ = socket.send(close("server shutting down")).await;
                return;
            }
            event = events.recv() => match event {
                Ok(event) => match B::to_api(&event) {
                    Some(api) => api,
                    None => continue,
                },
                Err(RecvError::Lagged(missed)) => ApiEvent::Lagged { missed },
                Err(RecvError::Closed) => {
                    let _ = socket.send(close("client stopped")).await;
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        };
        let Ok(text) = serde_json::to_string(&api) else {
            continue;
        };
        if socket.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
}

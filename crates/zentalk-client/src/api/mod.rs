//! The local API for apps (cargo feature `local-api`): JSON over HTTP and a WebSocket of
//! events, served by axum on a loopback address only, every request carrying the
//! per-install [`Token`].
//!
//! An app (a GUI, a bot, a bridge) talks to the running client through it; the client keeps
//! every key: no endpoint returns secret material, and the API only reaches the client through
//! the driver's commands (send, contacts, conversations, history, mark read, typing, events).
//! The full reference with request and response examples is `docs/client-api.md`.
//!
//! | method and path | what |
//! | --- | --- |
//! | `GET /v1/account` | our address (base32 and hex) and contact card |
//! | `GET /v1/contacts` | contacts |
//! | `POST /v1/contacts` `{"address"}` | add a contact by address (card looked up in the DHT) |
//! | `GET /v1/conversations` | conversations with unread counts |
//! | `GET /v1/conversations/{address}/messages?before=&limit=` | newest-first history page |
//! | `POST /v1/messages` `{"to","text"}` | send a text |
//! | `POST /v1/conversations/{address}/read` | mark read (sends read receipts) |
//! | `POST /v1/conversations/{address}/typing` `{"typing"}` | typing indicator |
//! | `GET /v1/events` (WebSocket) | [`ApiEvent`]s as JSON text frames |
//!
//! Security model, each point tested in `tests/api.rs` and this module's unit tests:
//! - [`serve`] refuses a bind address that is not loopback ([`ApiError::NotLoopback`]);
//! - every request needs `Authorization: Bearer <token hex>` (a WebSocket from a browser,
//!   which cannot set that header, may instead offer the subprotocols `zentalk.v1` and
//!   `zentalk.token.<token hex>`); a missing or wrong token gets 401 before anything runs;
//!   the comparison is constant-time ([`zentalk_crypto::hash::ct_eq`]);
//! - no CORS: a request carrying an `Origin` header is refused (403) unless that origin was
//!   listed in [`ApiConfig::allowed_origins`], so web pages cannot use the API (nor open its
//!   WebSocket) unless the user configured them; a `Host` that is not a loopback name is
//!   refused (403), which defeats DNS rebinding;
//! - bodies are bounded ([`MAX_BODY_BYTES`]), texts ([`crate::MAX_TEXT_LEN`]), pages
//!   ([`MAX_PAGE_LIMIT`]) and WebSockets ([`MAX_WEBSOCKETS`]) too; every refusal is a JSON
//!   [`ErrorBody`] with a stable code ([`RequestError::code`]); no input panics.
//!
//! ```no_run
//! # async fn run(handle: zentalk_client::DriverHandle, dir: &std::path::Path)
//! # -> Result<(), zentalk_client::api::ApiError> {
//! use zentalk_client::api::{self, ApiConfig, Token};
//!
//! let token = Token::load_or_create(&dir.join(api::TOKEN_FILE_NAME))?;
//! let server = api::serve(handle, ApiConfig::new(token)).await?;
//! println!("local API on http://{}", server.local_addr());
//! // ... later:
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod backend;
mod driver_backend;
mod error;
mod routes;
mod token;
mod types;

#[cfg(test)]
mod tests;

pub use error::{ErrorBody, RequestError};
pub use token::{TOKEN_FILE_NAME, TOKEN_LEN, Token};
pub use types::{
    AccountView, AddContactRequest, ApiEvent, ContactView, ConversationView, MessageStatusView,
    MessageView, MessagesPage, SendRequest, SendResponse, TypingRequest,
};

pub(crate) use backend::Backend;

/// Largest request body accepted, in bytes (a [`crate::MAX_TEXT_LEN`] text fits even with
/// every character escaped as `\uXXXX`). Larger bodies get 413 `body_too_large`.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Most messages one history page returns (`limit` above it gets 400 `bad_limit`).
pub const MAX_PAGE_LIMIT: u32 = 200;
/// History page size when `limit` is not given.
pub const DEFAULT_PAGE_LIMIT: u32 = 50;
/// Most event WebSockets open at once; one more gets 503 `too_many_websockets`.
pub const MAX_WEBSOCKETS: usize = 16;
/// Largest message an app may send on the event WebSocket (the API ignores what apps send
/// there; this only bounds it).
pub const MAX_WEBSOCKET_MESSAGE: usize = 4 * 1024;
/// How long [`ApiServer::shutdown`] waits for in-flight requests before it drops them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Port of [`ApiConfig::new`]'s bind address (127.0.0.1).
pub const DEFAULT_PORT: u16 = 7717;
/// The WebSocket subprotocol the server selects (and a browser offers with its token).
pub const WS_PROTOCOL: &str = "zentalk.v1";
/// Prefix of the WebSocket subprotocol that carries the token for browsers:
/// `zentalk.token.<64 hex characters>`.
pub const WS_TOKEN_PROTOCOL_PREFIX: &str = "zentalk.token.";

/// How the local API is served.
#[derive(Debug)]
#[non_exhaustive]
pub struct ApiConfig {
    /// Where to listen; must be a loopback address (127.0.0.0/8 or ::1). Port 0 picks a free
    /// port ([`ApiServer::local_addr`] tells which).
    pub bind: SocketAddr,
    /// The per-install token every request must present.
    pub token: Token,
    /// Origins (`scheme://host[:port]`, compared exactly) whose web pages may use the API.
    /// Empty by default: any request with an `Origin` header is refused, so browsers cannot
    /// reach the API. A listed origin gets the CORS headers it needs, and still needs the
    /// token.
    pub allowed_origins: Vec<String>,
}

impl ApiConfig {
    /// 127.0.0.1:[`DEFAULT_PORT`], no allowed origins.
    pub fn new(token: Token) -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)),
            token,
            allowed_origins: Vec::new(),
        }
    }

    /// The same with another bind address (checked by [`serve`]).
    #[must_use]
    pub fn with_bind(mut self, bind: SocketAddr) -> Self {
        self.bind = bind;
        self
    }

    /// The same with these allowed origins.
    #[must_use]
    pub fn with_allowed_origins(mut self, origins: Vec<String>) -> Self {
        self.allowed_origins = origins;
        self
    }
}

/// What can go wrong setting up or stopping the API (per-request errors are
/// [`RequestError`]s).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The bind address is not a loopback address: the API is for apps on this machine only.
    #[error("the local API binds loopback addresses only, not {addr}")]
    NotLoopback {
        /// What was asked for.
        addr: SocketAddr,
    },
    /// Listening failed (port taken, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Where.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the token file failed.
    #[error("token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The token file does not hold exactly [`TOKEN_LEN`] bytes in hex.
    #[error(
        "token file {path}: expected {expected} hex characters, found {found} bytes of another format"
    )]
    TokenFormat {
        /// The file.
        path: PathBuf,
        /// `2 * TOKEN_LEN`.
        expected: usize,
        /// Length of what was found (after trimming whitespace).
        found: usize,
    },
    /// The token file can be read by other users (it must be mode 0600 or stricter).
    #[error("token file {path}: mode {mode:o} lets other users read it; expected 600")]
    TokenPermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The server task failed or panicked.
    #[error("local API server: {0}")]
    Server(String),
}

/// A running local API. Dropping it stops the server as [`ApiServer::shutdown`] does, without
/// waiting.
#[derive(Debug)]
pub struct ApiServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl ApiServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes the event WebSockets (close code 1001), lets in-flight
    /// requests finish (at most [`SHUTDOWN_GRACE`]) and returns. The driver keeps running.
    pub async fn shutdown(mut self) -> Result<(), ApiError> {
        let _ = self.stop.send(true);
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(ApiError::Server(e.to_string())),
            Ok(Err(e)) => Err(ApiError::Server(e.to_string())),
            Err(_) => {
                task.abort();
                Ok(())
            }
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Serves the local API over a running driver: checks that `config.bind` is loopback, binds,
/// and returns the running server.
pub async fn serve(handle: crate::DriverHandle, config: ApiConfig) -> Result<ApiServer, ApiError> {
    serve_backend(handle, config).await
}

/// [`serve`] over any [`Backend`] (the driver, or a fake in unit tests).
pub(crate) async fn serve_backend<B: Backend>(
    backend: B,
    config: ApiConfig,
) -> Result<ApiServer, ApiError> {
    let ApiConfig {
        bind,
        token,
        allowed_origins,
    } = config;
    if !bind.ip().is_loopback() {
        return Err(ApiError::NotLoopback { addr: bind });
    }
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| ApiError::Bind { addr: bind, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ApiError::Bind { addr: bind, source })?;
    let (stop, stopped) = watch::channel(false);
    let app = routes::router(backend, token, allowed_origins, stopped.clone());
    let mut stopped = stopped;
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                // A dropped sender (ApiServer dropped) also stops the server.
                routes::until_stopped(&mut stopped).await;
            })
            .await
    });
    Ok(ApiServer {
        local_addr,
        stop,
        task: Some(task),
    })
}

/// Lowercase hex of bytes.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Bytes of hex text (either case) of exactly `N` bytes; `None` otherwise.
pub(crate) fn from_hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

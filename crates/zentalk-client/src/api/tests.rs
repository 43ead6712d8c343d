//! The API over a fake client: token file, guard (host, origin, token), validation, limits,
//! the event WebSocket and shutdown, all through real HTTP on 127.0.0.1. The same API over the
//! real driver and relays is tested in `tests/api.rs`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use zentalk_crypto::{Address, IdentityKeyPair, IdentityPublicKey};

use super::to_hex;
use super::types::{addr, id_hex};
use super::*;
use crate::{MAX_TEXT_LEN, MessageId};

// ---------------------------------------------------------------- the fake client

#[derive(Default)]
struct Calls {
    sent: Vec<(Address, String)>,
    added: Vec<IdentityPublicKey>,
    read: Vec<Address>,
    typing: Vec<(Address, bool)>,
    pages: Vec<(Address, Option<String>, u32)>,
}

#[derive(Clone)]
struct Fake {
    me: Address,
    calls: Arc<Mutex<Calls>>,
    events: broadcast::Sender<ApiEvent>,
}

/// Total number of history messages the fake has per conversation.
const FAKE_HISTORY: u32 = 7;

fn identity(seed: u8) -> IdentityPublicKey {
    IdentityKeyPair::from_seed(&[seed; 32]).public_key()
}

/// The identity key whose card the fake's DHT does not have.
const UNKNOWN_SEED: u8 = 9;

fn contact_view(id: &IdentityPublicKey) -> ContactView {
    ContactView {
        address: addr(&id.address()),
        identity_key: to_hex(id.as_bytes()),
        pending: 0,
    }
}

impl Fake {
    fn new() -> Self {
        Self {
            me: identity(1).address(),
            calls: Arc::new(Mutex::new(Calls::default())),
            events: broadcast::channel(8).0,
        }
    }
    fn nothing_changed(&self) -> bool {
        let c = self.calls.lock().unwrap();
        c.sent.is_empty() && c.added.is_empty() && c.read.is_empty() && c.typing.is_empty()
    }
}

impl Backend for Fake {
    type Event = ApiEvent;

    async fn account(&self) -> Result<AccountView, RequestError> {
        Ok(AccountView {
            address: self.me.to_base32(),
            address_hex: self.me.to_hex(),
            identity_key: to_hex(identity(1).as_bytes()),
        })
    }
    async fn add_contact(&self, id: IdentityPublicKey) -> Result<ContactView, RequestError> {
        if id == identity(UNKNOWN_SEED) {
            return Err(RequestError::ContactNotFound {
                detail: "not found in the DHT".into(),
            });
        }
        self.calls.lock().unwrap().added.push(id);
        Ok(contact_view(&id))
    }
    async fn contacts(&self) -> Result<Vec<ContactView>, RequestError> {
        let c = self.calls.lock().unwrap();
        Ok(c.added.iter().map(contact_view).collect())
    }
    async fn send_text(&self, to: Address, text: String) -> Result<MessageId, RequestError> {
        if to == identity(UNKNOWN_SEED).address() {
            return Err(RequestError::UnknownContact);
        }
        let mut c = self.calls.lock().unwrap();
        c.sent.push((to, text));
        Ok([u8::try_from(c.sent.len()).unwrap(); 16])
    }
    async fn conversations(&self) -> Result<Vec<ConversationView>, RequestError> {
        Ok(vec![ConversationView {
            peer: peer_b32(),
            unread: 3,
            last_ms: Some(1_700_000_000_000),
            last_text: Some("hi".into()),
        }])
    }
    async fn messages(
        &self,
        peer: Address,
        before: Option<String>,
        limit: u32,
    ) -> Result<Vec<MessageView>, RequestError> {
        self.calls
            .lock()
            .unwrap()
            .pages
            .push((peer, before.clone(), limit));
        let start = match before {
            None => FAKE_HISTORY,
            Some(c) => c
                .strip_prefix('c')
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n <= FAKE_HISTORY)
                .ok_or(RequestError::BadCursor { found: c })?,
        };
        Ok((start.saturating_sub(limit)..start)
            .rev()
            .map(|i| MessageView {
                id: id_hex(&[u8::try_from(i).unwrap(); 16]),
                peer: addr(&peer),
                outgoing: i % 2 == 0,
                seq: u64::from(i),
                text: format!("m{i}"),
                sent_ms: u64::from(i),
                status: MessageStatusView::Delivered,
                read: false,
                cursor: format!("c{i}"),
            })
            .collect())
    }
    async fn mark_read(&self, peer: Address) -> Result<(), RequestError> {
        self.calls.lock().unwrap().read.push(peer);
        Ok(())
    }
    async fn set_typing(&self, peer: Address, typing: bool) -> Result<(), RequestError> {
        self.calls.lock().unwrap().typing.push((peer, typing));
        Ok(())
    }
    fn subscribe(&self) -> broadcast::Receiver<ApiEvent> {
        self.events.subscribe()
    }
    fn to_api(event: &ApiEvent) -> Option<ApiEvent> {
        Some(event.clone())
    }
}

// ---------------------------------------------------------------- a tiny HTTP/1.1 client

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn error_code(&self) -> String {
        let body: ErrorBody = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)));
        body.error
    }
}

/// One request on a fresh connection (`Connection: close`), read to the end. A `Host`
/// header is added unless `headers` has one.
async fn http(
    at: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    let mut s = TcpStream::connect(at).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {at}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    if let Some(b) = body {
        // The server may answer (413) and close before reading all of a large body.
        let _ = s.write_all(b).await;
    }
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest = &rest[line_end + 2 + size + 2..];
        }
        body = out;
    }
    Reply {
        status,
        headers,
        body,
    }
}

// ---------------------------------------------------------------- helpers

fn token(seed: u64) -> Token {
    Token::generate(&mut ChaCha20Rng::seed_from_u64(seed))
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A server over a fake; returns it, the fake and the bearer header value.
async fn start(origins: Vec<String>) -> (ApiServer, Fake, String) {
    let fake = Fake::new();
    let t = token(1);
    let bearer = format!("Bearer {}", t.expose_hex().as_str());
    let config = ApiConfig::new(t)
        .with_bind(loopback())
        .with_allowed_origins(origins);
    let server = serve_backend(fake.clone(), config).await.unwrap();
    (server, fake, bearer)
}

fn peer() -> Address {
    identity(2).address()
}

fn peer_b32() -> String {
    peer().to_base32()
}

// ---------------------------------------------------------------- token

#[test]
fn token_file_is_created_0600_then_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(TOKEN_FILE_NAME);
    let a = Token::load_or_create(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.len(), 2 * TOKEN_LEN + 1);
    assert_eq!(text.trim_end(), a.expose_hex().as_str());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let b = Token::load_or_create(&path).unwrap();
    assert_eq!(a.expose_hex(), b.expose_hex());
    // No temporary file left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // Two installs get different tokens.
    let other = Token::load_or_create(&dir.path().join("other")).unwrap();
    assert_ne!(a.expose_hex(), other.expose_hex());
}

#[test]
fn concurrent_starters_agree_on_one_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(TOKEN_FILE_NAME);
    let tokens: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    Token::load_or_create(&path)
                        .unwrap()
                        .expose_hex()
                        .to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[cfg(unix)]
#[test]
fn token_file_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(TOKEN_FILE_NAME);
    let _ = Token::load_or_create(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    match Token::load_or_create(&path) {
        Err(ApiError::TokenPermissions { mode, .. }) => assert_eq!(mode, 0o644),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_token_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [&[u8]; 4] = [
        b"abc\n",
        &[b'g'; 64],
        &[b'a'; 66],
        &[b'a'; 300], // larger than any token file: refused before reading
    ];
    for (i, content) in cases.iter().enumerate() {
        let path = dir.path().join(format!("t{i}"));
        {
            let mut f = super::token::create_private(&path).unwrap();
            std::io::Write::write_all(&mut f, content).unwrap();
        }
        match Token::load_or_create(&path) {
            Err(ApiError::TokenFormat {
                expected, found, ..
            }) => {
                assert_eq!(expected, 64);
                assert_eq!(found, content.trim_ascii().len());
            }
            other => panic!("case {i}: {other:?}"),
        }
    }
    // Missing directory: an I/O error naming the file, not a panic.
    let missing = dir.path().join("no/such/dir/token");
    assert!(matches!(
        Token::load_or_create(&missing),
        Err(ApiError::TokenFile { .. })
    ));
}

#[test]
fn token_matching_and_debug() {
    let t = token(5);
    let hex = t.expose_hex();
    assert!(t.matches(hex.as_bytes()));
    assert!(t.matches(hex.to_uppercase().as_bytes()));
    assert!(!t.matches(&hex.as_bytes()[..63]));
    assert!(!t.matches(b""));
    let mut wrong = hex.as_bytes().to_vec();
    wrong[10] = if wrong[10] == b'0' { b'1' } else { b'0' };
    assert!(!t.matches(&wrong));
    assert!(!token(6).matches(hex.as_bytes()));
    // Debug of the token and of a config holding it shows no byte of it.
    let config = ApiConfig::new(token(5));
    for shown in [
        format!("{t:?}"),
        format!("{config:?}"),
        format!("{config:#?}"),
    ] {
        assert!(!shown.contains(hex.as_str()), "{shown}");
        assert!(!shown.contains(&hex[..16]), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}

// ---------------------------------------------------------------- binding

#[tokio::test]
async fn non_loopback_bind_is_refused() {
    for bind in ["0.0.0.0:0", "192.0.2.1:0", "[::]:0", "10.1.2.3:7717"] {
        let bind: SocketAddr = bind.parse().unwrap();
        let config = ApiConfig::new(token(1)).with_bind(bind);
        match serve_backend(Fake::new(), config).await {
            Err(ApiError::NotLoopback { addr }) => assert_eq!(addr, bind),
            other => panic!("{bind}: {other:?}"),
        }
    }
    let server = serve_backend(Fake::new(), ApiConfig::new(token(1)).with_bind(loopback()))
        .await
        .unwrap();
    assert!(server.local_addr().ip().is_loopback());
    assert_ne!(server.local_addr().port(), 0);
    // A port already in use is an error, not a panic.
    let taken = ApiConfig::new(token(1)).with_bind(server.local_addr());
    assert!(matches!(
        serve_backend(Fake::new(), taken).await,
        Err(ApiError::Bind { .. })
    ));
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------- the guard

#[tokio::test]
async fn missing_or_wrong_token_gets_401_and_changes_nothing() {
    let (server, fake, bearer) = start(vec![]).await;
    let at = server.local_addr();
    let wrong = format!("Bearer {}", token(2).expose_hex().as_str());
    let send = serde_json::to_vec(&SendRequest {
        to: peer_b32(),
        text: "hello".into(),
    })
    .unwrap();
    let add = format!(
        "{{\"identity_key\":\"{}\"}}",
        to_hex(identity(2).as_bytes())
    );
    let p = peer_b32();
    let requests: Vec<(&str, String, Option<Vec<u8>>)> = vec![
        ("GET", "/v1/account".into(), None),
        ("GET", "/v1/contacts".into(), None),
        ("POST", "/v1/contacts".into(), Some(add.into_bytes())),
        ("GET", "/v1/conversations".into(), None),
        ("GET", format!("/v1/conversations/{p}/messages"), None),
        ("POST", "/v1/messages".into(), Some(send)),
        ("POST", format!("/v1/conversations/{p}/read"), None),
        (
            "POST",
            format!("/v1/conversations/{p}/typing"),
            Some(b"{\"typing\":true}".to_vec()),
        ),
        ("GET", "/v1/events".into(), None),
        ("GET", "/v1/no-such-endpoint".into(), None),
    ];
    let half = &bearer[..bearer.len() - 1];
    let bad_headers: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("Authorization", wrong.as_str())],
        vec![("Authorization", half)],
        vec![("Authorization", "Bearer")],
        vec![("Authorization", "Basic dXNlcjpwYXNz")],
        // The subprotocol token is not accepted outside the event WebSocket.
        vec![("Sec-WebSocket-Protocol", "zentalk.v1")],
    ];
    for (method, path, body) in &requests {
        for headers in &bad_headers {
            let r = http(at, method, path, headers, body.as_deref()).await;
            assert_eq!(r.status, 401, "{method} {path} {headers:?}");
            assert_eq!(r.error_code(), "unauthorized");
            assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
        }
    }
    assert!(fake.nothing_changed());
    assert!(fake.calls.lock().unwrap().pages.is_empty());
    // The right token works, in either case of the scheme and of the hex.
    let upper = format!("bearer {}", bearer[7..].to_uppercase());
    for auth in [bearer.as_str(), upper.as_str()] {
        let r = http(at, "GET", "/v1/account", &[("Authorization", auth)], None).await;
        assert_eq!(r.status, 200, "{auth}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn foreign_host_and_origin_are_refused() {
    let allowed = "http://localhost:3000".to_owned();
    let (server, fake, bearer) = start(vec![allowed.clone()]).await;
    let at = server.local_addr();
    let auth = ("Authorization", bearer.as_str());
    let body = format!("{{\"to\":\"{}\",\"text\":\"x\"}}", peer_b32());
    // DNS rebinding: a page of evil.example resolved to 127.0.0.1 sends Host: evil.example.
    for host in [
        "evil.example",
        "evil.example:7717",
        "192.0.2.1",
        "[2001:db8::1]:80",
    ] {
        let r = http(
            at,
            "POST",
            "/v1/messages",
            &[auth, ("Host", host)],
            Some(body.as_bytes()),
        )
        .await;
        assert_eq!(r.status, 403, "{host}");
        assert_eq!(r.error_code(), "host_not_allowed");
    }
    for host in [
        "localhost",
        "LOCALHOST:1",
        "127.0.0.1",
        "127.1.2.3:9",
        "[::1]:7717",
    ] {
        let r = http(at, "GET", "/v1/account", &[auth, ("Host", host)], None).await;
        assert_eq!(r.status, 200, "{host}");
    }
    // A web page of another origin, even one that knows the token.
    for origin in ["https://evil.example", "null", "http://localhost:3001"] {
        let r = http(
            at,
            "POST",
            "/v1/messages",
            &[auth, ("Origin", origin)],
            Some(body.as_bytes()),
        )
        .await;
        assert_eq!(r.status, 403, "{origin}");
        assert_eq!(r.error_code(), "origin_not_allowed");
        assert!(r.header("access-control-allow-origin").is_none());
    }
    assert!(fake.nothing_changed());
    // The configured origin: preflight without token, then the real request with it.
    let pre = http(
        at,
        "OPTIONS",
        "/v1/messages",
        &[
            ("Origin", allowed.as_str()),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
        None,
    )
    .await;
    assert_eq!(pre.status, 204);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some(allowed.as_str())
    );
    assert!(
        pre.header("access-control-allow-headers")
            .unwrap()
            .contains("authorization")
    );
    let r = http(
        at,
        "POST",
        "/v1/messages",
        &[("Origin", allowed.as_str())],
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(fake.nothing_changed());
    let r = http(
        at,
        "POST",
        "/v1/messages",
        &[auth, ("Origin", allowed.as_str())],
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some(allowed.as_str())
    );
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------- endpoints

#[tokio::test]
async fn every_endpoint_answers_in_its_json_shape() {
    let (server, fake, bearer) = start(vec![]).await;
    let at = server.local_addr();
    let auth = [("Authorization", bearer.as_str())];
    let p = peer_b32();
    let p_hex = peer().to_hex();
    let id2 = to_hex(identity(2).as_bytes());

    let r = http(at, "GET", "/v1/account", &auth, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let account: AccountView = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(account.address, fake.me.to_base32());
    assert_eq!(account.address_hex, fake.me.to_hex());
    assert_eq!(account.identity_key, to_hex(identity(1).as_bytes()));

    // Add by identity key (either case), listed with its address.
    let r = http(
        at,
        "POST",
        "/v1/contacts",
        &auth,
        Some(format!("{{\"identity_key\":\"{}\"}}", id2.to_uppercase()).as_bytes()),
    )
    .await;
    assert_eq!(r.status, 200);
    let c: ContactView = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(c.address, p);
    assert_eq!(c.identity_key, id2);
    let r = http(at, "GET", "/v1/contacts", &auth, None).await;
    let list: Vec<ContactView> = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(list, [c]);
    let unknown = identity(UNKNOWN_SEED);
    let r = http(
        at,
        "POST",
        "/v1/contacts",
        &auth,
        Some(format!("{{\"identity_key\":\"{}\"}}", to_hex(unknown.as_bytes())).as_bytes()),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "contact_not_found");
    let body = serde_json::to_vec(&SendRequest {
        to: unknown.address().to_base32(),
        text: "x".into(),
    })
    .unwrap();
    let r = http(at, "POST", "/v1/messages", &auth, Some(&body)).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "unknown_contact");

    let r = http(at, "GET", "/v1/conversations", &auth, None).await;
    let convs: Vec<ConversationView> = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(convs[0].unread, 3);

    // Paging: 7 messages, pages of 3, 3, 1.
    let mut before: Option<String> = None;
    let mut seen = Vec::new();
    for expect in [3, 3, 1] {
        let q = before
            .as_ref()
            .map_or(String::new(), |b| format!("&before={b}"));
        let r = http(
            at,
            "GET",
            &format!("/v1/conversations/{p}/messages?limit=3{q}"),
            &auth,
            None,
        )
        .await;
        assert_eq!(r.status, 200);
        let page: MessagesPage = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(page.messages.len(), expect);
        seen.extend(page.messages.iter().map(|m| m.seq));
        before = page.next_before;
        if expect < 3 {
            assert_eq!(before, None);
        }
    }
    assert_eq!(seen, [6, 5, 4, 3, 2, 1, 0]);
    let r = http(
        at,
        "GET",
        &format!("/v1/conversations/{p}/messages"),
        &auth,
        None,
    )
    .await;
    assert_eq!(r.json()["messages"].as_array().unwrap().len(), 7);
    assert_eq!(
        fake.calls.lock().unwrap().pages.last().unwrap().2,
        DEFAULT_PAGE_LIMIT
    );

    let r = http(
        at,
        "POST",
        "/v1/messages",
        &auth,
        Some(format!("{{\"to\":\"{p}\",\"text\":\"héllo\"}}").as_bytes()),
    )
    .await;
    assert_eq!(r.status, 202);
    let sent: SendResponse = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(sent.id, "01".repeat(16));
    assert_eq!(sent.to, p);

    let r = http(
        at,
        "POST",
        &format!("/v1/conversations/{p_hex}/read"),
        &auth,
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    let r = http(
        at,
        "POST",
        &format!("/v1/conversations/{p}/typing"),
        &auth,
        Some(b"{\"typing\":true}"),
    )
    .await;
    assert_eq!(r.status, 204);

    {
        let calls = fake.calls.lock().unwrap();
        let peer = peer();
        assert_eq!(calls.sent, [(peer, "héllo".to_owned())]);
        assert_eq!(calls.read, [peer]);
        assert_eq!(calls.typing, [(peer, true)]);
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_typed_errors_and_change_nothing() {
    let (server, fake, bearer) = start(vec![]).await;
    let at = server.local_addr();
    let auth = [("Authorization", bearer.as_str())];
    let p = peer_b32();
    let p_hex = peer().to_hex();
    let send = |to: &str, text: &str| {
        serde_json::to_vec(&SendRequest {
            to: to.into(),
            text: text.into(),
        })
        .unwrap()
    };
    let too_long = "x".repeat(MAX_TEXT_LEN + 1);
    let four_byte = "😀".repeat(MAX_TEXT_LEN / 4 + 1);
    let huge = vec![b' '; MAX_BODY_BYTES + 1];
    // (method, path, body, expected status, expected error code)
    type Case<'a> = (&'a str, String, Option<Vec<u8>>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/v1/messages".into(),
            Some(b"{not json".to_vec()),
            400,
            "bad_json",
        ),
        (
            "POST",
            "/v1/messages".into(),
            Some(b"".to_vec()),
            400,
            "bad_json",
        ),
        ("POST", "/v1/messages".into(), None, 400, "bad_json"),
        (
            "POST",
            "/v1/messages".into(),
            Some(b"[1,2]".to_vec()),
            400,
            "bad_json",
        ),
        (
            "POST",
            "/v1/messages".into(),
            Some(format!("{{\"to\":\"{p}\"}}").into_bytes()),
            400,
            "bad_json",
        ),
        (
            "POST",
            "/v1/messages".into(),
            Some(format!("{{\"to\":\"{p}\",\"text\":\"x\",\"from\":\"y\"}}").into_bytes()),
            400,
            "bad_json",
        ),
        (
            "POST",
            "/v1/messages".into(),
            Some(b"{\"to\":1,\"text\":\"x\"}".to_vec()),
            400,
            "bad_json",
        ),
        (
            "POST",
            "/v1/messages".into(),
            Some(send("alice", "x")),
            400,
            "bad_address",
        ),
        (
            "POST",
            "/v1/messages".into(),
            Some(send(&"z".repeat(64), "x")),
            400,
            "bad_address",
        ),
        (
            "POST",
            "/v1/messages".into(),
            Some(send(&p[..51], "x")),
            400,
            "bad_address",
        ),
        (
            "POST",
            "/v1/messages".into(),
            Some(send(&p, "")),
            400,
            "empty_text",
        ),
        (
            "POST",
            "/v1/messages".into(),
            Some(send(&p, &too_long)),
            400,
            "text_too_long",
        ),
        (
            "POST",
            "/v1/messages".into(),
            Some(send(&p, &four_byte)),
            400,
            "text_too_long",
        ),
        (
            "POST",
            "/v1/messages".into(),
            Some(huge.clone()),
            413,
            "body_too_large",
        ),
        (
            "POST",
            "/v1/contacts".into(),
            Some(huge),
            413,
            "body_too_large",
        ),
        (
            "POST",
            "/v1/contacts".into(),
            Some(format!("{{\"address\":\"{p}\"}}").into_bytes()),
            400,
            "bad_json",
        ),
        (
            "POST",
            "/v1/contacts".into(),
            Some(b"{\"identity_key\":\"nope\"}".to_vec()),
            400,
            "bad_identity_key",
        ),
        (
            "POST",
            "/v1/contacts".into(),
            Some(format!("{{\"identity_key\":\"{}\"}}", &p_hex[..63]).into_bytes()),
            400,
            "bad_identity_key",
        ),
        (
            "POST",
            "/v1/contacts".into(),
            Some(
                format!(
                    "{{\"identity_key\":\"{}\"}}",
                    "0".repeat(64).replacen('0', "g", 1)
                )
                .into_bytes(),
            ),
            400,
            "bad_identity_key",
        ),
        (
            "GET",
            "/v1/conversations/nope/messages".into(),
            None,
            400,
            "bad_address",
        ),
        (
            "GET",
            format!("/v1/conversations/{p}/messages?limit=0"),
            None,
            400,
            "bad_limit",
        ),
        (
            "GET",
            format!(
                "/v1/conversations/{p}/messages?limit={}",
                MAX_PAGE_LIMIT + 1
            ),
            None,
            400,
            "bad_limit",
        ),
        (
            "GET",
            format!("/v1/conversations/{p}/messages?limit=-1"),
            None,
            400,
            "bad_query",
        ),
        (
            "GET",
            format!("/v1/conversations/{p}/messages?limit=99999999999"),
            None,
            400,
            "bad_query",
        ),
        (
            "GET",
            format!("/v1/conversations/{p}/messages?colour=red"),
            None,
            400,
            "bad_query",
        ),
        (
            "GET",
            format!("/v1/conversations/{p}/messages?before=bogus"),
            None,
            400,
            "bad_cursor",
        ),
        (
            "POST",
            "/v1/conversations/nope/read".into(),
            None,
            400,
            "bad_address",
        ),
        (
            "POST",
            format!("/v1/conversations/{p}%ZZ/read"),
            None,
            400,
            "bad_address",
        ),
        (
            "POST",
            format!("/v1/conversations/{p}/typing"),
            Some(b"{\"typing\":\"yes\"}".to_vec()),
            400,
            "bad_json",
        ),
        (
            "POST",
            format!("/v1/conversations/{p}/typing"),
            None,
            400,
            "bad_json",
        ),
        ("GET", "/v1/events".into(), None, 400, "websocket_required"),
        ("GET", "/v2/account".into(), None, 404, "not_found"),
        ("GET", "/".into(), None, 404, "not_found"),
        (
            "DELETE",
            "/v1/contacts".into(),
            None,
            405,
            "method_not_allowed",
        ),
        (
            "GET",
            "/v1/messages".into(),
            None,
            405,
            "method_not_allowed",
        ),
    ];
    for (method, path, body, status, code) in &cases {
        let r = http(at, method, path, &auth, body.as_deref()).await;
        assert_eq!(
            r.status,
            *status,
            "{method} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.error_code(), *code, "{method} {path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    assert!(fake.nothing_changed());
    // At the limits: exactly MAX_TEXT_LEN bytes is sent, and a body of escapes that decodes
    // to MAX_TEXT_LEN bytes fits in MAX_BODY_BYTES.
    let r = http(
        at,
        "POST",
        "/v1/messages",
        &auth,
        Some(&send(&p, &"x".repeat(MAX_TEXT_LEN))),
    )
    .await;
    assert_eq!(r.status, 202);
    let escaped = format!(
        "{{\"to\":\"{p}\",\"text\":\"{}\"}}",
        "\\u0001".repeat(MAX_TEXT_LEN)
    );
    assert!(escaped.len() <= MAX_BODY_BYTES);
    let r = http(at, "POST", "/v1/messages", &auth, Some(escaped.as_bytes())).await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(fake.calls.lock().unwrap().sent.len(), 2);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_refused() {
    // No Content-Length to check up front: the limit applies while the body is read.
    let (server, fake, bearer) = start(vec![]).await;
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Authorization: {bearer}\r\nTransfer-Encoding: chunked\r\n\r\n",
        server.local_addr()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 4096];
    for _ in 0..(MAX_BODY_BYTES / chunk.len() + 2) {
        let mut c = format!("{:x}\r\n", chunk.len()).into_bytes();
        c.extend_from_slice(&chunk);
        c.extend_from_slice(b"\r\n");
        if s.write_all(&c).await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let r = parse_reply(&raw);
    assert_eq!(r.status, 413);
    assert_eq!(r.error_code(), "body_too_large");
    assert!(fake.nothing_changed());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_is_prompt_with_idle_connections_and_stops_accepting() {
    let (server, _fake, bearer) = start(vec![]).await;
    let at = server.local_addr();
    // A keep-alive connection that made one request and stays open, idle.
    let mut idle = TcpStream::connect(at).await.unwrap();
    let req = format!("GET /v1/account HTTP/1.1\r\nHost: {at}\r\nAuthorization: {bearer}\r\n\r\n");
    idle.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let started = tokio::time::Instant::now();
    server.shutdown().await.unwrap();
    assert!(
        started.elapsed() < SHUTDOWN_GRACE,
        "{:?}",
        started.elapsed()
    );
    // The idle connection was closed and the port no longer accepts.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        idle.read_to_end(&mut rest),
    )
    .await
    .unwrap();
    assert!(TcpStream::connect(at).await.is_err());
}

#[tokio::test]
async fn random_bodies_never_crash_the_server() {
    use rand_core::RngCore;
    let seed = 4242;
    println!("seed {seed}");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let (server, fake, bearer) = start(vec![]).await;
    let at = server.local_addr();
    let auth = [("Authorization", bearer.as_str())];
    let p = peer_b32();
    let paths = [
        "/v1/messages".to_owned(),
        "/v1/contacts".to_owned(),
        format!("/v1/conversations/{p}/typing"),
    ];
    for i in 0..60 {
        let len = usize::try_from(rng.next_u32() % 64).unwrap();
        let mut body = vec![0u8; len];
        rng.fill_bytes(&mut body);
        if i % 3 == 0 && len > 0 {
            body[0] = b'{';
        }
        let path = &paths[i % paths.len()];
        let r = http(at, "POST", path, &auth, Some(&body)).await;
        assert!(
            r.status == 400 || r.status == 413,
            "{path} {body:?}: {}",
            r.status
        );
    }
    assert!(fake.nothing_changed());
    let r = http(at, "GET", "/v1/account", &auth, None).await;
    assert_eq!(r.status, 200);
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------- events

async fn ws_connect(
    at: SocketAddr,
    headers: &[(&str, &str)],
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
        tungstenite::handshake::client::Response,
    ),
    tungstenite::Error,
> {
    let mut req = format!("ws://{at}/v1/events")
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    tokio_tungstenite::connect_async(req).await
}

async fn next_event(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
) -> ApiEvent {
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
            .await
            .expect("event within 5 s")
            .unwrap()
            .unwrap();
        if let tungstenite::Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

#[tokio::test]
async fn event_websocket_with_header_or_browser_subprotocol() {
    let (server, fake, bearer) = start(vec![]).await;
    let at = server.local_addr();
    let hex = bearer[7..].to_owned();

    // Header.
    let (mut a, _) = ws_connect(at, &[("Authorization", &bearer)]).await.unwrap();
    // Browser style: token as a subprotocol, the server selects zentalk.v1 (never the token).
    let protocols = format!("{WS_PROTOCOL}, {WS_TOKEN_PROTOCOL_PREFIX}{hex}");
    let (mut b, resp) = ws_connect(at, &[("Sec-WebSocket-Protocol", &protocols)])
        .await
        .unwrap();
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        WS_PROTOCOL
    );

    let event = ApiEvent::Message {
        from: peer_b32(),
        id: "ab".repeat(16),
        seq: 1,
        text: "hi".into(),
        received_ms: 5,
    };
    fake.events.send(event.clone()).unwrap();
    assert_eq!(next_event(&mut a).await, event);
    assert_eq!(next_event(&mut b).await, event);
    // The JSON is tagged by `type`.
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["type"], "message");

    // Wrong or missing token: the upgrade is refused with 401.
    let wrong_protocols = format!(
        "{WS_PROTOCOL}, {WS_TOKEN_PROTOCOL_PREFIX}{}",
        token(3).expose_hex().as_str()
    );
    for headers in [
        vec![],
        vec![("Sec-WebSocket-Protocol", wrong_protocols.as_str())],
        vec![("Sec-WebSocket-Protocol", WS_PROTOCOL)],
    ] {
        match ws_connect(at, &headers).await {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
            other => panic!("{headers:?}: {:?}", other.map(|_| ())),
        }
    }
    // A browser page of a foreign origin cannot open it even with the token.
    match ws_connect(
        at,
        &[
            ("Authorization", &bearer),
            ("Origin", "https://evil.example"),
        ],
    )
    .await
    {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("{:?}", other.map(|_| ())),
    }

    // A slow socket is told how many events it missed.
    for i in 0..20 {
        fake.events
            .send(ApiEvent::Typing {
                from: peer_b32(),
                typing: i % 2 == 0,
            })
            .unwrap();
    }
    let mut lagged = false;
    for _ in 0..20 {
        if let ApiEvent::Lagged { missed } = next_event(&mut a).await {
            assert!(missed > 0);
            lagged = true;
            break;
        }
    }
    assert!(lagged);

    // What an app sends is ignored; shutdown closes the sockets with 1001 (going away).
    a.send(tungstenite::Message::text("hello?")).await.unwrap();
    server.shutdown().await.unwrap();
    for ws in [&mut a, &mut b] {
        let closed = loop {
            match tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
                .await
                .unwrap()
            {
                Some(Ok(tungstenite::Message::Close(frame))) => break frame,
                Some(Ok(_)) => continue,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            closed.unwrap().code,
            tungstenite::protocol::frame::coding::CloseCode::Away
        );
    }
}

#[tokio::test]
async fn event_websockets_are_bounded() {
    let (server, _fake, bearer) = start(vec![]).await;
    let at = server.local_addr();
    let mut open = Vec::new();
    for _ in 0..MAX_WEBSOCKETS {
        open.push(
            ws_connect(at, &[("Authorization", &bearer)])
                .await
                .unwrap()
                .0,
        );
    }
    match ws_connect(at, &[("Authorization", &bearer)]).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // Closing one frees its slot.
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    let mut reopened = false;
    for _ in 0..50 {
        if ws_connect(at, &[("Authorization", &bearer)]).await.is_ok() {
            reopened = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(reopened);
    server.shutdown().await.unwrap();
}

#[test]
fn error_codes_and_statuses_are_stable() {
    let e = RequestError::TextTooLong { max: 10, found: 11 };
    assert_eq!(e.code(), "text_too_long");
    assert_eq!(e.status().as_u16(), 400);
    assert_eq!(e.body().detail, "text too long: at most 10 bytes, found 11");
    assert_eq!(RequestError::Unauthorized.status().as_u16(), 401);
    assert_eq!(RequestError::BodyTooLarge { max: 1 }.status().as_u16(), 413);
    assert_eq!(
        RequestError::Unavailable {
            detail: String::new()
        }
        .status()
        .as_u16(),
        503
    );
}

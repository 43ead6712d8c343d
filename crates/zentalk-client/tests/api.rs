//! The local API over real drivers, in one process: a UDP DHT on 127.0.0.1, five
//! zentalk-relay relays (TCP + Noise, SQLite mailboxes, descriptors found through the DHT),
//! two clients with encrypted SQLite stores, each serving the API on 127.0.0.1, and real HTTP
//! requests (a minimal HTTP/1.1 client over a tokio `TcpStream`) and WebSockets
//! (tokio-tungstenite) against them.
//!
//! Alice adds Bob and sends through `POST /v1/messages`; Bob's event WebSocket gets the
//! message, his `GET .../messages` shows it, his `POST .../read` reaches Alice's WebSocket as
//! a read receipt. A missing or wrong token gets 401 and sends nothing; oversized and bad
//! bodies are refused; a non-loopback bind is refused; no response carries secret material.
#![cfg(feature = "local-api")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{Net, PATIENCE, seeded, start_driver};
use futures::StreamExt;
use rand_chacha::ChaCha20Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use zentalk_client::api::{
    self, AccountView, ApiConfig, ApiError, ApiEvent, ApiServer, ContactView, ConversationView,
    ErrorBody, MAX_BODY_BYTES, MessagesPage, SendResponse, TOKEN_FILE_NAME, Token,
};
use zentalk_client::{Client, DriverHandle, MAX_TEXT_LEN};
use zentalk_crypto::Address;

/// A client serving the API: its driver, its server, its bearer header and the secret bytes
/// that must never appear in a response (identity seed, X25519 identity secret, contact
/// mailbox seed, API token).
struct App {
    driver: DriverHandle,
    server: ApiServer,
    at: SocketAddr,
    bearer: String,
    secrets: Vec<Vec<u8>>,
}

async fn app(net: &Net, home: usize, dir: &Path, rng: &mut ChaCha20Rng) -> App {
    let client = Client::new(rng, net.nodes[home], net.nodes.clone());
    let identity = client.account().identity();
    let mut secrets = vec![
        identity.seed().to_vec(),
        identity.to_x25519().to_secret_bytes().expose().to_vec(),
        client.contact_mailbox().seed().to_vec(),
    ];
    std::fs::create_dir_all(dir).unwrap();
    let driver = start_driver(net, client, &dir.join("client.db"), rng, common::options).await;
    let token = Token::load_or_create(&dir.join(TOKEN_FILE_NAME)).unwrap();
    let hex = token.expose_hex().to_string();
    secrets.push(hex.as_bytes().to_vec());
    let config = ApiConfig::new(token).with_bind("127.0.0.1:0".parse().unwrap());
    let server = api::serve(driver.clone(), config).await.unwrap();
    App {
        driver,
        at: server.local_addr(),
        server,
        bearer: format!("Bearer {hex}"),
        secrets,
    }
}

impl App {
    /// `GET path` with this client's token.
    async fn get(&self, seen: &mut Seen, path: &str) -> Reply {
        http(seen, self.at, "GET", path, Some(&self.bearer), None).await
    }

    /// `POST path` with this client's token.
    async fn post(&self, seen: &mut Seen, path: &str, body: Option<&[u8]>) -> Reply {
        http(seen, self.at, "POST", path, Some(&self.bearer), body).await
    }
}

// ---------------------------------------------------------------- HTTP and WebSocket

struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    fn parse<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn code(&self) -> String {
        self.parse::<ErrorBody>().error
    }
}

/// Every response body and event seen, to scan for secrets at the end.
#[derive(Default)]
struct Seen(Vec<Vec<u8>>);

/// One request on a fresh connection, read to the end (HTTP/1.1, `Connection: close`).
async fn http(
    seen: &mut Seen,
    at: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&[u8]>,
) -> Reply {
    let mut s = TcpStream::connect(at).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {at}\r\nConnection: close\r\n");
    if let Some(a) = auth {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    if let Some(b) = body {
        let _ = s.write_all(b).await; // a 413 may come before the whole body is read
    }
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {:?}", String::from_utf8_lossy(&raw)));
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = raw[split + 4..].to_vec();
    seen.0.push(raw);
    Reply { status, body }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn events(app: &App) -> Ws {
    let mut req = format!("ws://{}/v1/events", app.at)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", app.bearer.parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

/// The first event for which `pick` returns something, within [`PATIENCE`].
async fn wait_event<T>(
    seen: &mut Seen,
    ws: &mut Ws,
    mut pick: impl FnMut(&ApiEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("event in time")
            .unwrap()
            .unwrap();
        if let tungstenite::Message::Text(t) = msg {
            seen.0.push(t.as_bytes().to_vec());
            let event: ApiEvent = serde_json::from_str(&t).unwrap();
            if let Some(v) = pick(&event) {
                return v;
            }
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The textual forms a secret could take in JSON: hex (both cases), base32 (as addresses
/// are shown), and a JSON array of numbers.
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = vec![
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
        serde_json::to_vec(secret).unwrap(),
    ];
    if let Ok(a) = Address::from_slice(secret) {
        out.push(a.to_base32().into_bytes());
    }
    out
}

// ---------------------------------------------------------------- the test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_talk_through_the_local_api() {
    let mut rng = seeded(9101);
    let net = Net::start(5, &mut rng).await;
    let tmp = tempfile::tempdir().unwrap();
    let alice = app(&net, 0, &tmp.path().join("alice"), &mut rng).await;
    let bob = app(&net, 1, &tmp.path().join("bob"), &mut rng).await;
    let mut seen = Seen::default();
    let a_auth = Some(alice.bearer.as_str());

    // The token file was created 0600 in the client directory.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(tmp.path().join("alice").join(TOKEN_FILE_NAME)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    // Accounts: addresses and identity keys, as the drivers know them.
    let r = bob.get(&mut seen, "/v1/account").await;
    assert_eq!(r.status, 200);
    let bob_account: AccountView = r.parse();
    assert_eq!(bob_account.address, bob.driver.address().to_base32());
    assert_eq!(bob_account.address_hex, bob.driver.address().to_hex());
    let r = alice.get(&mut seen, "/v1/account").await;
    let alice_account: AccountView = r.parse();
    let a_addr = alice_account.address.clone();
    let b_addr = bob_account.address.clone();

    let mut bob_ws = events(&bob).await;
    let mut alice_ws = events(&alice).await;

    // Alice adds Bob by identity key (his card may take a moment to reach the DHT).
    let add = format!("{{\"identity_key\":\"{}\"}}", bob_account.identity_key);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let contact: ContactView = loop {
        let r = alice
            .post(&mut seen, "/v1/contacts", Some(add.as_bytes()))
            .await;
        match r.status {
            200 => break r.parse(),
            404 | 502 if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            s => panic!("{s}: {}", String::from_utf8_lossy(&r.body)),
        }
    };
    assert_eq!(contact.address, b_addr);
    assert_eq!(contact.identity_key, bob_account.identity_key);
    let r = alice.get(&mut seen, "/v1/contacts").await;
    let contacts: Vec<ContactView> = r.parse();
    assert_eq!(contacts.len(), 1);

    // Refused requests: each gets its status and code, and none sends anything.
    let send = |text: &str| {
        format!(
            "{{\"to\":\"{b_addr}\",\"text\":{}}}",
            serde_json::to_string(text).unwrap()
        )
        .into_bytes()
    };
    let wrong = format!("Bearer {}", "0".repeat(64));
    let hello = send("must not be sent");
    let refused: Vec<(Option<&str>, Vec<u8>, u16, &str)> = vec![
        (None, hello.clone(), 401, "unauthorized"),
        (Some(wrong.as_str()), hello.clone(), 401, "unauthorized"),
        (Some(bob.bearer.as_str()), hello, 401, "unauthorized"), // Bob's token is not Alice's
        (
            a_auth,
            vec![b'{'; MAX_BODY_BYTES + 1],
            413,
            "body_too_large",
        ),
        (
            a_auth,
            send(&"x".repeat(MAX_TEXT_LEN + 1)),
            400,
            "text_too_long",
        ),
        (a_auth, send(""), 400, "empty_text"),
        (
            a_auth,
            b"{\"to\":\"nobody\",\"text\":\"x\"}".to_vec(),
            400,
            "bad_address",
        ),
        (a_auth, b"not json".to_vec(), 400, "bad_json"),
    ];
    for (auth, body, status, code) in &refused {
        let r = http(
            &mut seen,
            alice.at,
            "POST",
            "/v1/messages",
            *auth,
            Some(body),
        )
        .await;
        assert_eq!(r.status, *status, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.code(), *code);
    }
    let path = format!("/v1/conversations/{b_addr}/messages");
    let r = alice.get(&mut seen, &path).await;
    assert!(r.parse::<MessagesPage>().messages.is_empty());
    assert_eq!(alice.driver.pending().await.unwrap(), 0);
    // Sending to someone who is not a contact.
    let stranger = Address::from_bytes([7; 32]).to_base32();
    let body = format!("{{\"to\":\"{stranger}\",\"text\":\"x\"}}");
    let r = alice
        .post(&mut seen, "/v1/messages", Some(body.as_bytes()))
        .await;
    assert_eq!((r.status, r.code().as_str()), (404, "unknown_contact"));

    // Alice sends through the API; Bob's WebSocket hears it.
    let text = "hello Bob, through three relays and an API";
    let r = alice
        .post(&mut seen, "/v1/messages", Some(&send(text)))
        .await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let sent: SendResponse = r.parse();
    assert_eq!(sent.to, b_addr);
    let (id, seq) = wait_event(&mut seen, &mut bob_ws, |e| match e {
        ApiEvent::Message {
            from,
            id,
            seq,
            text: t,
            ..
        } if *from == a_addr && t == text => Some((id.clone(), *seq)),
        _ => None,
    })
    .await;
    assert_eq!(id, sent.id);
    // Sequence numbers are shared with the engine's own sequenced messages (the mailbox
    // handover goes first), so the first text is not necessarily 1.
    assert!(seq >= 1);

    // Bob's history and conversation list show it, unread.
    let path = format!("/v1/conversations/{a_addr}/messages?limit=10");
    let r = bob.get(&mut seen, &path).await;
    assert_eq!(r.status, 200);
    let page: MessagesPage = r.parse();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.next_before, None);
    let m = &page.messages[0];
    assert_eq!(
        (m.id.as_str(), m.text.as_str(), m.outgoing, m.read),
        (sent.id.as_str(), text, false, false)
    );
    let r = bob.get(&mut seen, "/v1/conversations").await;
    let convs: Vec<ConversationView> = r.parse();
    assert_eq!(convs.len(), 1);
    assert_eq!(
        (convs[0].peer.as_str(), convs[0].unread),
        (a_addr.as_str(), 1)
    );

    // Alice hears that Bob's client stored it.
    wait_event(&mut seen, &mut alice_ws, |e| match e {
        ApiEvent::Delivered { to, id } if *to == b_addr && *id == sent.id => Some(()),
        _ => None,
    })
    .await;

    // Bob types and reads; Alice's WebSocket sees both, end to end.
    let path = format!("/v1/conversations/{a_addr}/typing");
    let r = bob.post(&mut seen, &path, Some(b"{\"typing\":true}")).await;
    assert_eq!(r.status, 204);
    let path = format!("/v1/conversations/{a_addr}/read");
    let r = bob.post(&mut seen, &path, None).await;
    assert_eq!(r.status, 204);
    let r = bob.get(&mut seen, "/v1/conversations").await;
    assert_eq!(r.parse::<Vec<ConversationView>>()[0].unread, 0);
    let (mut typed, mut read) = (false, false);
    while !(typed && read) {
        let e = wait_event(&mut seen, &mut alice_ws, |e| match e {
            ApiEvent::Typing { from, typing: true } if *from == b_addr => Some(1),
            ApiEvent::Read { by, ids } if *by == b_addr && ids.contains(&sent.id) => Some(2),
            _ => None,
        })
        .await;
        typed |= e == 1;
        read |= e == 2;
    }
    let path = format!("/v1/conversations/{b_addr}/messages");
    let r = alice.get(&mut seen, &path).await;
    let page: MessagesPage = r.parse();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(
        serde_json::to_value(page.messages[0].status).unwrap(),
        "read"
    );

    // Only the one message was ever sent: nothing refused above slipped through.
    let r = bob.get(&mut seen, "/v1/conversations").await;
    assert_eq!(r.parse::<Vec<ConversationView>>().len(), 1);
    let path = format!("/v1/conversations/{a_addr}/messages");
    let r = bob.get(&mut seen, &path).await;
    assert_eq!(r.parse::<MessagesPage>().messages.len(), 1);

    // No response and no event carried secret material of either client, nor a token.
    assert!(seen.0.len() > 20);
    // Control: the scan finds what is there (the public identity key is in /v1/account).
    let public = bob.driver.identity_key().to_bytes();
    assert!(seen.0.iter().any(|s| contains(s, &forms(&public)[0])));
    for secret in alice.secrets.iter().chain(&bob.secrets) {
        for form in forms(secret) {
            for s in &seen.0 {
                assert!(
                    !contains(s, &form),
                    "secret in {:?}",
                    String::from_utf8_lossy(s)
                );
            }
        }
    }

    // A non-loopback bind is refused with the real driver too.
    let t = Token::generate(&mut rng);
    let config = ApiConfig::new(t).with_bind("0.0.0.0:0".parse().unwrap());
    assert!(matches!(
        api::serve(alice.driver.clone(), config).await,
        Err(ApiError::NotLoopback { .. })
    ));

    // Shutdown closes the event sockets; then the drivers and the network stop.
    bob.server.shutdown().await.unwrap();
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match bob_ws.next().await {
                Some(Ok(tungstenite::Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok());
    alice.server.shutdown().await.unwrap();
    alice.driver.shutdown().await.unwrap();
    bob.driver.shutdown().await.unwrap();
    net.shutdown().await;
}

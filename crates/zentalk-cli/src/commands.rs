//! `zentalk send`, `inbox`, `chat` and `serve`: thin layers over the client driver.

use std::path::Path;
use std::time::Duration;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use zentalk_client::driver::{DriverEvent, DriverHandle, MessageStatus};
use zentalk_crypto::Address;

use crate::init::CliResult;
use crate::session::{self, PeerArg, describe, short_id};

/// Exit status of `zentalk send` when the message was stored and handed to the network but
/// the peer's delivery receipt did not come within `--wait` (it is retried on the next run).
pub(crate) const EXIT_QUEUED: u8 = 3;

/// What `zentalk send` achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendOutcome {
    /// The peer's delivery receipt arrived.
    Delivered,
    /// Saved; retried on the next run of any zentalk command until delivered.
    Queued,
}

/// Whether the history already shows `id` to `peer` as delivered (or read).
async fn delivered_in_history(
    handle: &DriverHandle,
    peer: Address,
    id: &zentalk_client::MessageId,
) -> bool {
    match handle.messages(peer, None, 50).await {
        Ok(page) => page.iter().any(|m| {
            m.id == *id && matches!(m.status, MessageStatus::Delivered | MessageStatus::Read)
        }),
        Err(_) => false,
    }
}

/// `zentalk send PEER TEXT`: adds the contact if needed, sends, waits up to `wait` for the
/// delivery receipt, then shuts the driver down (which saves everything).
pub(crate) async fn send(
    dir: &Path,
    peer: PeerArg,
    text: String,
    wait: Duration,
    fast_timers: bool,
) -> CliResult<SendOutcome> {
    // Links held: the receipt comes as a push, without polling.
    let s = session::start(dir, true, fast_timers).await?;
    let result = send_inner(&s.handle, s.events, peer, text, wait).await;
    let shutdown = s.handle.shutdown().await;
    let outcome = result?;
    shutdown.map_err(|e| format!("could not save the client state: {e}"))?;
    Ok(outcome)
}

async fn send_inner(
    handle: &DriverHandle,
    mut events: tokio::sync::broadcast::Receiver<DriverEvent>,
    peer: PeerArg,
    text: String,
    wait: Duration,
) -> CliResult<SendOutcome> {
    let to = session::resolve_peer(handle, peer).await?;
    let id = handle.send_text(to, text).await?;
    let waited = tokio::time::timeout(wait, async {
        loop {
            match events.recv().await {
                Ok(DriverEvent::Delivered { id: d, .. }) if d == id => return true,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return false,
            }
        }
    })
    .await;
    // A subscriber that lagged may have missed the event: the history is authoritative.
    if waited == Ok(true) || delivered_in_history(handle, to, &id).await {
        Ok(SendOutcome::Delivered)
    } else {
        Ok(SendOutcome::Queued)
    }
}

/// `zentalk inbox`: fetch every owned mailbox once, print what came, send receipts and what
/// is due, exit.
pub(crate) async fn inbox(dir: &Path, fast_timers: bool) -> CliResult<()> {
    let mut s = session::start(dir, false, fast_timers).await?;
    let result = inbox_inner(&s.handle, &mut s.events).await;
    let shutdown = s.handle.shutdown().await;
    result?;
    shutdown.map_err(|e| format!("could not save the client state: {e}"))?;
    Ok(())
}

/// How long `inbox` waits for the contact card publication the driver starts with (others
/// add us by the card, so a run should not exit before it is stored).
const CARD_WAIT: Duration = Duration::from_secs(5);

async fn inbox_inner(
    handle: &DriverHandle,
    events: &mut tokio::sync::broadcast::Receiver<DriverEvent>,
) -> CliResult<()> {
    let report = handle.sync_now().await?;
    let mut messages = 0usize;
    let mut card_done = false;
    let mut show = |e: &DriverEvent, card_done: &mut bool| {
        match e {
            DriverEvent::Message { .. } => messages += 1,
            DriverEvent::CardPublished { .. } => *card_done = true,
            DriverEvent::CardPublishFailed { reason } => {
                *card_done = true;
                println!(
                    "your contact card was not published ({reason}); others can add you \
                     after a later run publishes it"
                );
            }
            _ => {}
        }
        if let Some(line) = describe(e) {
            println!("{line}");
        }
    };
    loop {
        match events.try_recv() {
            Ok(e) => show(&e, &mut card_done),
            Err(TryRecvError::Lagged(n)) => {
                println!("({n} events not shown; `zentalk serve` keeps the full history)");
            }
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    let _ = tokio::time::timeout(CARD_WAIT, async {
        while !card_done {
            match events.recv().await {
                Ok(e) => show(&e, &mut card_done),
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    })
    .await;
    if messages == 0 {
        println!("no new messages");
    }
    let pending = handle.pending().await?;
    if pending > 0 {
        println!(
            "{pending} sent message(s) not yet delivered; retried on every run until they are"
        );
    }
    if report.mailboxes_unreachable > 0 {
        println!(
            "{} of your mailbox relays could not be reached; what waits there comes on a later run",
            report.mailboxes_unreachable
        );
    }
    if report.send_failures > 0 {
        println!(
            "{} packet(s) could not be handed to a relay this time; they will be retried",
            report.send_failures
        );
    }
    Ok(())
}

/// `zentalk chat PEER`: stdin lines are sent; what arrives is printed as it comes.
pub(crate) async fn chat(dir: &Path, peer: PeerArg, fast_timers: bool) -> CliResult<()> {
    let mut s = session::start(dir, true, fast_timers).await?;
    let result = chat_inner(&s.handle, &mut s.events, peer).await;
    let shutdown = s.handle.shutdown().await;
    result?;
    shutdown.map_err(|e| format!("could not save the client state: {e}"))?;
    println!("saved; bye");
    Ok(())
}

/// Lines of history shown when a chat opens.
const CHAT_HISTORY: u32 = 10;

/// Most stdin lines waiting to be sent.
const STDIN_QUEUE: usize = 64;

async fn chat_inner(
    handle: &DriverHandle,
    events: &mut tokio::sync::broadcast::Receiver<DriverEvent>,
    peer: PeerArg,
) -> CliResult<()> {
    let to = session::resolve_peer(handle, peer).await?;
    println!("chat with {to}");
    println!("type a line and press Enter to send; /quit or Ctrl-D leaves");
    let mut history = handle.messages(to, None, CHAT_HISTORY).await?;
    history.reverse();
    // Events since start may repeat what the history already shows (a pushed first page).
    let shown: std::collections::HashSet<zentalk_client::MessageId> =
        history.iter().map(|m| m.id).collect();
    for m in &history {
        let who = if m.outgoing { "you" } else { "them" };
        println!("[{}] {who}: {}", session::format_time(m.sent_ms), m.text);
    }
    handle.mark_read(to).await?;

    // Stdin is read on its own thread (blocking reads), lines cross a bounded channel.
    let (tx, mut lines) = tokio::sync::mpsc::channel::<String>(STDIN_QUEUE);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        loop {
            line.clear();
            match stdin.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx
                        .blocking_send(line.trim_end_matches(['\r', '\n']).to_owned())
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    let stop = shutdown_signal()?;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            line = lines.recv() => match line {
                None => break,
                Some(l) if l.trim() == "/quit" => break,
                Some(l) if l.trim().is_empty() => {}
                Some(l) => {
                    let id = handle.send_text(to, l).await?;
                    println!("  (sent {})", short_id(&id));
                }
            },
            event = events.recv() => match event {
                Ok(DriverEvent::Message { from, id, .. }) if from == to && shown.contains(&id) => {}
                Ok(DriverEvent::Message { from, text, .. }) if from == to => {
                    println!("them: {text}");
                    handle.mark_read(to).await?;
                }
                Ok(DriverEvent::Delivered { to: t, id }) if t == to => {
                    println!("  (delivered {})", short_id(&id));
                }
                Ok(DriverEvent::Read { by, .. }) if by == to => println!("  (read)"),
                Ok(DriverEvent::Typing { from, typing: true }) if from == to => {
                    println!("  (typing)");
                }
                Ok(DriverEvent::LinkDown { .. }) => {
                    println!("  (lost a relay connection; reconnecting)");
                }
                Ok(other) => {
                    if let Some(line) = describe(&other) {
                        println!("  ({line})");
                    }
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return Err("the client stopped".into()),
            },
        }
    }
    Ok(())
}

/// `zentalk serve`: the driver (links held, pushes) and the local HTTP API, until SIGTERM or
/// SIGINT.
pub(crate) async fn serve(
    dir: &Path,
    listen: std::net::SocketAddr,
    fast_timers: bool,
) -> CliResult<()> {
    use zentalk_client::api::{self, ApiConfig, Token};
    // Signal handlers first, so a signal sent as soon as the address is printed is not lost.
    let stop = shutdown_signal()?;
    let s = session::start(dir, true, fast_timers).await?;
    let token_path = dir.join(api::TOKEN_FILE_NAME);
    let started = async {
        let token = Token::load_or_create(&token_path)?;
        api::serve(s.handle.clone(), ApiConfig::new(token).with_bind(listen)).await
    }
    .await;
    let server = match started {
        Ok(server) => server,
        Err(e) => {
            let _ = s.handle.shutdown().await;
            return Err(format!("cannot start the local API: {e}").into());
        }
    };
    println!("address    {}", s.handle.address());
    println!("local API  http://{}", server.local_addr());
    println!("token file {}", token_path.display());
    {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    }
    stop.await;
    println!("shutting down");
    let api_result = server.shutdown().await;
    let driver_result = s.handle.shutdown().await;
    api_result.map_err(|e| format!("local API: {e}"))?;
    driver_result.map_err(|e| format!("could not save the client state: {e}"))?;
    println!("saved; bye");
    Ok(())
}

/// A future that completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> CliResult<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

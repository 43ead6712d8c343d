//! The driver's I/O tasks: one per held mailbox link, one per busy first hop. They do only
//! network I/O and report to the driver task, which owns every decision (what to feed, when
//! to acknowledge, where to route).

use std::sync::Arc;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use tokio::sync::{mpsc, watch};
use zentalk_crypto::NodeId;
use zentalk_onion::{MailboxId, OutgoingPacket};
use zentalk_relay::Limits;
use zentalk_wire::proto::MailboxItem;

use crate::Directory;
use crate::mailbox::MailboxKey;
use crate::net::{Incoming, MailboxLink, NetError, PacketLink};

/// Capacity of a mailbox link's command channel (the driver keeps at most one fetch and one
/// ack outstanding per link, so this is never reached in practice; when it is, the command
/// is dropped and the link's next reconnection starts over).
pub(crate) const LINK_COMMAND_CAPACITY: usize = 16;
/// Capacity of a first-hop sender's packet queue.
pub(crate) const SENDER_QUEUE_CAPACITY: usize = 256;

/// What an I/O task reports to the driver task.
#[derive(Debug)]
pub(crate) enum Report {
    /// A mailbox link authenticated (generation `generation`).
    LinkUp { mailbox: MailboxId, generation: u64 },
    /// A page of stored items (the first after authentication, or the answer to a fetch).
    Batch {
        mailbox: MailboxId,
        generation: u64,
        items: Vec<MailboxItem>,
        more: bool,
    },
    /// A pushed item.
    Push {
        mailbox: MailboxId,
        generation: u64,
        item: MailboxItem,
    },
    /// The link was lost (it is reopened after a pause).
    LinkDown {
        mailbox: MailboxId,
        generation: u64,
        reason: String,
    },
    /// A packet was written to its first hop.
    Sent { job: u64 },
    /// A packet could not be written; `relay_failed` says whether the relay is to blame
    /// (connect, handshake or write failed) rather than a link closed for being idle.
    NotSent {
        job: u64,
        relay: NodeId,
        relay_failed: bool,
        reason: String,
    },
}

/// A command to a mailbox link task, for one generation of its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkCommand {
    Fetch { generation: u64, after: u64 },
    Ack { generation: u64, up_to: u64 },
}

/// Settings of a mailbox link task.
pub(crate) struct LinkSettings {
    pub(crate) limits: Limits,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect_initial: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) keepalive: Duration,
}

/// Holds the link to one owned mailbox: opens and authenticates it, forwards what arrives,
/// carries out fetches and acks, pings, and reopens it with exponential back-off when lost.
/// Ends when the driver drops the command sender.
pub(crate) async fn mailbox_link_task(
    key: MailboxKey,
    directory: watch::Receiver<Arc<Directory>>,
    settings: Arc<LinkSettings>,
    mut rng: ChaCha20Rng,
    reports: mpsc::Sender<Report>,
    mut commands: mpsc::Receiver<LinkCommand>,
) {
    let mailbox = key.id();
    let relay = key.addr().relay;
    let mut generation = 0u64;
    let mut backoff = settings.reconnect_initial;
    loop {
        generation += 1;
        let entry = directory.borrow().get(&relay).cloned();
        let opened = match entry {
            None => Err("mailbox relay not in the directory".to_owned()),
            Some(entry) => match tokio::time::timeout(
                settings.connect_timeout,
                MailboxLink::open(&entry, &key, &settings.limits, &mut rng),
            )
            .await
            {
                Ok(Ok(ok)) => Ok(ok),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("connect timed out".to_owned()),
            },
        };
        let reason = match opened {
            Ok((link, first)) => {
                backoff = settings.reconnect_initial;
                if reports
                    .send(Report::LinkUp {
                        mailbox,
                        generation,
                    })
                    .await
                    .is_err()
                {
                    link.close().await;
                    return;
                }
                match serve_link(
                    link,
                    first,
                    mailbox,
                    generation,
                    &settings,
                    &mut rng,
                    &reports,
                    &mut commands,
                )
                .await
                {
                    Some(reason) => reason,
                    None => return,
                }
            }
            Err(reason) => reason,
        };
        if reports
            .send(Report::LinkDown {
                mailbox,
                generation,
                reason,
            })
            .await
            .is_err()
        {
            return;
        }
        // Back off; commands for the lost link are dropped meanwhile.
        let pause = tokio::time::sleep(backoff);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                () = &mut pause => break,
                cmd = commands.recv() => if cmd.is_none() { return },
            }
        }
        backoff = backoff.saturating_mul(2).min(settings.reconnect_max);
    }
}

/// Serves one authenticated link until it fails (`Some(reason)`) or the driver lets go of
/// the task (`None`).
#[allow(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
async fn serve_link(
    mut link: MailboxLink,
    first: Incoming,
    mailbox: MailboxId,
    generation: u64,
    settings: &LinkSettings,
    rng: &mut ChaCha20Rng,
    reports: &mpsc::Sender<Report>,
    commands: &mut mpsc::Receiver<LinkCommand>,
) -> Option<String> {
    let mut incoming = Some(first);
    let mut keepalive = tokio::time::interval(settings.keepalive);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    keepalive.tick().await;
    loop {
        if let Some(inc) = incoming.take() {
            let report = match inc {
                Incoming::Batch { items, more } => Report::Batch {
                    mailbox,
                    generation,
                    items,
                    more,
                },
                Incoming::Push(item) => Report::Push {
                    mailbox,
                    generation,
                    item,
                },
            };
            if reports.send(report).await.is_err() {
                link.close().await;
                return None;
            }
        }
        tokio::select! {
            r = link.next() => match r {
                Ok(inc) => incoming = Some(inc),
                Err(e) => return Some(e.to_string()),
            },
            cmd = commands.recv() => {
                let result = match cmd {
                    None => {
                        link.close().await;
                        return None;
                    }
                    Some(LinkCommand::Fetch { generation: g, after }) if g == generation => {
                        link.fetch(after, rng).await
                    }
                    Some(LinkCommand::Ack { generation: g, up_to }) if g == generation => {
                        link.ack(up_to, rng).await
                    }
                    Some(_) => Ok(()),
                };
                if let Err(e) = result {
                    return Some(e.to_string());
                }
            }
            _ = keepalive.tick() => {
                if let Err(e) = link.ping(rng).await {
                    return Some(e.to_string());
                }
            }
        }
    }
}

/// One packet for a first-hop sender.
#[derive(Debug)]
pub(crate) struct SendJob {
    pub(crate) job: u64,
    pub(crate) packet: OutgoingPacket,
}

/// Settings of a first-hop sender.
pub(crate) struct SenderSettings {
    pub(crate) limits: Limits,
    pub(crate) connect_timeout: Duration,
    pub(crate) idle: Duration,
}

/// Reports `job` not sent because `relay` failed, and returns the sender's end reason.
async fn relay_failed(
    reports: &mpsc::Sender<Report>,
    job: u64,
    relay: NodeId,
    reason: String,
) -> (bool, String) {
    let _ = reports
        .send(Report::NotSent {
            job,
            relay,
            relay_failed: true,
            reason: reason.clone(),
        })
        .await;
    (true, reason)
}

/// Sends packets to one first hop over one link (opened on the first packet, with a fresh
/// Noise key), reporting each; ends after `idle` without packets, when the relay closes the
/// link, or at the first failure (every packet still queued is then reported not sent).
pub(crate) async fn sender_task(
    relay: NodeId,
    entry: crate::RelayEntry,
    settings: Arc<SenderSettings>,
    mut rng: ChaCha20Rng,
    reports: mpsc::Sender<Report>,
    mut jobs: mpsc::Receiver<SendJob>,
) {
    let mut link: Option<PacketLink> = None;
    let failure: (bool, String) = loop {
        let job = tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => job,
                None => break (false, "sender closed".to_owned()),
            },
            () = tokio::time::sleep(settings.idle) => break (false, "idle".to_owned()),
            r = watch_link(&mut link) => {
                // The relay closed the link (idle timeout, shutdown): not a failure of the
                // relay; the next packet opens a fresh link.
                let _ = r;
                link = None;
                continue;
            }
        };
        let mut l = match link.take() {
            Some(l) => l,
            None => {
                let opened = tokio::time::timeout(
                    settings.connect_timeout,
                    PacketLink::open(&entry, &settings.limits, &mut rng),
                )
                .await;
                match opened {
                    Ok(Ok(l)) => l,
                    Ok(Err(e)) => {
                        break relay_failed(&reports, job.job, relay, e.to_string()).await;
                    }
                    Err(_) => {
                        break relay_failed(
                            &reports,
                            job.job,
                            relay,
                            "connect timed out".to_owned(),
                        )
                        .await;
                    }
                }
            }
        };
        let sent =
            tokio::time::timeout(settings.limits.send_timeout, l.send(job.packet, &mut rng)).await;
        match sent {
            Ok(Ok(())) => {
                link = Some(l);
                if reports.send(Report::Sent { job: job.job }).await.is_err() {
                    break (false, "driver gone".to_owned());
                }
            }
            Ok(Err(e)) => break relay_failed(&reports, job.job, relay, e.to_string()).await,
            Err(_) => {
                break relay_failed(&reports, job.job, relay, "send timed out".to_owned()).await;
            }
        }
    };
    // Refuse new packets, then hand back what is still queued.
    jobs.close();
    if let Some(l) = link {
        l.close().await;
    }
    let (relay_failed, reason) = failure;
    while let Some(job) = jobs.recv().await {
        let _ = reports
            .send(Report::NotSent {
                job: job.job,
                relay,
                relay_failed,
                reason: reason.clone(),
            })
            .await;
    }
}

/// Waits until the pooled link (if any) ends; pending forever without a link.
async fn watch_link(link: &mut Option<PacketLink>) -> NetError {
    match link {
        Some(l) => loop {
            if let Err(e) = l.watch().await {
                return e;
            }
        },
        None => std::future::pending().await,
    }
}

//! The network side: Noise links to relays (zentalk-relay's XK initiator), sending onion
//! packets to a first hop, and opening an owned mailbox (challenge, auth, batch, push, fetch,
//! ack) as docs/protocol/zentalk-relay.md (section 6) describes.
//!
//! Every link uses a fresh Noise static key, so a relay cannot tell that two links (for
//! example to two mailboxes of the same user) come from the same client.

use bytes::Bytes;
use tokio::net::TcpStream;
use zentalk_crypto::{CryptoRngCore, X25519PublicKey, X25519Secret};
use zentalk_onion::OutgoingPacket;
use zentalk_relay::Limits;
use zentalk_relay::link::{self, Link, LinkError};
use zentalk_wire::proto::{
    Error as WireErrorBody, MailboxAck, MailboxAuth, MailboxBatch, MailboxChallenge, MailboxFetch,
    MailboxItem, MailboxPush, Ping,
};
use zentalk_wire::{Flags, Frame, MessageId, MessageType, WireError};

use crate::directory::RelayEntry;
use crate::mailbox::MailboxKey;

/// Errors of the network side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// TCP failed.
    #[error("tcp: {0}")]
    Io(#[from] std::io::Error),
    /// The Noise link failed.
    #[error("link: {0}")]
    Link(#[from] LinkError),
    /// A frame did not encode or decode.
    #[error("wire: {0}")]
    Wire(#[from] WireError),
    /// The relay answered with an Error frame.
    #[error("relay refused: code {code}, {detail}")]
    Refused {
        /// The wire error code.
        code: i32,
        /// The relay's detail text.
        detail: String,
    },
    /// The relay sent a frame that is not legal at this point.
    #[error("unexpected frame: expected {expected}, found {found:?}")]
    Unexpected {
        /// What the protocol expects here.
        expected: &'static str,
        /// What arrived.
        found: MessageType,
    },
    /// A challenge field had the wrong length.
    #[error("malformed challenge")]
    BadChallenge,
}

async fn open_link(
    entry: &RelayEntry,
    limits: &Limits,
    rng: &mut impl CryptoRngCore,
) -> Result<Link<TcpStream>, NetError> {
    let stream = TcpStream::connect(entry.addr).await?;
    stream.set_nodelay(true)?;
    let local = X25519Secret::generate(rng);
    let remote = X25519PublicKey::from_bytes(entry.noise_key);
    Ok(link::connect(stream, &local, &remote, limits, rng).await?)
}

/// A Noise link to a first hop that several onion packets are sent over (the driver keeps one
/// per first hop while it is busy, see `docs/protocol/zentalk-client.md`). Each link still
/// uses a fresh Noise static key.
#[derive(Debug)]
pub struct PacketLink {
    link: Link<TcpStream>,
}

impl PacketLink {
    /// Opens a link to `first` (TCP, then the Noise XK handshake with a fresh static key).
    pub async fn open(
        first: &RelayEntry,
        limits: &Limits,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, NetError> {
        Ok(Self {
            link: open_link(first, limits, rng).await?,
        })
    }

    /// Sends one onion packet. Not cancel-safe (a cancelled send leaves the link unusable).
    pub async fn send(
        &mut self,
        packet: OutgoingPacket,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(), NetError> {
        let frame = Frame::onion_packet(
            MessageId::random(rng),
            Flags::EMPTY,
            Bytes::from(packet.packet.into_bytes()),
        )?;
        self.link.send(&frame).await?;
        Ok(())
    }

    /// Waits for what the relay sends on this link (a relay says nothing on a packet link
    /// unless it closes it or refuses a frame): `Ok(())` for a harmless frame (Pong), an error
    /// when the link ended (Close, Error frame, end of stream). Cancel-safe.
    pub async fn watch(&mut self) -> Result<(), NetError> {
        let frame = self.link.recv().await?;
        match frame.message_type() {
            MessageType::Pong => Ok(()),
            MessageType::Error => Err(refused(&frame)),
            found => Err(NetError::Unexpected {
                expected: "nothing (or Pong) on a packet link",
                found,
            }),
        }
    }

    /// Closes the link (Noise and TCP shutdown).
    pub async fn close(mut self) {
        let _ = self.link.shutdown().await;
    }
}

/// Sends `packet` to its first hop `first` over a fresh Noise link, then closes the link.
pub async fn send_packet(
    first: &RelayEntry,
    packet: OutgoingPacket,
    limits: &Limits,
    rng: &mut impl CryptoRngCore,
) -> Result<(), NetError> {
    let mut link = open_link(first, limits, rng).await?;
    let frame = Frame::onion_packet(
        MessageId::random(rng),
        Flags::EMPTY,
        Bytes::from(packet.packet.into_bytes()),
    )?;
    link.send(&frame).await?;
    link.shutdown().await?;
    Ok(())
}

fn refused(frame: &Frame) -> NetError {
    match frame.decode_body::<WireErrorBody>() {
        Ok(e) => NetError::Refused {
            code: e.code,
            detail: e.detail,
        },
        Err(e) => NetError::Wire(e),
    }
}

/// An authenticated link to one owned mailbox.
#[derive(Debug)]
pub struct MailboxLink {
    link: Link<TcpStream>,
    mailbox: [u8; 32],
}

/// What a mailbox link brings.
#[derive(Debug)]
pub enum Incoming {
    /// Items answering a fetch (or the first page after authentication).
    Batch {
        /// The items, in increasing seq order.
        items: Vec<MailboxItem>,
        /// More items remain.
        more: bool,
    },
    /// One newly arrived item.
    Push(MailboxItem),
}

impl MailboxLink {
    /// Opens a link to the relay keeping `key`'s mailbox and authenticates: answers the
    /// relay's challenge with a signature by the mailbox key. Returns the link and the first
    /// page of stored items.
    pub async fn open(
        relay: &RelayEntry,
        key: &MailboxKey,
        limits: &Limits,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Self, Incoming), NetError> {
        let mut link = open_link(relay, limits, rng).await?;
        let frame = link.recv().await?;
        if frame.message_type() != MessageType::MailboxChallenge {
            return Err(NetError::Unexpected {
                expected: "MailboxChallenge",
                found: frame.message_type(),
            });
        }
        let ch: MailboxChallenge = frame.decode_body()?;
        let nonce: [u8; 32] = ch
            .nonce
            .as_ref()
            .try_into()
            .map_err(|_| NetError::BadChallenge)?;
        let relay_id: [u8; 32] = ch
            .relay_id
            .as_ref()
            .try_into()
            .map_err(|_| NetError::BadChallenge)?;
        let sig = key.sign_challenge(&relay_id, &nonce);
        let mailbox = key.id().to_bytes();
        let auth = MailboxAuth {
            mailbox_id: Bytes::copy_from_slice(&mailbox),
            mailbox_key: Bytes::copy_from_slice(key.public_key().as_bytes()),
            nonce: Bytes::copy_from_slice(&nonce),
            signature: Bytes::copy_from_slice(&sig.to_bytes()),
        };
        link.send(&Frame::new(MessageId::random(rng), &auth)?)
            .await?;
        let mut this = Self { link, mailbox };
        let first = this.next().await?;
        Ok((this, first))
    }

    /// Waits for the next batch or push (a Pong answering [`MailboxLink::ping`] is skipped).
    /// Cancel-safe.
    pub async fn next(&mut self) -> Result<Incoming, NetError> {
        let mut frame = self.link.recv().await?;
        while frame.message_type() == MessageType::Pong {
            frame = self.link.recv().await?;
        }
        match frame.message_type() {
            MessageType::MailboxBatch => {
                let b: MailboxBatch = frame.decode_body()?;
                Ok(Incoming::Batch {
                    items: b.items,
                    more: b.more,
                })
            }
            MessageType::MailboxPush => {
                let p: MailboxPush = frame.decode_body()?;
                p.item.map(Incoming::Push).ok_or(NetError::Unexpected {
                    expected: "MailboxPush with an item",
                    found: MessageType::MailboxPush,
                })
            }
            MessageType::Error => Err(refused(&frame)),
            found => Err(NetError::Unexpected {
                expected: "MailboxBatch or MailboxPush",
                found,
            }),
        }
    }

    /// Asks for items after `after_seq`.
    pub async fn fetch(
        &mut self,
        after_seq: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(), NetError> {
        let f = MailboxFetch {
            mailbox_id: Bytes::copy_from_slice(&self.mailbox),
            after_seq,
            max_items: 0,
        };
        self.link
            .send(&Frame::new(MessageId::random(rng), &f)?)
            .await?;
        Ok(())
    }

    /// Sends a Ping (a relay closes a link that stays silent for its idle timeout).
    pub async fn ping(&mut self, rng: &mut impl CryptoRngCore) -> Result<(), NetError> {
        let p = Ping {
            nonce: rng.next_u64(),
        };
        self.link
            .send(&Frame::new(MessageId::random(rng), &p)?)
            .await?;
        Ok(())
    }

    /// Closes the link (Noise and TCP shutdown).
    pub async fn close(mut self) {
        let _ = self.link.shutdown().await;
    }

    /// Lets the relay delete every item up to `up_to_seq` (call after the items are saved).
    pub async fn ack(
        &mut self,
        up_to_seq: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(), NetError> {
        let a = MailboxAck {
            mailbox_id: Bytes::copy_from_slice(&self.mailbox),
            up_to_seq,
        };
        self.link
            .send(&Frame::new(MessageId::random(rng), &a)?)
            .await?;
        Ok(())
    }
}

/// What one [`sync_once`] round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Mailbox items fetched (and acknowledged to the relay).
    pub fetched: usize,
    /// Items the engine refused (undecryptable or malformed; counted for session repair).
    pub refused: usize,
    /// Onion packets handed to a first hop.
    pub sent: usize,
    /// Packets that could not be handed over (the engine retries sequenced ones).
    pub send_failures: usize,
    /// Owned mailboxes whose relay could not be reached or failed mid-way (the driver's
    /// `sync_now` goes on with the others; `sync_once` stops at the first).
    pub mailboxes_unreachable: usize,
}

/// One round of the simplest driver (fetch mode, no pushes): for every owned mailbox open
/// an authenticated link, hand every stored item to the engine, acknowledge them; run the
/// engine's timers; then wrap everything it queued into onion packets through three relays
/// and hand each to its first hop over a fresh Noise link.
pub async fn sync_once<R: CryptoRngCore + Send>(
    client: &mut crate::Client,
    directory: &crate::Directory,
    epoch: u32,
    limits: &Limits,
    rng: &mut R,
    now_ms: u64,
) -> Result<SyncReport, NetError> {
    let mut report = SyncReport::default();
    let owned: Vec<(RelayEntry, MailboxKey)> = client
        .mailboxes()
        .iter()
        .filter_map(|m| {
            let relay = directory.get(&m.addr().relay)?.clone();
            Some((relay, MailboxKey::from_seed(&m.seed(), m.addr().relay)))
        })
        .collect();
    for (relay, key) in owned {
        let id = key.id();
        let (mut link, mut incoming) = MailboxLink::open(&relay, &key, limits, rng).await?;
        let mut last = 0u64;
        loop {
            let Incoming::Batch { items, more } = incoming else {
                // A push before the first page is answered: take it like a batch item.
                if let Incoming::Push(item) = incoming {
                    last = last.max(item.seq);
                    report.fetched += 1;
                    if client
                        .handle_delivery(rng, &id, &item.payload, now_ms)
                        .is_err()
                    {
                        report.refused += 1;
                    }
                }
                incoming = link.next().await?;
                continue;
            };
            for item in items {
                last = last.max(item.seq);
                report.fetched += 1;
                if client
                    .handle_delivery(rng, &id, &item.payload, now_ms)
                    .is_err()
                {
                    report.refused += 1;
                }
            }
            if !more {
                break;
            }
            link.fetch(last, rng).await?;
            incoming = link.next().await?;
        }
        if last > 0 {
            link.ack(last, rng).await?;
        }
        let _ = link.link.shutdown().await;
    }
    if client.handle_timeout(rng, now_ms).is_err() {
        report.send_failures += 1;
    }
    while let Some(out) = client.poll_outgoing() {
        let sent = match directory.wrap(rng, &out.dest, epoch, &out.payload) {
            Ok((packet, _route)) => match directory.get(&packet.first_hop).cloned() {
                Some(first) => send_packet(&first, packet, limits, rng).await.is_ok(),
                None => false,
            },
            Err(_) => false,
        };
        if sent {
            report.sent += 1;
        } else {
            report.send_failures += 1;
        }
    }
    Ok(report)
}

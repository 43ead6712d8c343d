//! Saving the engine's state in the encrypted client store (zentalk-storage).
//!
//! The whole engine state is one versioned snapshot (postcard): the ratchet account and
//! sessions as ratchet pickles (AES-256-GCM under a random 32-byte pickle key), mailbox seeds,
//! per-conversation counters, buffered and unacknowledged messages, and the duplicate filter.
//! Both the pickle key and the snapshot are stored as account keys of a
//! [`zentalk_storage::ClientStore`], whose columns are sealed under a key derived with
//! Argon2id from the user's password: nothing in the file is readable without it.

use serde::{Deserialize, Serialize};
use zentalk_crypto::{Address, CryptoRngCore, IdentityPublicKey, NodeId};
use zentalk_ratchet::{Account, PrekeyBundle, Session};
use zentalk_storage::client::ClientStore;

use crate::ClientError;
use crate::client::{Client, Contact, Pending};
use crate::mailbox::{MailboxAddr, MailboxKey};
use crate::payload::Inner;

/// Version of the snapshot format.
pub const SNAPSHOT_VERSION: u8 = 2;

/// Per contact, in the order of `Snap::contacts`: the sequence ranges reported lost. Version 2
/// appends this list after the version-1 layout; a version-1 snapshot has none.
type LostSnap = Vec<Vec<(u64, u64)>>;
/// Account-key name of the pickle key in the store.
pub const PICKLE_KEY_NAME: &str = "client/pickle-key";
/// Account-key name of the snapshot in the store.
pub const SNAPSHOT_NAME: &str = "client/state";

/// A remembered payload hash and, for sequenced messages, (sender address, message id).
type SeenSnap = ([u8; 32], Option<([u8; 32], [u8; 16])>);
/// An unacknowledged message.
#[derive(Serialize, Deserialize)]
struct PendingSnap {
    seq: u64,
    id: [u8; 16],
    payload: Vec<u8>,
    next_retry_ms: u64,
    interval_ms: u64,
    sent: bool,
    inner: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Snap {
    version: u8,
    account: Vec<u8>,
    contact_mailbox: ([u8; 32], [u8; 32]),
    mailbox_relays: Vec<[u8; 32]>,
    contacts: Vec<ContactSnap>,
    seen: Vec<SeenSnap>,
}

#[derive(Serialize, Deserialize)]
struct ContactSnap {
    identity: [u8; 32],
    bundle: Option<Vec<u8>>,
    session: Option<Vec<u8>>,
    send_to: Option<Vec<u8>>,
    my_mailbox: Option<([u8; 32], [u8; 32])>,
    next_send_seq: u64,
    next_recv_seq: u64,
    reorder: Vec<Vec<u8>>,
    gap_since_ms: Option<u64>,
    unacked: Vec<PendingSnap>,
    pending_controls: Vec<Vec<u8>>,
    decrypt_failures: u32,
    repair_sent: bool,
    reencrypt: bool,
}

fn mb_snap(m: &MailboxKey) -> ([u8; 32], [u8; 32]) {
    (*m.seed(), m.addr().relay.to_bytes())
}

fn mb_from((seed, relay): &([u8; 32], [u8; 32])) -> MailboxKey {
    MailboxKey::from_seed(seed, NodeId::from_bytes(*relay))
}

const BAD: ClientError = ClientError::Snapshot("field out of range");

impl Client {
    /// The engine state as bytes, with ratchet state encrypted under `pickle_key`. The result
    /// still holds mailbox seeds in clear: store it only in the encrypted store.
    pub fn snapshot(
        &self,
        rng: &mut impl CryptoRngCore,
        pickle_key: &[u8; 32],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, ClientError> {
        let p = self.parts();
        let snap = Snap {
            version: SNAPSHOT_VERSION,
            account: p.account.pickle(rng, pickle_key),
            contact_mailbox: mb_snap(p.contact_mailbox),
            mailbox_relays: p.mailbox_relays.iter().map(|n| n.to_bytes()).collect(),
            contacts: p
                .contacts
                .values()
                .map(|c| ContactSnap {
                    identity: c.identity.to_bytes(),
                    bundle: c.bundle.as_ref().map(PrekeyBundle::to_bytes),
                    session: c.session.as_ref().map(|s| s.pickle(rng, pickle_key)),
                    send_to: c.send_to.map(|m| m.to_bytes().to_vec()),
                    my_mailbox: c.my_mailbox.as_ref().map(mb_snap),
                    next_send_seq: c.next_send_seq,
                    next_recv_seq: c.next_recv_seq,
                    reorder: c.reorder.values().map(Inner::to_bytes).collect(),
                    gap_since_ms: c.gap_since_ms,
                    unacked: c
                        .unacked
                        .iter()
                        .map(|(s, p)| PendingSnap {
                            seq: *s,
                            id: p.id,
                            payload: p.payload.clone(),
                            next_retry_ms: p.next_retry_ms,
                            interval_ms: p.interval_ms,
                            sent: p.sent,
                            inner: p.inner.clone(),
                        })
                        .collect(),
                    decrypt_failures: c.decrypt_failures,
                    repair_sent: c.repair_sent,
                    reencrypt: c.reencrypt,
                    pending_controls: c.pending_controls.iter().cloned().collect(),
                })
                .collect(),
            seen: p
                .seen_order
                .iter()
                .map(|h| {
                    let v = p.seen.get(h).copied().flatten();
                    (*h, v.map(|(a, id)| (a.to_bytes(), id)))
                })
                .collect(),
        };
        let lost: LostSnap = p
            .contacts
            .values()
            .map(|c| c.lost.iter().map(|(f, l)| (*f, *l)).collect())
            .collect();
        let mut out = zeroize::Zeroizing::new(
            postcard::to_allocvec(&snap).map_err(|_| ClientError::Snapshot("encoding failed"))?,
        );
        let tail =
            postcard::to_allocvec(&lost).map_err(|_| ClientError::Snapshot("encoding failed"))?;
        out.extend_from_slice(&tail);
        Ok(out)
    }

    /// Rebuilds an engine from [`Client::snapshot`] output.
    pub fn restore(bytes: &[u8], pickle_key: &[u8; 32]) -> Result<Self, ClientError> {
        let (snap, rest): (Snap, &[u8]) = postcard::take_from_bytes(bytes)
            .map_err(|_| ClientError::Snapshot("not a snapshot"))?;
        let mut lost: LostSnap = match snap.version {
            1 if rest.is_empty() => Vec::new(),
            1 => return Err(ClientError::Snapshot("not a snapshot")),
            SNAPSHOT_VERSION => {
                postcard::from_bytes(rest).map_err(|_| ClientError::Snapshot("not a snapshot"))?
            }
            _ => return Err(ClientError::Snapshot("unknown snapshot version")),
        };
        if lost.len() > snap.contacts.len()
            || lost
                .iter()
                .any(|r| r.len() > crate::client::MAX_LOST_RANGES || r.iter().any(|(f, l)| f > l))
        {
            return Err(BAD);
        }
        lost.resize(snap.contacts.len(), Vec::new());
        let account = Account::from_pickle(&snap.account, pickle_key)?;
        let mut client = Client::from_parts(
            account,
            mb_from(&snap.contact_mailbox),
            snap.mailbox_relays
                .iter()
                .map(|b| NodeId::from_bytes(*b))
                .collect(),
        );
        for (cs, lost) in snap.contacts.into_iter().zip(lost) {
            let identity = IdentityPublicKey::from_bytes(&cs.identity)?;
            let mut c = Contact::new(identity);
            c.lost = lost.into_iter().collect();
            c.bundle = cs
                .bundle
                .map(|b| PrekeyBundle::from_bytes(&b))
                .transpose()?;
            c.session = cs
                .session
                .map(|s| Session::from_pickle(&s, pickle_key))
                .transpose()?;
            c.send_to = cs
                .send_to
                .map(|v| {
                    <[u8; MailboxAddr::LEN]>::try_from(v.as_slice())
                        .map(|a| MailboxAddr::from_bytes(&a))
                        .map_err(|_| BAD)
                })
                .transpose()?;
            c.my_mailbox = cs.my_mailbox.as_ref().map(mb_from);
            c.next_send_seq = cs.next_send_seq;
            c.next_recv_seq = cs.next_recv_seq;
            for r in cs.reorder {
                let inner = Inner::from_bytes(&r)?;
                c.reorder.insert(inner.seq, inner);
            }
            c.gap_since_ms = cs.gap_since_ms;
            for p in cs.unacked {
                c.unacked.insert(
                    p.seq,
                    Pending {
                        id: p.id,
                        payload: p.payload,
                        next_retry_ms: p.next_retry_ms,
                        interval_ms: p.interval_ms,
                        sent: p.sent,
                        inner: p.inner,
                    },
                );
            }
            c.decrypt_failures = cs.decrypt_failures;
            c.repair_sent = cs.repair_sent;
            c.reencrypt = cs.reencrypt;
            c.pending_controls = cs.pending_controls.into();
            client.insert_contact(identity.address(), c);
        }
        for (h, v) in snap.seen {
            client.remember_seen(h, v.map(|(a, id)| (Address::from_bytes(a), id)));
        }
        Ok(client)
    }

    /// Saves the state into `store` (creating the pickle key on first use).
    pub async fn save(
        &self,
        store: &ClientStore,
        rng: &mut (impl CryptoRngCore + Send),
        now_ms: i64,
    ) -> Result<(), ClientError> {
        let key = match store.account_key(PICKLE_KEY_NAME).await? {
            Some(k) => <[u8; 32]>::try_from(k.as_slice()).map_err(|_| BAD)?,
            None => {
                let mut k = [0u8; 32];
                rng.fill_bytes(&mut k);
                store.put_account_key(PICKLE_KEY_NAME, &k, now_ms).await?;
                k
            }
        };
        let snap = self.snapshot(rng, &key)?;
        store.put_account_key(SNAPSHOT_NAME, &snap, now_ms).await?;
        Ok(())
    }

    /// Loads the state saved by [`Client::save`]; `None` if the store holds none.
    pub async fn load(store: &ClientStore) -> Result<Option<Self>, ClientError> {
        let Some(key) = store.account_key(PICKLE_KEY_NAME).await? else {
            return Ok(None);
        };
        let key = <[u8; 32]>::try_from(key.as_slice()).map_err(|_| BAD)?;
        let Some(snap) = store.account_key(SNAPSHOT_NAME).await? else {
            return Ok(None);
        };
        Self::restore(&snap, &key).map(Some)
    }
}

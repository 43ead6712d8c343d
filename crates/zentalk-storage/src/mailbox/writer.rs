//! The group-commit writer shared by both backends.
//!
//! One task owns the write connection. Requests arrive on a bounded channel; the task takes
//! one, drains whatever else is already waiting (up to [`MAX_BATCH`]), applies all of them in
//! one transaction, commits, then answers each request. Quota accounting lives here: the
//! writer is the only mutator, so an in-memory usage cache (checked against the database on
//! first touch of a mailbox) stays exact.

use std::collections::HashMap;
use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use super::{
    Cursor, Expired, Limits, MAX_ACK, MAX_BATCH, MAX_PAYLOAD_LEN, MailboxId, MessageId, PutOutcome,
    TransitOutcome, USAGE_CACHE_MAX,
};
use crate::{MailboxError, QuotaKind, QuotaScope};

/// One mutation.
#[derive(Debug)]
pub(crate) enum Op {
    Put {
        mailbox: MailboxId,
        id: MessageId,
        payload: Vec<u8>,
        now_ms: u64,
    },
    Ack {
        mailbox: MailboxId,
        ids: Vec<MessageId>,
    },
    AckUpTo {
        mailbox: MailboxId,
        up_to: i64,
    },
    Expire {
        now_ms: u64,
    },
    Transit {
        hash: [u8; 32],
        now_ms: u64,
    },
}

/// Its result.
#[derive(Debug)]
pub(crate) enum OpResult {
    Put(PutOutcome),
    Acked(u64),
    Expired(Expired),
    Transit(TransitOutcome),
}

/// A row to insert.
pub(crate) struct NewRow<'a> {
    pub mailbox: &'a MailboxId,
    pub id: &'a MessageId,
    pub payload: &'a [u8],
    pub received_at: i64,
    pub expires_at: i64,
}

impl<'a> NewRow<'a> {
    /// Binds `mailbox, message_id, payload, size, received_at, expires_at` (in this order,
    /// the columns both backends' multi-row INSERT name) into one row of `VALUES`.
    pub(crate) fn push_values<DB: sqlx::Database>(
        &self,
        b: &mut sqlx::query_builder::Separated<'_, 'a, DB, &'static str>,
    ) where
        &'a [u8]: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
        i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    {
        b.push_bind(&self.mailbox.0[..])
            .push_bind(&self.id.0[..])
            .push_bind(self.payload)
            .push_bind(i64::try_from(self.payload.len()).unwrap_or(i64::MAX))
            .push_bind(self.received_at)
            .push_bind(self.expires_at);
    }
}

/// The backend-specific statements, all inside the transaction the writer opened.
pub(crate) trait Sink: Send + 'static {
    fn begin(&mut self) -> impl Future<Output = Result<(), MailboxError>> + Send;
    fn commit(&mut self) -> impl Future<Output = Result<(), MailboxError>> + Send;
    fn rollback(&mut self) -> impl Future<Output = ()> + Send;
    /// Current (messages, bytes) of a mailbox.
    fn load_usage(
        &mut self,
        mailbox: &MailboxId,
    ) -> impl Future<Output = Result<(u64, u64), MailboxError>> + Send;
    /// Whether (mailbox, id) is queued.
    fn exists(
        &mut self,
        mailbox: &MailboxId,
        id: &MessageId,
    ) -> impl Future<Output = Result<bool, MailboxError>> + Send;
    /// Inserts rows, skipping (mailbox, id) pairs already present; returns the inserted
    /// (mailbox, id, seq).
    fn insert_many(
        &mut self,
        rows: &[NewRow<'_>],
    ) -> impl Future<Output = Result<Vec<(MailboxId, MessageId, u64)>, MailboxError>> + Send;
    /// Deletes named messages; returns how many were deleted and their total size.
    fn delete_ids(
        &mut self,
        mailbox: &MailboxId,
        ids: &[MessageId],
    ) -> impl Future<Output = Result<(u64, u64), MailboxError>> + Send;
    /// Deletes every message of `mailbox` with `seq <= up_to` (one DELETE); returns how many
    /// were deleted and their total size.
    fn delete_up_to(
        &mut self,
        mailbox: &MailboxId,
        up_to: i64,
    ) -> impl Future<Output = Result<(u64, u64), MailboxError>> + Send;
    /// Deletes up to `EXPIRE_CHUNK` expired messages; returns (mailbox, size) of each.
    fn delete_expired(
        &mut self,
        now_ms: i64,
    ) -> impl Future<Output = Result<Vec<(MailboxId, u64)>, MailboxError>> + Send;
    /// Inserts a receipt; false if the hash was present.
    fn insert_transit(
        &mut self,
        hash: &[u8; 32],
        now_ms: i64,
    ) -> impl Future<Output = Result<bool, MailboxError>> + Send;
    /// Deletes receipts older than `cutoff` and the oldest beyond `max`; returns how many.
    fn prune_transit(
        &mut self,
        cutoff: i64,
        max: u64,
    ) -> impl Future<Output = Result<u64, MailboxError>> + Send;
}

pub(crate) struct Request {
    op: Op,
    reply: oneshot::Sender<Result<OpResult, MailboxError>>,
}

/// The callers' side of the writer.
#[derive(Debug, Clone)]
pub(crate) struct WriterHandle {
    tx: mpsc::Sender<Request>,
}

impl WriterHandle {
    async fn call(&self, op: Op) -> Result<OpResult, MailboxError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { op, reply })
            .await
            .map_err(|_| MailboxError::WriterStopped)?;
        rx.await.map_err(|_| MailboxError::WriterStopped)?
    }

    /// [`super::MailboxBackend::put`], limits checked, through the writer.
    pub(crate) async fn put(
        &self,
        mailbox: &MailboxId,
        id: &MessageId,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<PutOutcome, MailboxError> {
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(MailboxError::PayloadTooLarge {
                max: MAX_PAYLOAD_LEN,
                found: payload.len(),
            });
        }
        let op = Op::Put {
            mailbox: *mailbox,
            id: *id,
            payload: payload.to_vec(),
            now_ms,
        };
        match self.call(op).await? {
            OpResult::Put(p) => Ok(p),
            _ => Err(unexpected()),
        }
    }

    /// [`super::MailboxBackend::ack`], limits checked, through the writer.
    pub(crate) async fn ack(
        &self,
        mailbox: &MailboxId,
        ids: &[MessageId],
    ) -> Result<u64, MailboxError> {
        if ids.len() > MAX_ACK {
            return Err(MailboxError::LimitTooLarge {
                what: "ack ids",
                max: MAX_ACK,
                found: ids.len(),
            });
        }
        let op = Op::Ack {
            mailbox: *mailbox,
            ids: ids.to_vec(),
        };
        match self.call(op).await? {
            OpResult::Acked(n) => Ok(n),
            _ => Err(unexpected()),
        }
    }

    /// [`super::MailboxBackend::ack_up_to`] through the writer.
    pub(crate) async fn ack_up_to(
        &self,
        mailbox: &MailboxId,
        up_to: Cursor,
    ) -> Result<u64, MailboxError> {
        let op = Op::AckUpTo {
            mailbox: *mailbox,
            up_to: to_i64(up_to.0),
        };
        match self.call(op).await? {
            OpResult::Acked(n) => Ok(n),
            _ => Err(unexpected()),
        }
    }

    /// [`super::MailboxBackend::expire`] through the writer.
    pub(crate) async fn expire(&self, now_ms: u64) -> Result<Expired, MailboxError> {
        match self.call(Op::Expire { now_ms }).await? {
            OpResult::Expired(e) => Ok(e),
            _ => Err(unexpected()),
        }
    }

    /// [`super::MailboxBackend::record_transit`] through the writer.
    pub(crate) async fn record_transit(
        &self,
        hash: &[u8; 32],
        now_ms: u64,
    ) -> Result<TransitOutcome, MailboxError> {
        let op = Op::Transit {
            hash: *hash,
            now_ms,
        };
        match self.call(op).await? {
            OpResult::Transit(t) => Ok(t),
            _ => Err(unexpected()),
        }
    }
}

fn unexpected() -> MailboxError {
    MailboxError::Database(sqlx::Error::Protocol(
        "writer answered with the wrong result kind".into(),
    ))
}

/// Exact usage, owned by the writer.
pub(crate) struct Usage {
    per: HashMap<MailboxId, (u64, u64)>,
    global: (u64, u64),
}

/// Spawns the writer task over `sink`, with `global` the usage at start.
pub(crate) fn spawn<S: Sink>(
    sink: S,
    limits: Limits,
    global: (u64, u64),
    capacity: usize,
) -> (WriterHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(capacity);
    let usage = Usage {
        per: HashMap::new(),
        global,
    };
    let task = tokio::spawn(run(sink, limits, usage, rx));
    (WriterHandle { tx }, task)
}

async fn run<S: Sink>(
    mut sink: S,
    limits: Limits,
    mut usage: Usage,
    mut rx: mpsc::Receiver<Request>,
) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    loop {
        let n = rx.recv_many(&mut batch, MAX_BATCH).await;
        if n == 0 {
            return; // all senders dropped: the mailbox was closed
        }
        if usage.per.len() > USAGE_CACHE_MAX {
            usage.per.clear();
        }
        let ops: Vec<&Op> = batch.iter().map(|r| &r.op).collect();
        match apply_batch(&mut sink, &limits, &mut usage, &ops).await {
            Ok(results) => {
                for (req, res) in batch.drain(..).zip(results) {
                    let _ = req.reply.send(res);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                let mut first = Some(e);
                for req in batch.drain(..) {
                    let err = first.take().unwrap_or_else(|| {
                        MailboxError::Database(sqlx::Error::Protocol(msg.clone()))
                    });
                    let _ = req.reply.send(Err(err));
                }
            }
        }
    }
}

#[derive(Default)]
struct Overlay {
    loaded: HashMap<MailboxId, (u64, u64)>,
    delta: HashMap<MailboxId, (i64, i64)>,
    global: (i64, i64),
}

fn add(base: u64, d: i64) -> u64 {
    if d >= 0 {
        base.saturating_add(d.unsigned_abs())
    } else {
        base.saturating_sub(d.unsigned_abs())
    }
}

fn size_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

async fn current<S: Sink>(
    sink: &mut S,
    usage: &Usage,
    ov: &mut Overlay,
    mb: &MailboxId,
) -> Result<(u64, u64), MailboxError> {
    let base = match usage.per.get(mb).or_else(|| ov.loaded.get(mb)) {
        Some(b) => *b,
        None => {
            let b = sink.load_usage(mb).await?;
            ov.loaded.insert(*mb, b);
            b
        }
    };
    let d = ov.delta.get(mb).copied().unwrap_or((0, 0));
    Ok((add(base.0, d.0), add(base.1, d.1)))
}

fn known(usage: &Usage, ov: &Overlay, mb: &MailboxId) -> bool {
    usage.per.contains_key(mb) || ov.loaded.contains_key(mb)
}

fn bump(ov: &mut Overlay, mb: &MailboxId, n: i64, bytes: i64, track: bool) {
    if track {
        let e = ov.delta.entry(*mb).or_insert((0, 0));
        e.0 += n;
        e.1 += bytes;
    }
    ov.global.0 += n;
    ov.global.1 += bytes;
}

fn quota_check(
    limits: &Limits,
    mbox: (u64, u64),
    global: (u64, u64),
    size: u64,
) -> Result<(), MailboxError> {
    let checks = [
        (
            QuotaScope::Mailbox,
            QuotaKind::Messages,
            mbox.0.saturating_add(1),
            limits.mailbox_messages,
            mbox.0,
        ),
        (
            QuotaScope::Mailbox,
            QuotaKind::Bytes,
            mbox.1.saturating_add(size),
            limits.mailbox_bytes,
            mbox.1,
        ),
        (
            QuotaScope::Global,
            QuotaKind::Messages,
            global.0.saturating_add(1),
            limits.global_messages,
            global.0,
        ),
        (
            QuotaScope::Global,
            QuotaKind::Bytes,
            global.1.saturating_add(size),
            limits.global_bytes,
            global.1,
        ),
    ];
    for (scope, kind, after, limit, cur) in checks {
        if after > limit {
            return Err(MailboxError::Full {
                scope,
                kind,
                limit,
                current: cur,
            });
        }
    }
    Ok(())
}

fn copy_put_error(e: &MailboxError) -> MailboxError {
    match e {
        MailboxError::Full {
            scope,
            kind,
            limit,
            current,
        } => MailboxError::Full {
            scope: *scope,
            kind: *kind,
            limit: *limit,
            current: *current,
        },
        MailboxError::PayloadTooLarge { max, found } => MailboxError::PayloadTooLarge {
            max: *max,
            found: *found,
        },
        other => MailboxError::Database(sqlx::Error::Protocol(other.to_string())),
    }
}

type Slot = Option<Result<OpResult, MailboxError>>;

async fn apply_batch<S: Sink>(
    sink: &mut S,
    limits: &Limits,
    usage: &mut Usage,
    ops: &[&Op],
) -> Result<Vec<Result<OpResult, MailboxError>>, MailboxError> {
    sink.begin().await?;
    let mut ov = Overlay::default();
    let res = apply_ops(sink, limits, usage, &mut ov, ops).await;
    let res = match res {
        Ok(r) => sink.commit().await.map(|()| r),
        Err(e) => {
            sink.rollback().await;
            Err(e)
        }
    };
    // Loaded values are the pre-batch state: valid whether or not the batch committed.
    for (mb, v) in ov.loaded.drain() {
        usage.per.entry(mb).or_insert(v);
    }
    let results = res?;
    for (mb, d) in ov.delta {
        if let Some(e) = usage.per.get_mut(&mb) {
            *e = (add(e.0, d.0), add(e.1, d.1));
        }
    }
    usage.global = (
        add(usage.global.0, ov.global.0),
        add(usage.global.1, ov.global.1),
    );
    Ok(results)
}

async fn apply_ops<S: Sink>(
    sink: &mut S,
    limits: &Limits,
    usage: &Usage,
    ov: &mut Overlay,
    ops: &[&Op],
) -> Result<Vec<Result<OpResult, MailboxError>>, MailboxError> {
    let mut slots: Vec<Slot> = (0..ops.len()).map(|_| None).collect();
    // Puts waiting to be inserted by one multi-row statement: op indexes.
    let mut pending: Vec<usize> = Vec::new();
    // (mailbox, id) -> index of the first put of it in this batch.
    let mut first_put: HashMap<(MailboxId, MessageId), usize> = HashMap::new();
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    let mut pending_keys: std::collections::HashSet<(MailboxId, MessageId)> =
        std::collections::HashSet::new();

    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Put {
                mailbox,
                id,
                payload,
                ..
            } => {
                if let Some(&first) = first_put.get(&(*mailbox, *id)) {
                    repeats.push((i, first));
                    continue;
                }
                first_put.insert((*mailbox, *id), i);
                let size = u64::try_from(payload.len()).unwrap_or(u64::MAX);
                let cur = current(sink, usage, ov, mailbox).await?;
                let global = (
                    add(usage.global.0, ov.global.0),
                    add(usage.global.1, ov.global.1),
                );
                if let Err(full) = quota_check(limits, cur, global, size) {
                    // A retried put of a queued message is a duplicate, not a quota failure.
                    slots[i] = Some(if sink.exists(mailbox, id).await? {
                        Ok(OpResult::Put(PutOutcome::Duplicate))
                    } else {
                        Err(full)
                    });
                    continue;
                }
                bump(ov, mailbox, 1, size_i64(payload.len()), true);
                pending.push(i);
                pending_keys.insert((*mailbox, *id));
            }
            other => {
                // Puts and acks of different messages commute, so pending puts keep
                // accumulating into one multi-row insert unless this op could observe them:
                // an ack naming a pending (mailbox, id), or an expiry.
                let must_flush = match other {
                    Op::Ack { mailbox, ids } => {
                        ids.iter().any(|id| pending_keys.contains(&(*mailbox, *id)))
                    }
                    // A pending put gets a seq above every committed one, so only an
                    // `up_to` beyond what was ever handed out could reach it; flush anyway so
                    // that the result is the arrival-order one.
                    Op::AckUpTo { mailbox, .. } => pending_keys.iter().any(|k| k.0 == *mailbox),
                    Op::Expire { .. } => true,
                    Op::Transit { .. } | Op::Put { .. } => false,
                };
                if must_flush {
                    flush(sink, usage, ov, ops, &mut pending, &mut slots, limits).await?;
                    pending_keys.clear();
                }
                slots[i] = Some(Ok(match other {
                    Op::Ack { mailbox, ids } => {
                        let (n, bytes) = sink.delete_ids(mailbox, ids).await?;
                        let track = known(usage, ov, mailbox);
                        bump(ov, mailbox, -to_i64(n), -to_i64(bytes), track);
                        OpResult::Acked(n)
                    }
                    Op::AckUpTo { mailbox, up_to } => {
                        let (n, bytes) = sink.delete_up_to(mailbox, *up_to).await?;
                        let track = known(usage, ov, mailbox);
                        bump(ov, mailbox, -to_i64(n), -to_i64(bytes), track);
                        OpResult::Acked(n)
                    }
                    Op::Expire { now_ms } => {
                        let now = to_i64(*now_ms);
                        let gone = sink.delete_expired(now).await?;
                        for (mb, size) in &gone {
                            let track = known(usage, ov, mb);
                            bump(ov, mb, -1, -to_i64(*size), track);
                        }
                        let cutoff = now.saturating_sub(to_i64(limits.transit_retention_ms));
                        let receipts = sink
                            .prune_transit(cutoff, limits.max_transit_receipts)
                            .await?;
                        OpResult::Expired(Expired {
                            messages: u64::try_from(gone.len()).unwrap_or(u64::MAX),
                            receipts,
                        })
                    }
                    Op::Transit { hash, now_ms } => {
                        OpResult::Transit(if sink.insert_transit(hash, to_i64(*now_ms)).await? {
                            TransitOutcome::Recorded
                        } else {
                            TransitOutcome::AlreadySeen
                        })
                    }
                    Op::Put { .. } => continue,
                }));
            }
        }
    }
    flush(sink, usage, ov, ops, &mut pending, &mut slots, limits).await?;
    for (i, first) in repeats {
        slots[i] = Some(match &slots[first] {
            Some(Ok(_)) => Ok(OpResult::Put(PutOutcome::Duplicate)),
            Some(Err(e)) => Err(copy_put_error(e)),
            None => Ok(OpResult::Put(PutOutcome::Duplicate)),
        });
    }
    Ok(slots
        .into_iter()
        .map(|s| {
            s.unwrap_or_else(|| {
                Err(MailboxError::Database(sqlx::Error::Protocol(
                    "request left unanswered".into(),
                )))
            })
        })
        .collect())
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

async fn flush<S: Sink>(
    sink: &mut S,
    _usage: &Usage,
    ov: &mut Overlay,
    ops: &[&Op],
    pending: &mut Vec<usize>,
    slots: &mut [Slot],
    limits: &Limits,
) -> Result<(), MailboxError> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::with_capacity(pending.len());
    for &i in pending.iter() {
        if let Op::Put {
            mailbox,
            id,
            payload,
            now_ms,
        } = ops[i]
        {
            let received = to_i64(*now_ms);
            rows.push(NewRow {
                mailbox,
                id,
                payload,
                received_at: received,
                expires_at: received.saturating_add(to_i64(limits.ttl_ms)),
            });
        }
    }
    let inserted: HashMap<(MailboxId, MessageId), u64> = sink
        .insert_many(&rows)
        .await?
        .into_iter()
        .map(|(m, id, seq)| ((m, id), seq))
        .collect();
    for &i in pending.iter() {
        if let Op::Put {
            mailbox,
            id,
            payload,
            ..
        } = ops[i]
        {
            slots[i] = Some(Ok(OpResult::Put(match inserted.get(&(*mailbox, *id)) {
                Some(&seq) => PutOutcome::Stored { seq },
                None => {
                    bump(ov, mailbox, -1, -size_i64(payload.len()), true);
                    PutOutcome::Duplicate
                }
            })));
        }
    }
    pending.clear();
    Ok(())
}

//! Error types: one enum for the client store, one for the relay mailbox.

use thiserror::Error;

/// Errors from the encrypted client store ([`crate::client::ClientStore`]).
///
/// Wrong input from the user (a wrong password), a damaged or foreign file, a file written by a
/// newer version, and failures of the database engine are different variants, so an
/// application can tell "ask for the password again" from "restore from backup".
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The password does not open this store (the wrapped data key failed to authenticate).
    /// Nothing was modified.
    #[error("wrong password for this store")]
    WrongPassword,
    /// `create` was called on a path that already holds a file.
    #[error("a store already exists at this path")]
    AlreadyExists,
    /// `open` was called on a path that holds no file.
    #[error("no store at this path")]
    NotFound,
    /// The file is not a SQLite database, or SQLite found it damaged.
    #[error("the store file is corrupt or not a ZenTalk store: {reason}")]
    Corrupt {
        /// What was found wrong.
        reason: String,
    },
    /// The store's format version is one this build does not know.
    #[error("unknown store format version: expected at most {expected}, found {found}")]
    UnknownFormatVersion {
        /// Highest format version this build reads.
        expected: u32,
        /// Version found in the file.
        found: u32,
    },
    /// The file has a schema migration this build does not know (it was written by a newer
    /// version). Nothing was modified.
    #[error(
        "the store was written by a newer version (unknown migration {found}, newest known {expected})"
    )]
    NewerSchema {
        /// Newest migration version this build knows.
        expected: i64,
        /// Unknown migration version found in the file.
        found: i64,
    },
    /// An encrypted column is shorter than the smallest possible ciphertext.
    #[error(
        "truncated ciphertext in {table}.{column}: expected at least {expected} bytes, found {found}"
    )]
    TruncatedCiphertext {
        /// Table of the column.
        table: &'static str,
        /// Column name.
        column: &'static str,
        /// Minimum length.
        expected: usize,
        /// Length found.
        found: usize,
    },
    /// An encrypted column failed to authenticate: tampered, or moved from another row.
    #[error(
        "ciphertext in {table}.{column} failed to authenticate (tampered or moved between rows)"
    )]
    Tampered {
        /// Table of the column.
        table: &'static str,
        /// Column name.
        column: &'static str,
    },
    /// A decrypted column does not have the expected layout.
    #[error("malformed plaintext in {table}.{column}: {reason}")]
    Malformed {
        /// Table of the column.
        table: &'static str,
        /// Column name.
        column: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// Argon2 parameters outside the accepted range (from the caller or read from the file).
    #[error("Argon2 parameter {name} out of range: {found} not in {min}..={max}")]
    KdfParams {
        /// Parameter name (`m_kib`, `t`, `p`).
        name: &'static str,
        /// Smallest accepted value.
        min: u32,
        /// Largest accepted value.
        max: u32,
        /// Value found.
        found: u32,
    },
    /// A value is larger than its named limit.
    #[error("{what} too large: at most {max}, found {found}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The limit.
        max: usize,
        /// The size found.
        found: usize,
    },
    /// A referenced row does not exist.
    #[error("{what} not found")]
    Missing {
        /// What was looked up.
        what: &'static str,
    },
    /// A message id that is already stored.
    #[error("duplicate message id")]
    DuplicateMessage,
    /// The key derivation failed (should not happen with validated parameters).
    #[error("key derivation failed: {0}")]
    Kdf(String),
    /// An encryption primitive failed.
    #[error("crypto error: {0}")]
    Crypto(#[from] zentalk_crypto::CryptoError),
    /// Migration machinery failure.
    #[error("migration failed: {0}")]
    Migrate(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// File-system error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Which quota a rejected put hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuotaScope {
    /// The mailbox's own limit.
    Mailbox,
    /// The limit over all mailboxes of this store.
    Global,
}

/// Which quantity a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuotaKind {
    /// Number of queued messages.
    Messages,
    /// Total payload bytes.
    Bytes,
}

/// Errors from the relay mailbox ([`crate::mailbox`]).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MailboxError {
    /// The put would exceed a quota; nothing was stored.
    #[error("mailbox full: {scope:?} {kind:?} limit {limit}, current {current}")]
    Full {
        /// Which quota.
        scope: QuotaScope,
        /// Messages or bytes.
        kind: QuotaKind,
        /// The limit.
        limit: u64,
        /// Usage before this put.
        current: u64,
    },
    /// A payload larger than [`crate::mailbox::MAX_PAYLOAD_LEN`].
    #[error("payload too large: at most {max}, found {found}")]
    PayloadTooLarge {
        /// The limit.
        max: usize,
        /// The size found.
        found: usize,
    },
    /// A fetch or ack asked for more items than the named limit allows.
    #[error("{what}: at most {max}, asked for {found}")]
    LimitTooLarge {
        /// Which limit.
        what: &'static str,
        /// The limit.
        max: usize,
        /// What was asked.
        found: usize,
    },
    /// A URL that names no supported backend.
    #[error("unsupported mailbox URL (expected sqlite:// or postgres://): {0}")]
    UnsupportedUrl(String),
    /// The database has a migration this build does not know (written by a newer version).
    #[error(
        "the mailbox was written by a newer version (unknown migration {found}, newest known {expected})"
    )]
    NewerSchema {
        /// Newest migration version this build knows.
        expected: i64,
        /// Unknown migration version found.
        found: i64,
    },
    /// The database file is corrupt or not a mailbox.
    #[error("mailbox database corrupt: {reason}")]
    Corrupt {
        /// What was found wrong.
        reason: String,
    },
    /// A stored row had an impossible value (e.g. a message id of the wrong length).
    #[error("malformed row in {table}: {reason}")]
    Malformed {
        /// Table.
        table: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// The background writer has stopped (the mailbox was closed or its task failed).
    #[error("mailbox writer has stopped")]
    WriterStopped,
    /// Migration machinery failure.
    #[error("migration failed: {0}")]
    Migrate(String),
    /// Any other database error. Everything in the batch it happened in was rolled back.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

/// SQLite primary result codes that mean "this file is damaged or not a database".
const SQLITE_CORRUPT: &str = "11";
const SQLITE_NOTADB: &str = "26";

/// True if `e` is SQLite reporting a corrupt or foreign file.
pub(crate) fn is_corruption(e: &sqlx::Error) -> bool {
    if let sqlx::Error::Database(db) = e
        && let Some(code) = db.code()
        && let Ok(c) = code.parse::<u32>()
    {
        // Extended codes keep the primary code in the low byte.
        let primary = (c & 0xff).to_string();
        return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB;
    }
    false
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_corruption(&e) {
            StoreError::Corrupt {
                reason: e.to_string(),
            }
        } else {
            StoreError::Database(e)
        }
    }
}

impl From<sqlx::Error> for MailboxError {
    fn from(e: sqlx::Error) -> Self {
        if is_corruption(&e) {
            MailboxError::Corrupt {
                reason: e.to_string(),
            }
        } else {
            MailboxError::Database(e)
        }
    }
}

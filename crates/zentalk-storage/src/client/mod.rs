//! The encrypted client store: one SQLite file per account.
//!
//! Every sensitive column is sealed with AES-256-GCM under a column key derived from a random
//! data key; the data key is wrapped under Argon2id(password, salt). See `crypt` for the key
//! hierarchy and `docs/protocol/zentalk-storage.md` for the exact formats.
//!
//! Re-keying ([`ClientStore::change_password`]) rewrites only the wrapped data key, in one
//! transaction: the column ciphertexts never change, so a password change is instant and
//! cannot lose data half-way.

mod crypt;
#[doc(hidden)]
pub mod fuzzing;
mod messages;
mod records;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Row};
use zentalk_crypto::AeadKey;

pub use crypt::{BLIND_INDEX_LEN, COLUMN_FORMAT_VERSION, COLUMN_OVERHEAD, KdfParams, SALT_LEN};
pub use messages::{
    CONTENT_TYPE_TEXT, MAX_CONTENT_LEN, MAX_INSERT_BATCH, MAX_SEARCH_RESULTS, MessageStatus,
    NewMessage, PAGE_LEVEL0_MAX, PAGE_SIZE, PREVIEW_MAX_CHARS, Page, PageCursor, Reaction,
    SEARCH_BATCH_ROWS, StoredMessage, TAG_LEVEL_RATIO, TAG_LEVEL0_MAX, TAG_LEVELS,
};
pub use records::{
    Contact, ConversationKind, ConversationSummary, GroupMember, GroupRole, MAX_LIST_ROWS,
    MAX_SECRET_LEN, MAX_SHARD_LOCATION_LEN, MAX_SHARDS, MAX_TEXT_LEN, MediaRecord, NewConversation,
    PrekeyKind, Room,
};

use crate::StoreError;
use crypt::Keys;

/// Store format version written into `store_meta` (independent of the SQL migrations, which
/// sqlx tracks in `_sqlx_migrations`).
pub const FORMAT_VERSION: u32 = 1;

/// The client store's migrations (embedded at build time from `migrations/client`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/client");

macro_rules! id16 {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// A fresh random id from the operating system's RNG.
            pub fn random() -> Self {
                let mut b = [0u8; 16];
                crate::os_fill(&mut b);
                Self(b)
            }

            #[allow(dead_code, reason = "not every id type is read back from a column")]
            pub(crate) fn from_column(table: &'static str, column: &'static str, v: &[u8]) -> Result<Self, StoreError> {
                let b: [u8; 16] = v.try_into().map_err(|_| StoreError::Malformed {
                    table,
                    column,
                    reason: "id is not 16 bytes",
                })?;
                Ok(Self(b))
            }
        }
    };
}

id16!(
    /// A message id: 16 random bytes (the wire header's id; carries no clock).
    MessageId
);
id16!(
    /// A conversation id: 16 random bytes chosen locally.
    ConversationId
);
id16!(
    /// A media object id.
    MediaId
);
id16!(
    /// A group id.
    GroupId
);
id16!(
    /// An anonymous room id.
    RoomId
);

/// The encrypted client store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct ClientStore {
    pool: SqlitePool,
    keys: Keys,
    next_row: AtomicI64,
    path: PathBuf,
}

impl std::fmt::Debug for ClientStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// SQLite settings of the client store: WAL journal, `synchronous = FULL` (each commit is
/// fsynced), temporary tables in memory (no plaintext spills to temp files), secure_delete on
/// (freed pages are zeroed), a 64 MiB page cache and 256 MiB of memory-mapped reads.
fn connect_options(path: &Path, create: bool) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(create)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5))
        .pragma("temp_store", "MEMORY")
        .pragma("secure_delete", "ON")
        // 64 MiB page cache and memory-mapped reads: the indexes of a million-message store
        // stay in memory instead of being re-read through syscalls.
        .pragma("cache_size", "-65536")
        .pragma("mmap_size", "268435456")
        // Checkpoint the WAL into the main file every 8,192 pages (32 MiB) instead of SQLite's
        // 1,000: a batch of messages dirties more than 1,000 pages, so the default copied every
        // commit's pages twice; a larger WAL lets one checkpoint write a page that many commits
        // touched once. Durability is unchanged (the WAL is fsynced at every commit).
        .pragma("wal_autocheckpoint", "8192")
        // After a checkpoint, a WAL larger than 64 MiB is truncated back to that size.
        .pragma("journal_size_limit", "67108864")
}

async fn connect(path: &Path, create: bool) -> Result<SqlitePool, StoreError> {
    // One connection: SQLite has one writer anyway, and a single connection makes every
    // transaction's isolation trivially correct.
    Ok(SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(connect_options(path, create))
        .await?)
}

/// Checks migration versions recorded in a database against the ones this build knows, without
/// applying anything: `Err((newest known, unknown found))` if the file has one we do not know.
pub(crate) fn check_migrations(
    migrator: &sqlx::migrate::Migrator,
    versions: &[i64],
) -> Result<(), (i64, i64)> {
    let newest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    for &v in versions {
        if !migrator.iter().any(|m| m.version == v) {
            return Err((newest, v));
        }
    }
    Ok(())
}

impl ClientStore {
    /// Creates a new store at `path` (which must not exist) protected by `password`.
    ///
    /// The file is built under a temporary name and renamed into place only when complete, so
    /// a crash never leaves a half-created store at `path`.
    pub async fn create(
        path: impl AsRef<Path>,
        password: &[u8],
        params: KdfParams,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if tokio::fs::try_exists(&path).await? {
            return Err(StoreError::AlreadyExists);
        }
        params.validate()?;
        let mut tmp = path.clone().into_os_string();
        tmp.push(".creating");
        let tmp = PathBuf::from(tmp);
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = tmp.clone().into_os_string();
            p.push(suffix);
            let _ = tokio::fs::remove_file(PathBuf::from(p)).await;
        }

        let mut salt = [0u8; SALT_LEN];
        crate::os_fill(&mut salt);
        let mut dk = [0u8; 32];
        crate::os_fill(&mut dk);
        let data_key = AeadKey::new(&mut dk);
        let password_key = derive_blocking(password, salt, params).await?;
        let keys = Keys::new(data_key)?;
        let wrapped = {
            let mut rng = KeysRng(&keys);
            crypt::wrap_data_key(&password_key, keys.data_key(), &salt, params, &mut rng)?
        };

        let mut conn = SqliteConnection::connect_with(&connect_options(&tmp, true)).await?;
        let result: Result<(), StoreError> = async {
            MIGRATOR
                .run(&mut conn)
                .await
                .map_err(|e| StoreError::Migrate(e.to_string()))?;
            sqlx::query(
                "INSERT INTO store_meta (id, format_version, kdf_salt, kdf_m_kib, kdf_t, kdf_p, wrapped_data_key, created_at) \
                 VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(i64::from(FORMAT_VERSION))
            .bind(&salt[..])
            .bind(i64::from(params.m_kib))
            .bind(i64::from(params.t))
            .bind(i64::from(params.p))
            .bind(&wrapped)
            .bind(crate::unix_now_ms())
            .execute(&mut conn)
            .await?;
            // Move everything from the WAL into the main file before the rename, so the
            // renamed file is complete on its own whatever the old handle does afterwards.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut conn)
                .await?;
            Ok(())
        }
        .await;
        let closed = conn.close().await;
        result?;
        closed?;
        tokio::fs::rename(&tmp, &path).await?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the rename itself durable.
            let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
        }
        let pool = connect(&path, false).await?;
        Ok(Self {
            pool,
            keys,
            next_row: AtomicI64::new(1),
            path,
        })
    }

    /// Opens an existing store. A wrong password gives [`StoreError::WrongPassword`] and
    /// changes nothing in the file; so does a file written by a newer version
    /// ([`StoreError::NewerSchema`], [`StoreError::UnknownFormatVersion`]).
    pub async fn open(path: impl AsRef<Path>, password: &[u8]) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if !tokio::fs::try_exists(&path).await? {
            return Err(StoreError::NotFound);
        }
        let pool = connect(&path, false).await?;
        match Self::unlock(&pool, password).await {
            Ok(keys) => {
                let next: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM messages")
                    .fetch_one(&pool)
                    .await?;
                Ok(Self {
                    pool,
                    keys,
                    next_row: AtomicI64::new(next.unwrap_or(0).saturating_add(1)),
                    path,
                })
            }
            Err(e) => {
                pool.close().await;
                Err(e)
            }
        }
    }

    async fn unlock(pool: &SqlitePool, password: &[u8]) -> Result<Keys, StoreError> {
        let has_migrations: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('_sqlx_migrations', 'store_meta')",
        )
        .fetch_one(pool)
        .await?;
        if has_migrations != 2 {
            return Err(StoreError::Corrupt {
                reason: "not a ZenTalk client store (missing store tables)".into(),
            });
        }
        let applied: Vec<(i64, bool)> =
            sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
                .fetch_all(pool)
                .await?;
        if applied.iter().any(|(_, ok)| !ok) {
            return Err(StoreError::Corrupt {
                reason: "a schema migration was left incomplete".into(),
            });
        }
        let versions: Vec<i64> = applied.iter().map(|(v, _)| *v).collect();
        check_migrations(&MIGRATOR, &versions)
            .map_err(|(expected, found)| StoreError::NewerSchema { expected, found })?;

        let row = sqlx::query(
            "SELECT format_version, kdf_salt, kdf_m_kib, kdf_t, kdf_p, wrapped_data_key FROM store_meta WHERE id = 1",
        )
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| StoreError::Corrupt {
            reason: "store_meta row missing".into(),
        })?;
        let version: i64 = row.try_get(0)?;
        if version < 1 || version > i64::from(FORMAT_VERSION) {
            return Err(StoreError::UnknownFormatVersion {
                expected: FORMAT_VERSION,
                found: u32::try_from(version).unwrap_or(u32::MAX),
            });
        }
        let salt_v: Vec<u8> = row.try_get(1)?;
        let salt: [u8; SALT_LEN] =
            salt_v
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt {
                    reason: format!("salt: expected {SALT_LEN} bytes, found {}", salt_v.len()),
                })?;
        let params = KdfParams {
            m_kib: param_u32(row.try_get(2)?),
            t: param_u32(row.try_get(3)?),
            p: param_u32(row.try_get(4)?),
        };
        params.validate()?;
        let wrapped: Vec<u8> = row.try_get(5)?;
        let password_key = derive_blocking(password, salt, params).await?;
        let data_key = crypt::unwrap_data_key(&password_key, &wrapped, &salt, params)?;
        // Only now, with the password proven, apply migrations this build has and the file not.
        MIGRATOR
            .run(pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        Keys::new(data_key)
    }

    /// Changes the password (and optionally the Argon2 parameters). Verifies `old` first.
    ///
    /// Only the wrapped data key is rewritten, in one transaction with a fresh salt: either the
    /// old password still works or the new one does, never neither.
    pub async fn change_password(
        &self,
        old: &[u8],
        new: &[u8],
        params: KdfParams,
    ) -> Result<(), StoreError> {
        params.validate()?;
        let row = sqlx::query("SELECT kdf_salt, kdf_m_kib, kdf_t, kdf_p, wrapped_data_key FROM store_meta WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        let salt_v: Vec<u8> = row.try_get(0)?;
        let salt: [u8; SALT_LEN] =
            salt_v
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt {
                    reason: "salt length".into(),
                })?;
        let old_params = KdfParams {
            m_kib: param_u32(row.try_get(1)?),
            t: param_u32(row.try_get(2)?),
            p: param_u32(row.try_get(3)?),
        };
        let wrapped: Vec<u8> = row.try_get(4)?;
        let old_key = derive_blocking(old, salt, old_params).await?;
        let current = crypt::unwrap_data_key(&old_key, &wrapped, &salt, old_params)?;

        let mut new_salt = [0u8; SALT_LEN];
        crate::os_fill(&mut new_salt);
        let new_key = derive_blocking(new, new_salt, params).await?;
        let new_wrapped = {
            let mut rng = KeysRng(&self.keys);
            crypt::wrap_data_key(&new_key, &current, &new_salt, params, &mut rng)?
        };
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE store_meta SET kdf_salt = ?, kdf_m_kib = ?, kdf_t = ?, kdf_p = ?, wrapped_data_key = ? \
             WHERE id = 1 AND wrapped_data_key = ?",
        )
        .bind(&new_salt[..])
        .bind(i64::from(params.m_kib))
        .bind(i64::from(params.t))
        .bind(i64::from(params.p))
        .bind(&new_wrapped)
        .bind(&wrapped)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            // Someone re-keyed concurrently: keep theirs.
            tx.rollback().await?;
            return Err(StoreError::WrongPassword);
        }
        tx.commit().await?;
        Ok(())
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checkpoints the WAL and closes the store.
    pub async fn close(self) {
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await;
        self.pool.close().await;
    }

    pub(crate) fn alloc_rows(&self, n: usize) -> i64 {
        self.next_row
            .fetch_add(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed)
    }
}

fn param_u32(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

async fn derive_blocking(
    password: &[u8],
    salt: [u8; SALT_LEN],
    params: KdfParams,
) -> Result<AeadKey, StoreError> {
    let pw = zeroize::Zeroizing::new(password.to_vec());
    tokio::task::spawn_blocking(move || crypt::derive_password_key(&pw, &salt, params))
        .await
        .map_err(|e| StoreError::Kdf(format!("key derivation task failed: {e}")))?
}

/// Adapts the store's CSPRNG to `RngCore` for nonce generation.
struct KeysRng<'a>(&'a Keys);

impl rand_core::RngCore for KeysRng<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.0.fill_random(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.0.fill_random(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_random(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.fill_random(dest);
        Ok(())
    }
}

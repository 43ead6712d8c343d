//! The per-install API token: 32 random bytes, kept in hex in a 0600 file of the client
//! directory, compared in constant time, never printed.

use std::fmt;
use std::io::{Read, Write};
use std::path::Path;

use zentalk_crypto::hash::ct_eq;
use zentalk_crypto::{CryptoRngCore, SecretBytes};
use zeroize::Zeroizing;

use super::{ApiError, from_hex, to_hex};

/// Length of the token in bytes (its hex form is twice as long).
pub const TOKEN_LEN: usize = 32;
/// Name of the token file in the client directory.
pub const TOKEN_FILE_NAME: &str = "api-token";
/// A token file larger than this is refused before it is read (64 hex characters and a
/// newline, with room for stray whitespace).
const MAX_TOKEN_FILE: u64 = 256;

/// The per-install secret that apps present as `Authorization: Bearer <hex>`.
///
/// Boxed and zeroized on drop; `Debug` prints no byte of it.
pub struct Token(SecretBytes<TOKEN_LEN>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A fresh random token.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self(SecretBytes::random(rng))
    }

    /// Reads the token from `path`, or, if the file does not exist, creates a random one and
    /// stores it there (mode 0600, written to a temporary file and linked into place, so a
    /// concurrent starter either wins or reads the complete winner).
    ///
    /// Refuses a file other users can read ([`ApiError::TokenPermissions`]) and one that
    /// does not hold exactly [`TOKEN_LEN`] bytes of hex ([`ApiError::TokenFormat`]).
    pub fn load_or_create(path: &Path) -> Result<Self, ApiError> {
        match Self::load(path) {
            Err(ApiError::TokenFile { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            other => return other,
        }
        #[allow(
            clippy::disallowed_types,
            reason = "L2: the install's token is drawn from the operating system"
        )]
        let token = Self::generate(&mut rand_core::OsRng);
        let file_err = |source| ApiError::TokenFile {
            path: path.to_path_buf(),
            source,
        };
        let mut tmp_name = path.as_os_str().to_owned();
        #[allow(
            clippy::disallowed_types,
            reason = "L2: a unique temporary name for the token file"
        )]
        let suffix = rand_core::RngCore::next_u64(&mut rand_core::OsRng);
        tmp_name.push(format!(".tmp-{suffix:016x}"));
        let tmp = std::path::PathBuf::from(tmp_name);
        let written = (|| {
            let mut file = create_private(&tmp)?;
            let mut text = token.expose_hex();
            text.push('\n');
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(file_err(e));
        }
        // hard_link fails if `path` exists: whoever linked first wins, the others load it.
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(token),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path),
            Err(e) => Err(file_err(e)),
        }
    }

    /// Reads the token from `path` (see [`Token::load_or_create`] for what is refused).
    pub fn load(path: &Path) -> Result<Self, ApiError> {
        let file_err = |source| ApiError::TokenFile {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(file_err)?;
        let meta = file.metadata().map_err(file_err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(ApiError::TokenPermissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let format_err = |found| ApiError::TokenFormat {
            path: path.to_path_buf(),
            expected: 2 * TOKEN_LEN,
            found,
        };
        if meta.len() > MAX_TOKEN_FILE {
            return Err(format_err(
                usize::try_from(meta.len()).unwrap_or(usize::MAX),
            ));
        }
        let mut text = Zeroizing::new(Vec::new());
        file.take(MAX_TOKEN_FILE)
            .read_to_end(&mut text)
            .map_err(file_err)?;
        let trimmed = text.trim_ascii();
        let bytes = Zeroizing::new(
            from_hex::<TOKEN_LEN>(trimmed).ok_or_else(|| format_err(trimmed.len()))?,
        );
        let mut secret = SecretBytes::zeroed();
        secret.expose_mut().copy_from_slice(&bytes[..]);
        Ok(Self(secret))
    }

    /// The token's hex form (what apps put after `Bearer `), zeroized when dropped. Show it
    /// only to the user who asked for it.
    pub fn expose_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(to_hex(self.0.expose()))
    }

    /// Whether `presented` (hex text, either case) is this token, in constant time with
    /// respect to the token (the hex decoding depends only on what was presented).
    pub fn matches(&self, presented: &[u8]) -> bool {
        match from_hex::<TOKEN_LEN>(presented) {
            Some(bytes) => {
                let bytes = Zeroizing::new(bytes);
                ct_eq(&bytes[..], self.0.expose())
            }
            None => false,
        }
    }
}

/// Creates a new file readable and writable by its owner only.
pub(super) fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

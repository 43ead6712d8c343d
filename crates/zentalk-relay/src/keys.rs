//! The relay's long-term keys and the key file that holds them.
//!
//! A relay has two keys: an Ed25519 identity ([`IdentityKeyPair`], whose BLAKE2b-256 hash is
//! its node id and which will sign its descriptor) and a separate X25519 Noise static key
//! that terminates links. Both live in one TOML key file, created with mode 0600 and refused
//! on load when group or others can read it.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use zentalk_crypto::{CryptoRngCore, IdentityKeyPair, NodeId, X25519PublicKey, X25519Secret};
use zeroize::Zeroizing;

/// Version written in, and required of, every key file.
pub const KEY_FILE_VERSION: u32 = 1;

/// Largest key file read, checked before reading (a real one is about 300 bytes).
pub const MAX_KEY_FILE_LEN: u64 = 4 * 1024;

/// Why a key file could not be written or read.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing the file failed (a missing file, an existing one on create, ...).
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is readable or writable by group or others.
    #[error("key file {path} has mode {mode:o}; it must be 600 (chmod 600 it)")]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is larger than [`MAX_KEY_FILE_LEN`].
    #[error("key file {path} is {found} bytes, more than the {limit} a key file can be")]
    TooLarge {
        /// The key file.
        path: PathBuf,
        /// [`MAX_KEY_FILE_LEN`].
        limit: u64,
        /// Its size.
        found: u64,
    },
    /// The file is not a valid key file (the message never contains key material).
    #[error("key file {path} is malformed: {reason}")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file has a version this build does not read.
    #[error("key file {path} has version {found}; this build reads version {expected}")]
    Version {
        /// The key file.
        path: PathBuf,
        /// [`KEY_FILE_VERSION`].
        expected: u32,
        /// The file's version.
        found: u32,
    },
}

/// A relay's long-term keys. `Debug` shows only public keys.
pub struct RelayKeys {
    identity: IdentityKeyPair,
    noise_static: X25519Secret,
}

impl RelayKeys {
    /// Fresh keys.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self {
            identity: IdentityKeyPair::generate(rng),
            noise_static: X25519Secret::generate(rng),
        }
    }

    /// Keys from their parts.
    pub fn from_parts(identity: IdentityKeyPair, noise_static: X25519Secret) -> Self {
        Self {
            identity,
            noise_static,
        }
    }

    /// The Ed25519 identity.
    pub fn identity(&self) -> &IdentityKeyPair {
        &self.identity
    }

    /// The Noise static secret that terminates links.
    pub fn noise_static(&self) -> &X25519Secret {
        &self.noise_static
    }

    /// The Noise static public key: what an initiator must know to open a link.
    pub fn noise_public(&self) -> X25519PublicKey {
        self.noise_static.public_key()
    }

    /// The node id: BLAKE2b-256 of the identity public key.
    pub fn node_id(&self) -> NodeId {
        NodeId::of(&self.identity.public_key())
    }

    /// An explicit copy.
    pub fn duplicate(&self) -> Self {
        Self {
            identity: self.identity.duplicate(),
            noise_static: self.noise_static.duplicate(),
        }
    }

    /// Writes a new key file at `path` with mode 0600. Refuses to overwrite an existing file.
    pub fn create_file(&self, path: &Path) -> Result<(), KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let seed = self.identity.seed();
        let noise = self.noise_static.to_secret_bytes();
        let text = Zeroizing::new(format!(
            "# ZenTalk relay keys. SECRET: keep this file mode 600 and never share it.\n\
             # identity public key: {}\n\
             # noise static public key: {}\n\
             version = {KEY_FILE_VERSION}\n\
             identity_seed = \"{}\"\n\
             noise_static_secret = \"{}\"\n",
            hex::encode(self.identity.public_key().as_bytes()),
            hex::encode(self.noise_public().as_bytes()),
            Zeroizing::new(hex::encode(seed.as_slice())).as_str(),
            Zeroizing::new(hex::encode(noise.expose())).as_str(),
        ));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Reads a key file written by [`RelayKeys::create_file`].
    pub fn load_file(path: &Path) -> Result<Self, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyFileError::InsecurePermissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        if meta.len() > MAX_KEY_FILE_LEN {
            return Err(KeyFileError::TooLarge {
                path: path.to_path_buf(),
                limit: MAX_KEY_FILE_LEN,
                found: meta.len(),
            });
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        Self::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Self, KeyFileError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            version: u32,
            identity_seed: String,
            noise_static_secret: String,
        }
        let malformed = |reason: String| KeyFileError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        // toml's error message quotes the offending line, which may hold a key: keep only
        // a fixed description.
        let raw: Raw = toml::from_str(text).map_err(|_| {
            malformed(
                "not a key file (expected version, identity_seed, noise_static_secret)".into(),
            )
        })?;
        let version = raw.version;
        let identity_seed = Zeroizing::new(raw.identity_seed);
        let noise_static_secret = Zeroizing::new(raw.noise_static_secret);
        if version != KEY_FILE_VERSION {
            return Err(KeyFileError::Version {
                path: path.to_path_buf(),
                expected: KEY_FILE_VERSION,
                found: version,
            });
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(identity_seed.as_bytes(), seed.as_mut_slice())
            .map_err(|_| malformed("identity_seed is not 64 hex digits".into()))?;
        let mut noise = [0u8; 32];
        let decoded = hex::decode_to_slice(noise_static_secret.as_bytes(), &mut noise);
        let noise_static = X25519Secret::from_bytes_mut(&mut noise);
        decoded.map_err(|_| malformed("noise_static_secret is not 64 hex digits".into()))?;
        Ok(Self {
            identity: IdentityKeyPair::from_seed(&seed),
            noise_static,
        })
    }
}

impl fmt::Debug for RelayKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayKeys")
            .field("node_id", &self.node_id().to_hex())
            .field("noise_public", &hex::encode(self.noise_public().as_bytes()))
            .field("secrets", &"[REDACTED]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn keys() -> RelayKeys {
        RelayKeys::generate(&mut ChaCha20Rng::seed_from_u64(0x6b65_7973))
    }

    #[test]
    fn file_round_trip_with_mode_600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.key");
        let k = keys();
        k.create_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let back = RelayKeys::load_file(&path).unwrap();
        assert_eq!(back.noise_public(), k.noise_public());
        assert_eq!(back.identity().public_key(), k.identity().public_key());
        assert_eq!(*back.identity().seed(), *k.identity().seed());
    }

    #[test]
    fn create_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.key");
        keys().create_file(&path).unwrap();
        let err = keys().create_file(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::Io { .. }), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn load_refuses_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.key");
        keys().create_file(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = RelayKeys::load_file(&path).unwrap_err();
        assert!(
            matches!(err, KeyFileError::InsecurePermissions { mode: 0o644, .. }),
            "{err}"
        );
    }

    fn write_600(path: &Path, text: &str) {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    #[test]
    fn load_rejects_malformed_wrong_version_and_oversized() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "ab".repeat(32);
        let bad = dir.path().join("bad.key");
        write_600(
            &bad,
            &format!("version = 1\nidentity_seed = \"{secret}\"\n"),
        );
        let err = RelayKeys::load_file(&bad).unwrap_err();
        assert!(matches!(err, KeyFileError::Malformed { .. }), "{err}");
        assert!(!err.to_string().contains(&secret), "error leaks key: {err}");

        let short = dir.path().join("short.key");
        write_600(
            &short,
            &format!("version = 1\nidentity_seed = \"abcd\"\nnoise_static_secret = \"{secret}\"\n"),
        );
        let err = RelayKeys::load_file(&short).unwrap_err();
        assert!(matches!(err, KeyFileError::Malformed { .. }), "{err}");

        let v2 = dir.path().join("v2.key");
        write_600(
            &v2,
            &format!(
                "version = 2\nidentity_seed = \"{secret}\"\nnoise_static_secret = \"{secret}\"\n"
            ),
        );
        let err = RelayKeys::load_file(&v2).unwrap_err();
        assert!(
            matches!(
                err,
                KeyFileError::Version {
                    expected: 1,
                    found: 2,
                    ..
                }
            ),
            "{err}"
        );

        let big = dir.path().join("big.key");
        write_600(&big, &"#".repeat(5000));
        let err = RelayKeys::load_file(&big).unwrap_err();
        assert!(
            matches!(
                err,
                KeyFileError::TooLarge {
                    limit: MAX_KEY_FILE_LEN,
                    found: 5000,
                    ..
                }
            ),
            "{err}"
        );

        let missing = RelayKeys::load_file(&dir.path().join("none.key")).unwrap_err();
        assert!(matches!(missing, KeyFileError::Io { .. }), "{missing}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let k = keys();
        let debug = format!("{k:?}");
        let seed_hex = hex::encode(k.identity().seed().as_slice());
        let noise_hex = hex::encode(k.noise_static().to_secret_bytes().expose());
        assert!(!debug.contains(&seed_hex));
        assert!(!debug.contains(&noise_hex));
        assert!(debug.contains("REDACTED"));
    }
}

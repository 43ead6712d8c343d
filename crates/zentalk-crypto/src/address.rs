use core::{fmt, str::FromStr};

use crate::{CryptoError, IdentityPublicKey, hash::blake2b_256};

/// Length of the lowercase base32 form (RFC 4648 alphabet, no padding) of a 32-byte id.
const BASE32_LEN: usize = 52;
/// Length of the lowercase hex form of a 32-byte id.
const HEX_LEN: usize = 64;

fn base32_lower(bytes: &[u8; 32]) -> String {
    data_encoding::BASE32_NOPAD
        .encode(bytes)
        .to_ascii_lowercase()
}

fn parse_id(s: &str, what: &'static str) -> Result<[u8; 32], CryptoError> {
    let decoded = match s.len() {
        HEX_LEN => data_encoding::HEXLOWER_PERMISSIVE.decode(s.as_bytes()),
        BASE32_LEN => data_encoding::BASE32_NOPAD.decode(s.to_ascii_uppercase().as_bytes()),
        _ => {
            return Err(CryptoError::Parse {
                what,
                reason: "expected 64 hex or 52 base32 characters",
            });
        }
    }
    .map_err(|_| CryptoError::Parse {
        what,
        reason: "invalid character or trailing bits",
    })?;
    decoded.try_into().map_err(|_| CryptoError::Parse {
        what,
        reason: "wrong decoded length",
    })
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        pub struct $name([u8; 32]);

        impl $name {
            /// BLAKE2b-256 of an Ed25519 identity public key.
            pub fn of(key: &IdentityPublicKey) -> Self {
                Self(blake2b_256(key.as_bytes()))
            }

            /// Wraps 32 raw bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// Parses a slice of exactly 32 bytes.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
                let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::InvalidLength {
                    what: $what,
                    expected: 32,
                    found: bytes.len(),
                })?;
                Ok(Self(arr))
            }

            /// The raw bytes.
            pub const fn to_bytes(&self) -> [u8; 32] {
                self.0
            }

            /// Borrows the raw bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Lowercase hex (64 characters).
            pub fn to_hex(&self) -> String {
                data_encoding::HEXLOWER.encode(&self.0)
            }

            /// Lowercase base32, RFC 4648 alphabet without padding (52 characters): the
            /// canonical form, and what `Display` prints.
            pub fn to_base32(&self) -> String {
                base32_lower(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_base32())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_base32())
            }
        }

        /// Accepts the hex form (64 characters, any case) or the base32 form (52 characters,
        /// any case). Anything else is a [`CryptoError::Parse`].
        impl FromStr for $name {
            type Err = CryptoError;
            fn from_str(s: &str) -> Result<Self, CryptoError> {
                parse_id(s, $what).map(Self)
            }
        }
    };
}

id_type!(
    /// A user's address: BLAKE2b-256 of the user's Ed25519 identity public key.
    Address,
    "address"
);

id_type!(
    /// A relay's or DHT node's id: BLAKE2b-256 of the node's Ed25519 identity public key.
    NodeId,
    "node id"
);

impl NodeId {
    /// Kademlia XOR distance to another id, as a big-endian 256-bit number.
    pub fn distance(&self, other: &NodeId) -> [u8; 32] {
        let mut d = [0u8; 32];
        for (i, b) in d.iter_mut().enumerate() {
            *b = self.0[i] ^ other.0[i];
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn address_text_round_trips(bytes in any::<[u8; 32]>()) {
            let a = Address::from_bytes(bytes);
            prop_assert_eq!(a.to_base32().len(), 52);
            prop_assert_eq!(a.to_string().parse::<Address>().unwrap(), a);
            prop_assert_eq!(a.to_hex().parse::<Address>().unwrap(), a);
            prop_assert_eq!(a.to_hex().to_uppercase().parse::<Address>().unwrap(), a);
            prop_assert_eq!(a.to_base32().to_uppercase().parse::<Address>().unwrap(), a);
        }

        #[test]
        fn garbage_never_panics(s in ".{0,80}") {
            let _ = s.parse::<Address>();
            let _ = s.parse::<NodeId>();
        }
    }

    #[test]
    fn parse_errors_are_typed() {
        assert!(matches!(
            "abc".parse::<Address>(),
            Err(CryptoError::Parse { .. })
        ));
        let not_hex = "z".repeat(64);
        assert!(matches!(
            not_hex.parse::<Address>(),
            Err(CryptoError::Parse { .. })
        ));
        // base32 of 32 bytes leaves 4 trailing bits that must be zero: "7" sets them.
        let non_canonical = format!("{}7", "a".repeat(51));
        assert!(matches!(
            non_canonical.parse::<NodeId>(),
            Err(CryptoError::Parse { .. })
        ));
    }

    #[test]
    fn distance_is_xor() {
        let a = NodeId::from_bytes([0xF0; 32]);
        let b = NodeId::from_bytes([0x0F; 32]);
        assert_eq!(a.distance(&b), [0xFF; 32]);
        assert_eq!(a.distance(&a), [0; 32]);
    }
}

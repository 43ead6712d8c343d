//! X3DH (Signal's Extended Triple Diffie-Hellman) with an Ed25519 identity key.
//!
//! ```text
//! DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)   DH3 = DH(EK_A, SPK_B)   [DH4 = DH(EK_A, OPK_B)]
//! SK  = HKDF-SHA256(salt = 32 zero bytes, IKM = 0xFF * 32 || DH1 || DH2 || DH3 [|| DH4],
//!                   info = "ZentalkX3DH", length 32)
//! AD  = IK_A (Ed25519, 32) || IK_B (Ed25519, 32)
//! ```
//!
//! where IK in a DH is the X25519 form of the Ed25519 identity key
//! ([`IdentityKeyPair::to_x25519`], [`IdentityPublicKey::to_x25519`]).
//!
//! The handshake is a pair of values consumed once: the initiator's [`InitiatorX3dh`] and the
//! responder's [`ResponderX3dh`] each become exactly one session (their constructors take
//! them by value). Most applications use [`crate::Account`], which drives both.

use core::fmt;

use zentalk_crypto::hash::blake2b_256_parts;
use zentalk_crypto::{
    CryptoRngCore, IdentityKeyPair, IdentityPublicKey, Signature, X25519PublicKey, X25519Secret,
};
use zeroize::Zeroizing;

use crate::kdf::{Key32, x3dh_sk};
use crate::message::{Reader, identity_key};
use crate::{DecodeError, SessionCreationError};

/// Type byte of an encoded [`PrekeyBundle`].
pub const TYPE_PREKEY_BUNDLE: u8 = 0x21;
/// Length of an encoded bundle without a one-time prekey.
pub const BUNDLE_LEN_WITHOUT_OTK: usize = 1 + 32 + 4 + 32 + 64 + 1;
/// Length of an encoded bundle with a one-time prekey.
pub const BUNDLE_LEN_WITH_OTK: usize = BUNDLE_LEN_WITHOUT_OTK + 4 + 32;
/// Length of the X3DH associated data (two Ed25519 identity keys).
pub const AD_LEN: usize = 64;

/// What an initiator needs to start a session with a responder: published by the responder
/// (for example in the DHT). The signed prekey's signature is checked before any DH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrekeyBundle {
    /// The responder's Ed25519 identity key.
    pub identity_key: IdentityPublicKey,
    /// Id of the signed prekey.
    pub signed_prekey_id: u32,
    /// The signed prekey (X25519).
    pub signed_prekey: X25519PublicKey,
    /// Ed25519 signature by the identity key over the signed prekey's raw 32 bytes.
    pub signed_prekey_signature: Signature,
    /// An optional one-time prekey and its id.
    pub one_time_prekey: Option<(u32, X25519PublicKey)>,
}

impl PrekeyBundle {
    /// Checks the signed prekey's signature.
    pub fn verify(&self) -> Result<(), SessionCreationError> {
        self.identity_key
            .verify(self.signed_prekey.as_bytes(), &self.signed_prekey_signature)
            .map_err(|_| SessionCreationError::BadSignedPrekeySignature)
    }

    /// The encoding: `0x21 || IK (32) || SPK id (u32 BE) || SPK (32) || signature (64) ||
    /// flag (1) [|| OPK id (u32 BE) || OPK (32)]`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BUNDLE_LEN_WITH_OTK);
        out.push(TYPE_PREKEY_BUNDLE);
        out.extend_from_slice(self.identity_key.as_bytes());
        out.extend_from_slice(&self.signed_prekey_id.to_be_bytes());
        out.extend_from_slice(self.signed_prekey.as_bytes());
        out.extend_from_slice(&self.signed_prekey_signature.to_bytes());
        match self.one_time_prekey {
            Some((id, key)) => {
                out.push(1);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(key.as_bytes());
            }
            None => out.push(0),
        }
        out
    }

    /// Parses the encoding. The signature is not checked here (see [`PrekeyBundle::verify`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, "prekey bundle", BUNDLE_LEN_WITH_OTK)?;
        let ty = r.u8()?;
        if ty != TYPE_PREKEY_BUNDLE {
            return Err(DecodeError::UnexpectedType {
                expected: "prekey bundle (0x21)",
                found: ty,
            });
        }
        let identity_key = identity_key(&r.array()?, "prekey bundle identity key")?;
        let signed_prekey_id = r.u32()?;
        let signed_prekey = X25519PublicKey::from_bytes(r.array()?);
        let signed_prekey_signature = Signature(r.array()?);
        let one_time_prekey = match r.u8()? {
            0 => None,
            1 => Some((r.u32()?, X25519PublicKey::from_bytes(r.array()?))),
            found => {
                return Err(DecodeError::UnknownFlags { allowed: 1, found });
            }
        };
        r.finish()?;
        Ok(Self {
            identity_key,
            signed_prekey_id,
            signed_prekey,
            signed_prekey_signature,
            one_time_prekey,
        })
    }
}

/// The shared secret and associated data both sides of X3DH agree on.
pub(crate) struct SharedSecrets {
    pub(crate) sk: Key32,
    pub(crate) ad: [u8; AD_LEN],
    pub(crate) session_id: [u8; 32],
}

impl SharedSecrets {
    fn derive(
        dhs: &[&[u8; 32]],
        initiator: &IdentityPublicKey,
        responder: &IdentityPublicKey,
        base_key: &X25519PublicKey,
    ) -> Self {
        let mut ikm = Zeroizing::new([0u8; 32 * 5]);
        ikm[..32].fill(0xFF);
        for (i, dh) in dhs.iter().enumerate() {
            ikm[32 * (i + 1)..32 * (i + 2)].copy_from_slice(*dh);
        }
        let len = 32 * (dhs.len() + 1);
        let sk = x3dh_sk(&ikm[..len]);
        let mut ad = [0u8; AD_LEN];
        ad[..32].copy_from_slice(initiator.as_bytes());
        ad[32..].copy_from_slice(responder.as_bytes());
        let session_id = blake2b_256_parts(&[b"ZentalkSessionId", &ad, base_key.as_bytes()]);
        Self { sk, ad, session_id }
    }
}

/// The initiator's completed X3DH: consumed by exactly one outbound session.
pub struct InitiatorX3dh {
    pub(crate) shared: SharedSecrets,
    pub(crate) identity_key: IdentityPublicKey,
    pub(crate) their_identity_key: IdentityPublicKey,
    pub(crate) base_key: X25519PublicKey,
    pub(crate) their_signed_prekey: X25519PublicKey,
    pub(crate) signed_prekey_id: u32,
    pub(crate) one_time_prekey_id: Option<u32>,
}

impl InitiatorX3dh {
    /// The X3DH associated data (IK_A || IK_B).
    pub fn associated_data(&self) -> &[u8; AD_LEN] {
        &self.shared.ad
    }

    /// The shared secret SK, for known-answer vectors only.
    #[cfg(any(test, feature = "test-vectors"))]
    #[doc(hidden)]
    pub fn shared_secret_for_tests(&self) -> [u8; 32] {
        *self.shared.sk.expose()
    }
}

impl fmt::Debug for InitiatorX3dh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitiatorX3dh")
            .field("base_key", &self.base_key)
            .field("sk", &"[REDACTED]")
            .finish()
    }
}

/// Runs the initiator's side of X3DH with a fresh ephemeral key.
pub fn initiate(
    rng: &mut impl CryptoRngCore,
    identity: &IdentityKeyPair,
    identity_x25519: &X25519Secret,
    bundle: &PrekeyBundle,
) -> Result<InitiatorX3dh, SessionCreationError> {
    // Verify before generating anything, so a bad bundle costs no scalar multiplication.
    bundle.verify()?;
    derive_initiator(
        identity,
        identity_x25519,
        bundle,
        X25519Secret::generate(rng),
    )
}

/// Runs the initiator's side of X3DH with an explicit ephemeral secret (interop tests and
/// known-answer vectors; use [`initiate`] otherwise). `identity_x25519` must be
/// `identity.to_x25519()` (passed in so an account computes it once).
pub fn initiate_with_ephemeral(
    identity: &IdentityKeyPair,
    identity_x25519: &X25519Secret,
    bundle: &PrekeyBundle,
    ephemeral: X25519Secret,
) -> Result<InitiatorX3dh, SessionCreationError> {
    bundle.verify()?;
    derive_initiator(identity, identity_x25519, bundle, ephemeral)
}

fn derive_initiator(
    identity: &IdentityKeyPair,
    identity_x25519: &X25519Secret,
    bundle: &PrekeyBundle,
    ephemeral: X25519Secret,
) -> Result<InitiatorX3dh, SessionCreationError> {
    let low = |_| SessionCreationError::LowOrderPoint;
    let their_ik = bundle.identity_key.to_x25519();
    let dh1 = identity_x25519
        .diffie_hellman(&bundle.signed_prekey)
        .map_err(low)?;
    let dh2 = ephemeral.diffie_hellman(&their_ik).map_err(low)?;
    let dh3 = ephemeral
        .diffie_hellman(&bundle.signed_prekey)
        .map_err(low)?;
    let our_ik = identity.public_key();
    let base_key = ephemeral.public_key();
    let shared = match bundle.one_time_prekey {
        Some((_, opk)) => {
            let dh4 = ephemeral.diffie_hellman(&opk).map_err(low)?;
            SharedSecrets::derive(
                &[dh1.expose(), dh2.expose(), dh3.expose(), dh4.expose()],
                &our_ik,
                &bundle.identity_key,
                &base_key,
            )
        }
        None => SharedSecrets::derive(
            &[dh1.expose(), dh2.expose(), dh3.expose()],
            &our_ik,
            &bundle.identity_key,
            &base_key,
        ),
    };
    Ok(InitiatorX3dh {
        shared,
        identity_key: our_ik,
        their_identity_key: bundle.identity_key,
        base_key,
        their_signed_prekey: bundle.signed_prekey,
        signed_prekey_id: bundle.signed_prekey_id,
        one_time_prekey_id: bundle.one_time_prekey.map(|(id, _)| id),
    })
}

/// The responder's completed X3DH: consumed by exactly one inbound session.
pub struct ResponderX3dh {
    pub(crate) shared: SharedSecrets,
    pub(crate) their_identity_key: IdentityPublicKey,
    pub(crate) base_key: X25519PublicKey,
}

impl fmt::Debug for ResponderX3dh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponderX3dh")
            .field("base_key", &self.base_key)
            .field("sk", &"[REDACTED]")
            .finish()
    }
}

/// Runs the responder's side of X3DH.
pub(crate) fn respond(
    our_identity: &IdentityPublicKey,
    our_identity_x25519: &X25519Secret,
    signed_prekey: &X25519Secret,
    one_time_prekey: Option<&X25519Secret>,
    their_identity: &IdentityPublicKey,
    base_key: &X25519PublicKey,
) -> Result<ResponderX3dh, SessionCreationError> {
    let low = |_| SessionCreationError::LowOrderPoint;
    let their_ik = their_identity.to_x25519();
    let dh1 = signed_prekey.diffie_hellman(&their_ik).map_err(low)?;
    let dh2 = our_identity_x25519.diffie_hellman(base_key).map_err(low)?;
    let dh3 = signed_prekey.diffie_hellman(base_key).map_err(low)?;
    let shared = match one_time_prekey {
        Some(opk) => {
            let dh4 = opk.diffie_hellman(base_key).map_err(low)?;
            SharedSecrets::derive(
                &[dh1.expose(), dh2.expose(), dh3.expose(), dh4.expose()],
                their_identity,
                our_identity,
                base_key,
            )
        }
        None => SharedSecrets::derive(
            &[dh1.expose(), dh2.expose(), dh3.expose()],
            their_identity,
            our_identity,
            base_key,
        ),
    };
    Ok(ResponderX3dh {
        shared,
        their_identity_key: *their_identity,
        base_key: *base_key,
    })
}

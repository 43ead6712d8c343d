//! Setup helpers and the "own primitives" workloads shared by the two bench binaries.
#![allow(dead_code, unreachable_pub)]

use std::hint::black_box;

use rand_chacha::ChaCha20Rng;
use zentalk_crypto::hash::{blake2b_256_parts, hmac_sha256};
use zentalk_crypto::kdf::hkdf_sha256;
use zentalk_crypto::{AeadKey, AeadSuite, IdentityKeyPair, IdentityPublicKey, X25519Secret};
use zentalk_ratchet::{Account, Message, Session, SessionConfig};

pub fn established(rng: &mut ChaCha20Rng) -> (Session, Session) {
    let alice = Account::new(rng);
    let mut bob = Account::new(rng);
    bob.generate_one_time_prekeys(rng, 1);
    let mut a = alice
        .create_outbound_session(rng, &bob.prekey_bundle(), SessionConfig::default())
        .unwrap();
    let Message::Prekey(p) = a.encrypt(rng, b"hi").unwrap() else {
        panic!()
    };
    let (mut b, _) = bob.create_inbound_session(&p).unwrap();
    let r = b.encrypt(rng, b"hi").unwrap();
    a.decrypt(&r).unwrap();
    (a, b)
}

pub fn vodozemac_established() -> (vodozemac::olm::Session, vodozemac::olm::Session) {
    use vodozemac::olm::{Account, OlmMessage, SessionConfig};
    let alice = Account::new();
    let mut bob = Account::new();
    bob.generate_one_time_keys(1);
    let otk = *bob.one_time_keys().values().next().unwrap();
    bob.mark_keys_as_published();
    let mut a =
        alice.create_outbound_session(SessionConfig::version_2(), bob.curve25519_key(), otk);
    let OlmMessage::PreKey(m) = a.encrypt(b"hi") else {
        panic!()
    };
    let mut b = bob
        .create_inbound_session(alice.curve25519_key(), &m)
        .unwrap()
        .session;
    let r = b.encrypt(b"hi");
    a.decrypt(&r).unwrap();
    (a, b)
}

pub const INFO_MSG: &[u8] = b"ZentalkMessageKeys";

/// One message's symmetric primitives on one side: two HMAC, one HKDF (key, nonce).
pub fn chain_step(ck: &[u8; 32]) -> (AeadKey, [u8; 12], [u8; 32]) {
    let mk = hmac_sha256(ck, &[0x01]);
    let next = hmac_sha256(ck, &[0x02]);
    let mut kn = [0u8; 44];
    hkdf_sha256(Some(&[0u8; 32]), &mk, INFO_MSG, &mut kn).unwrap();
    let key = AeadKey::from_slice(&kn[..32]).unwrap();
    (key, kn[32..].try_into().unwrap(), next)
}

/// Steady chain primitives for one message: two (HMAC, HMAC, HKDF) chain steps, one seal, one open.
pub fn steady_primitives(pt: &[u8]) -> Vec<u8> {
    let aad = [7u8; 104];
    let ck = [9u8; 32];
    let (k, n, _) = chain_step(black_box(&ck));
    let ct = AeadSuite::Aes256Gcm
        .seal(&k, &n, &aad, black_box(pt))
        .unwrap();
    let (k2, n2, _) = chain_step(black_box(&ck));
    AeadSuite::Aes256Gcm.open(&k2, &n2, &aad, &ct).unwrap()
}

/// Fixed keys for the ping-pong and setup primitives.
pub struct PrimitiveKeys {
    pub peer: X25519Secret,
    pub bob_id: IdentityKeyPair,
    pub bob_idx: X25519Secret,
    pub alice_id: IdentityKeyPair,
    pub alice_idx: X25519Secret,
    pub spk: X25519Secret,
    pub opk: X25519Secret,
    pub sig: zentalk_crypto::Signature,
}

impl PrimitiveKeys {
    pub fn new(rng: &mut ChaCha20Rng) -> Self {
        let bob_id = IdentityKeyPair::generate(rng);
        let alice_id = IdentityKeyPair::generate(rng);
        let spk = X25519Secret::generate(rng);
        Self {
            peer: X25519Secret::generate(rng),
            bob_idx: bob_id.to_x25519(),
            alice_idx: alice_id.to_x25519(),
            sig: bob_id.sign(spk.public_key().as_bytes()),
            bob_id,
            alice_id,
            spk,
            opk: X25519Secret::generate(rng),
        }
    }
}

/// One ping-pong message's primitives: keygen, two DH, two root HKDF, two chain steps, seal, open.
pub fn ping_pong_primitives(rng: &mut ChaCha20Rng, k: &PrimitiveKeys, pt: &[u8]) -> Vec<u8> {
    let aad = [7u8; 104];
    let rk = [3u8; 32];
    let new = X25519Secret::generate(rng);
    let dh = new.diffie_hellman(&k.peer.public_key()).unwrap();
    let mut out = [0u8; 64];
    hkdf_sha256(Some(&rk), dh.expose(), b"ZentalkRatchetRoot", &mut out).unwrap();
    let (key, n, _) = chain_step(&out[32..].try_into().unwrap());
    let ct = AeadSuite::Aes256Gcm
        .seal(&key, &n, &aad, black_box(pt))
        .unwrap();
    let dh2 = k.peer.diffie_hellman(&new.public_key()).unwrap();
    let mut out2 = [0u8; 64];
    hkdf_sha256(Some(&rk), dh2.expose(), b"ZentalkRatchetRoot", &mut out2).unwrap();
    let (k2, n2, _) = chain_step(&out2[32..].try_into().unwrap());
    AeadSuite::Aes256Gcm.open(&k2, &n2, &aad, &ct).unwrap()
}

/// Session setup primitives, both sides, in protocol order.
pub fn setup_primitives(rng: &mut ChaCha20Rng, k: &PrimitiveKeys, pt: &[u8]) -> Vec<u8> {
    let aad = [7u8; 104];
    let bob_pub = k.bob_id.public_key().to_bytes();
    let alice_pub = k.alice_id.public_key().to_bytes();
    // Alice.
    let ikb = IdentityPublicKey::from_bytes(&bob_pub).unwrap();
    ikb.verify(k.spk.public_key().as_bytes(), &k.sig).unwrap();
    let ikb_x = ikb.to_x25519();
    let ek = X25519Secret::generate(rng);
    let mut ikm = [0xFFu8; 160];
    ikm[32..64].copy_from_slice(
        k.alice_idx
            .diffie_hellman(&k.spk.public_key())
            .unwrap()
            .expose(),
    );
    ikm[64..96].copy_from_slice(ek.diffie_hellman(&ikb_x).unwrap().expose());
    ikm[96..128].copy_from_slice(ek.diffie_hellman(&k.spk.public_key()).unwrap().expose());
    ikm[128..].copy_from_slice(ek.diffie_hellman(&k.opk.public_key()).unwrap().expose());
    let mut sk = [0u8; 32];
    hkdf_sha256(Some(&[0u8; 32]), &ikm, b"ZentalkX3DH", &mut sk).unwrap();
    black_box(blake2b_256_parts(&[
        b"ZentalkSessionId",
        &aad[..64],
        ek.public_key().as_bytes(),
    ]));
    let rat = X25519Secret::generate(rng);
    let dh = rat.diffie_hellman(&k.spk.public_key()).unwrap();
    let mut out = [0u8; 64];
    hkdf_sha256(Some(&sk), dh.expose(), b"ZentalkRatchetRoot", &mut out).unwrap();
    let (key, n, _) = chain_step(&out[32..].try_into().unwrap());
    let ct = AeadSuite::Aes256Gcm.seal(&key, &n, &aad, pt).unwrap();
    // Bob.
    let ika = IdentityPublicKey::from_bytes(&alice_pub).unwrap();
    let ika_x = ika.to_x25519();
    let mut ikm2 = [0xFFu8; 160];
    ikm2[32..64].copy_from_slice(k.spk.diffie_hellman(&ika_x).unwrap().expose());
    ikm2[64..96].copy_from_slice(k.bob_idx.diffie_hellman(&ek.public_key()).unwrap().expose());
    ikm2[96..128].copy_from_slice(k.spk.diffie_hellman(&ek.public_key()).unwrap().expose());
    ikm2[128..].copy_from_slice(k.opk.diffie_hellman(&ek.public_key()).unwrap().expose());
    let mut sk2 = [0u8; 32];
    hkdf_sha256(Some(&[0u8; 32]), &ikm2, b"ZentalkX3DH", &mut sk2).unwrap();
    black_box(blake2b_256_parts(&[
        b"ZentalkSessionId",
        &aad[..64],
        ek.public_key().as_bytes(),
    ]));
    let dh2 = k.spk.diffie_hellman(&rat.public_key()).unwrap();
    let mut out2 = [0u8; 64];
    hkdf_sha256(Some(&sk2), dh2.expose(), b"ZentalkRatchetRoot", &mut out2).unwrap();
    let (k2, n2, _) = chain_step(&out2[32..].try_into().unwrap());
    AeadSuite::Aes256Gcm.open(&k2, &n2, &aad, &ct).unwrap()
}

/// Bob's side of a fresh setup, prepared outside the timed region.
pub fn fresh_bob(rng: &mut ChaCha20Rng) -> (Account, Vec<u8>) {
    let mut bob = Account::new(rng);
    bob.generate_one_time_prekeys(rng, 1);
    let bundle = bob.prekey_bundle().to_bytes();
    (bob, bundle)
}

/// The protocol's setup, both sides: parse bundle, X3DH, first message, inbound session.
pub fn zentalk_setup(
    rng: &mut ChaCha20Rng,
    alice: &Account,
    bob: &mut Account,
    bundle: &[u8],
    pt: &[u8],
) {
    let bundle = zentalk_ratchet::PrekeyBundle::from_bytes(bundle).unwrap();
    let mut a = alice
        .create_outbound_session(rng, &bundle, SessionConfig::default())
        .unwrap();
    let wire = a.encrypt(rng, pt).unwrap().to_bytes();
    let Message::Prekey(p) = Message::from_bytes(&wire).unwrap() else {
        panic!()
    };
    black_box(bob.create_inbound_session(&p).unwrap());
}

pub fn vodozemac_fresh_bob() -> (vodozemac::olm::Account, vodozemac::Curve25519PublicKey) {
    let mut bob = vodozemac::olm::Account::new();
    bob.generate_one_time_keys(1);
    let otk = *bob.one_time_keys().values().next().unwrap();
    (bob, otk)
}

pub fn vodozemac_setup(
    alice: &vodozemac::olm::Account,
    bob: &mut vodozemac::olm::Account,
    otk: vodozemac::Curve25519PublicKey,
    pt: &[u8],
) {
    use vodozemac::olm::{OlmMessage, SessionConfig};
    let mut a =
        alice.create_outbound_session(SessionConfig::version_2(), bob.curve25519_key(), otk);
    let OlmMessage::PreKey(m) = a.encrypt(pt) else {
        panic!()
    };
    black_box(
        bob.create_inbound_session(alice.curve25519_key(), &m)
            .unwrap(),
    );
}

//! RFC 9180 known-answer tests for the HPKE suites the envelope uses.
//!
//! Data: `tests/vectors/hpke_rfc9180.json` (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! AES-256-GCM and ChaCha20-Poly1305, modes Base and Auth). Auth-mode entries run through
//! `zentalk_crypto::hpke_auth` in both directions, with the vector's ephemeral key: `seal`
//! derives the ephemeral key pair from 32 bytes of its RNG exactly as the RFC's
//! `DeriveKeyPair(ikmE)`, so an RNG that yields `ikmE` reproduces `enc` and the ciphertext.
//! Every entry also runs the key schedule through the `hpke` crate's API (sequence numbers
//! 0..=3 and the exporter).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hpke::{
    Deserializable, Kem as _, OpModeR, Serializable,
    aead::{Aead, AesGcm256, ChaCha20Poly1305},
    kdf::HkdfSha256,
    kem::X25519HkdfSha256,
};
use rand_core::{CryptoRng, RngCore};
use serde::Deserialize;
use zentalk_crypto::{AeadSuite, X25519PublicKey, X25519Secret, hpke_auth};

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct Vector {
    mode: u8,
    kem_id: u16,
    kdf_id: u16,
    aead_id: u16,
    info: String,
    ikmE: String,
    ikmR: String,
    skRm: String,
    pkRm: String,
    skEm: String,
    pkEm: String,
    skSm: Option<String>,
    pkSm: Option<String>,
    enc: String,
    encryptions: Vec<Encryption>,
    exports: Vec<Export>,
}

#[derive(Deserialize)]
struct Encryption {
    aad: String,
    ct: String,
    nonce: String,
    pt: String,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct Export {
    exporter_context: String,
    L: usize,
    exported_value: String,
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn h32(s: &str) -> [u8; 32] {
    h(s).try_into().unwrap()
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("vectors/hpke_rfc9180.json");
    serde_json::from_str::<File>(text).unwrap().vectors
}

/// Test-only RNG that yields fixed bytes (the vector's `ikmE`), then refuses to go on.
struct FixedRng(Vec<u8>);

impl RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        assert!(dest.len() <= self.0.len(), "fixed RNG exhausted");
        let rest = self.0.split_off(dest.len());
        dest.copy_from_slice(&self.0);
        self.0 = rest;
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for FixedRng {}

fn suite(aead_id: u16) -> AeadSuite {
    match aead_id {
        2 => AeadSuite::Aes256Gcm,
        3 => AeadSuite::ChaCha20Poly1305,
        other => panic!("vector file holds aead_id {other}, which is not one of our suites"),
    }
}

#[test]
fn the_file_holds_what_we_expect() {
    let v = vectors();
    assert_eq!(v.len(), 4);
    for mode in [0u8, 2] {
        for aead in [2u16, 3] {
            assert!(v.iter().any(|x| x.mode == mode && x.aead_id == aead));
        }
    }
    for x in &v {
        assert_eq!((x.kem_id, x.kdf_id), (hpke_auth::KEM_ID, hpke_auth::KDF_ID));
        assert_eq!(x.encryptions.len(), 4);
        assert_eq!(x.enc, x.pkEm);
    }
}

#[test]
fn key_derivation_matches() {
    for v in vectors() {
        // DeriveKeyPair(ikm) as the RFC specifies, and our X25519 type agrees on the publics.
        let (sk_r, pk_r) = X25519HkdfSha256::derive_keypair(&h(&v.ikmR));
        assert_eq!(hex::encode(sk_r.to_bytes()), v.skRm);
        assert_eq!(hex::encode(pk_r.to_bytes()), v.pkRm);
        let (sk_e, pk_e) = X25519HkdfSha256::derive_keypair(&h(&v.ikmE));
        assert_eq!(hex::encode(sk_e.to_bytes()), v.skEm);
        assert_eq!(hex::encode(pk_e.to_bytes()), v.pkEm);
        let ours = X25519Secret::from_bytes(&h32(&v.skRm));
        assert_eq!(hex::encode(ours.public_key().to_bytes()), v.pkRm);
    }
}

#[test]
fn auth_mode_seal_through_our_wrapper_reproduces_enc_and_ciphertext() {
    let mut checked = 0;
    for v in vectors()
        .into_iter()
        .filter(|v| v.mode == hpke_auth::MODE_AUTH)
    {
        let s = suite(v.aead_id);
        assert_eq!(hpke_auth::aead_id(s), v.aead_id);
        let sender = X25519Secret::from_bytes(&h32(v.skSm.as_deref().unwrap()));
        assert_eq!(
            hex::encode(sender.public_key().to_bytes()),
            v.pkSm.clone().unwrap()
        );
        let recipient = X25519PublicKey::from_bytes(h32(&v.pkRm));
        // Single-shot = sequence number 0 = the first encryption.
        let e = &v.encryptions[0];
        let mut rng = FixedRng(h(&v.ikmE));
        let (enc, ct) = hpke_auth::seal(
            &mut rng,
            s,
            &sender,
            &recipient,
            &h(&v.info),
            &h(&e.aad),
            &h(&e.pt),
        )
        .unwrap();
        assert!(rng.0.is_empty(), "seal drew exactly ikmE from the RNG");
        assert_eq!(hex::encode(enc), v.enc);
        assert_eq!(hex::encode(ct), e.ct);
        checked += 1;
    }
    assert_eq!(checked, 2);
}

#[test]
fn auth_mode_open_through_our_wrapper() {
    for v in vectors()
        .into_iter()
        .filter(|v| v.mode == hpke_auth::MODE_AUTH)
    {
        let s = suite(v.aead_id);
        let recipient = X25519Secret::from_bytes(&h32(&v.skRm));
        let sender = X25519PublicKey::from_bytes(h32(v.pkSm.as_deref().unwrap()));
        let e = &v.encryptions[0];
        let pt = hpke_auth::open(
            s,
            &recipient,
            &sender,
            &h32(&v.enc),
            &h(&v.info),
            &h(&e.aad),
            &h(&e.ct),
        )
        .unwrap();
        assert_eq!(hex::encode(pt), e.pt);
        // The same ciphertext under a different claimed sender does not open.
        let wrong = X25519PublicKey::from_bytes(h32(&v.pkRm));
        assert!(
            hpke_auth::open(
                s,
                &recipient,
                &wrong,
                &h32(&v.enc),
                &h(&v.info),
                &h(&e.aad),
                &h(&e.ct)
            )
            .is_err()
        );
    }
}

fn run_key_schedule<A: Aead>(v: &Vector) {
    type Kem = X25519HkdfSha256;
    let sk_r = <Kem as hpke::Kem>::PrivateKey::from_bytes(&h(&v.skRm)).unwrap();
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&h(&v.enc)).unwrap();
    let pk_s = v
        .pkSm
        .as_deref()
        .map(|pk| <Kem as hpke::Kem>::PublicKey::from_bytes(&h(pk)).unwrap());
    let mode = match (v.mode, pk_s) {
        (0, None) => OpModeR::Base,
        (2, Some(pk)) => OpModeR::Auth(pk),
        (m, _) => panic!("unexpected mode {m}"),
    };
    let mut ctx =
        hpke::setup_receiver::<A, HkdfSha256, Kem>(&mode, &sk_r, &enc, &h(&v.info)).unwrap();
    for (seq, e) in v.encryptions.iter().enumerate() {
        let pt = ctx.open(&h(&e.ct), &h(&e.aad)).unwrap();
        assert_eq!(hex::encode(pt), e.pt, "mode {} seq {seq}", v.mode);
        assert_eq!(e.nonce.len(), 24);
    }
    for x in &v.exports {
        let mut out = vec![0u8; x.L];
        ctx.export(&h(&x.exporter_context), &mut out).unwrap();
        assert_eq!(hex::encode(out), x.exported_value);
    }
}

#[test]
fn key_schedule_open_and_export_for_base_and_auth_modes() {
    for v in vectors() {
        match v.aead_id {
            2 => run_key_schedule::<AesGcm256>(&v),
            3 => run_key_schedule::<ChaCha20Poly1305>(&v),
            other => panic!("unexpected aead {other}"),
        }
    }
}

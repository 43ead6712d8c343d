//! `zentalk demo`: an in-memory walk through the layers that exist.

use rand_core::OsRng;
use zentalk_crypto::{AeadSuite, IdentityKeyPair, X25519Secret, kdf};

/// Errors are reported, never unwrapped: the demo is a user-facing command.
pub(crate) fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = OsRng;
    println!("ZenTalk demo: the layers built so far, in one process.\n");

    println!("[crypto] identities");
    let alice = IdentityKeyPair::generate(&mut rng);
    let bob = IdentityKeyPair::generate(&mut rng);
    println!("  alice address {}", alice.public_key().address());
    println!("  bob   address {}", bob.public_key().address());

    let statement = b"alice vouches for this ephemeral key";
    let sig = alice.sign(statement);
    alice.public_key().verify(statement, &sig)?;
    println!("  alice's Ed25519 signature verifies under her identity key");

    println!("[crypto] key agreement and AEAD");
    let eph = X25519Secret::generate(&mut rng);
    let shared_a = eph.diffie_hellman(&bob.public_key().to_x25519())?;
    let shared_b = bob.to_x25519().diffie_hellman(&eph.public_key())?;
    let key_a: [u8; 32] = kdf::hkdf_sha256_array(None, shared_a.expose(), b"zentalk demo")?;
    let key_b: [u8; 32] = kdf::hkdf_sha256_array(None, shared_b.expose(), b"zentalk demo")?;
    let (mut ka, mut kb) = (key_a, key_b);
    let (key_a, key_b) = (
        zentalk_crypto::AeadKey::new(&mut ka),
        zentalk_crypto::AeadKey::new(&mut kb),
    );
    let nonce = [0u8; zentalk_crypto::NONCE_LEN];
    let ciphertext = AeadSuite::Aes256Gcm.seal(&key_a, &nonce, b"", b"hello bob")?;
    let plaintext = AeadSuite::Aes256Gcm.open(&key_b, &nonce, b"", &ciphertext)?;
    println!(
        "  X25519 to bob's identity, HKDF-SHA256, AES-256-GCM: {} ciphertext bytes -> {:?}",
        ciphertext.len(),
        String::from_utf8_lossy(&plaintext)
    );

    println!(
        "\nNot built yet: ratchet sessions, onion routing, DHT, storage and the relay network."
    );
    Ok(())
}

//! A sealed envelope from Alice to Bob, end to end: seal, encode, parse, open, and the three
//! things that must fail (a replay, a tampered byte, the wrong recipient).
//!
//! Run with `cargo run --example sealed_envelope`.

use zentalk_crypto::envelope::{Envelope, ReplayWindow};
use zentalk_crypto::{AeadSuite, IdentityKeyPair};

#[allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "an example is a program: it owns the OS RNG and reads the clock, then passes both in"
)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = rand_core::OsRng;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();

    let alice = IdentityKeyPair::generate(&mut rng);
    let bob = IdentityKeyPair::generate(&mut rng);
    let mallory = IdentityKeyPair::generate(&mut rng);
    println!("alice   {}", alice.public_key().address());
    println!("bob     {}", bob.public_key().address());

    let message = b"Meet at the usual place at noon.";
    let envelope = Envelope::seal(
        &mut rng,
        AeadSuite::default(),
        &alice,
        &bob.public_key(),
        now,
        message,
    )?;
    let bytes = envelope.to_bytes();
    println!(
        "sealed {} message bytes into a {}-byte envelope (id {}, suite {:?})",
        message.len(),
        bytes.len(),
        envelope.header().id,
        envelope.header().suite
    );

    // Bob receives bytes from any transport, parses them and looks up the sender by key id.
    let received = Envelope::from_bytes(&bytes)?;
    assert_eq!(received.header().sender, alice.public_key().address());
    let mut window = ReplayWindow::default();
    let opened = received.open_and_accept(&bob, &alice.public_key(), &mut window, now)?;
    println!("bob opened: {:?}", String::from_utf8_lossy(&opened));

    match received.open_and_accept(&bob, &alice.public_key(), &mut window, now) {
        Err(e) => println!("the same envelope again: refused ({e})"),
        Ok(_) => return Err("a replay was accepted".into()),
    }

    let mut tampered = bytes.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    match Envelope::from_bytes(&tampered)?.open(&bob, &alice.public_key()) {
        Err(e) => println!("one flipped bit: refused ({e})"),
        Ok(_) => return Err("a tampered envelope opened".into()),
    }

    match received.open(&mallory, &alice.public_key()) {
        Err(e) => println!("mallory tries to open it: refused ({e})"),
        Ok(_) => return Err("the wrong recipient opened the envelope".into()),
    }
    Ok(())
}

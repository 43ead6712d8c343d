//! Two parties talk over zentalk-ratchet: X3DH from a published bundle, replies with a DH step
//! each time the speaker changes, out-of-order delivery, a replay refused, and a session
//! stored as an encrypted pickle and restored mid-conversation.
//!
//! Run: `cargo run --example ratchet_pair`

use zentalk_ratchet::{Account, Message, PrekeyBundle, Session, SessionConfig};

#[allow(
    clippy::disallowed_types,
    reason = "an example is a top-level binary: the one place that creates an OsRng"
)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = rand_core::OsRng;

    // Bob publishes a bundle (identity key, signed prekey, one-time prekey).
    let alice = Account::new(&mut rng);
    let mut bob = Account::new(&mut rng);
    bob.generate_one_time_prekeys(&mut rng, 5);
    let published = bob.prekey_bundle().to_bytes();
    println!("Bob's bundle: {} bytes", published.len());

    // Alice fetches it, checks the signature and writes first.
    let bundle = PrekeyBundle::from_bytes(&published)?;
    let mut a = alice.create_outbound_session(&mut rng, &bundle, SessionConfig::default())?;
    let first = a.encrypt(&mut rng, b"Hi Bob, it's Alice.")?.to_bytes();
    let Message::Prekey(initial) = Message::from_bytes(&first)? else {
        return Err("the first message is an initial message".into());
    };
    let (mut b, text) = bob.create_inbound_session(&initial)?;
    println!("Bob reads:   {}", String::from_utf8_lossy(&text));
    println!("session id:  {}", hex(&b.session_id()));

    // Bob replies: a fresh ratchet key (DH step).
    let reply = b.encrypt(&mut rng, b"Hello Alice!")?.to_bytes();
    println!(
        "Alice reads: {}",
        String::from_utf8_lossy(&a.decrypt(&Message::from_bytes(&reply)?)?)
    );

    // Alice sends three messages; the network delivers them as 3, 1, 2.
    let sent: Vec<Vec<u8>> = ["one", "two", "three"]
        .iter()
        .map(|t| a.encrypt(&mut rng, t.as_bytes()).map(|m| m.to_bytes()))
        .collect::<Result<_, _>>()?;
    for i in [2, 0, 1] {
        let text = b.decrypt(&Message::from_bytes(&sent[i])?)?;
        println!(
            "Bob reads (out of order): {}",
            String::from_utf8_lossy(&text)
        );
    }
    // A replay is refused and changes nothing.
    match b.decrypt(&Message::from_bytes(&sent[0])?) {
        Err(e) => println!("replay refused: {e}"),
        Ok(_) => return Err("a replay was accepted".into()),
    }

    // Bob stores his session encrypted under a 32-byte key, restores it, and carries on.
    let pickle_key = [0x24u8; 32];
    let stored = b.pickle(&mut rng, &pickle_key);
    println!(
        "Bob's pickle: {} bytes (version {}, encrypted)",
        stored.len(),
        stored[0]
    );
    let mut b = Session::from_pickle(&stored, &pickle_key)?;
    let late = b
        .encrypt(&mut rng, b"Still here after a restart.")?
        .to_bytes();
    println!(
        "Alice reads: {}",
        String::from_utf8_lossy(&a.decrypt(&Message::from_bytes(&late)?)?)
    );
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

//! The `Debug` output of every secret type contains no key bytes: not as lowercase or
//! uppercase hex, not as the decimal array `{:?}` prints, and not as a hex prefix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zentalk_crypto::{AeadKey, IdentityKeyPair, SecretBytes, X25519Secret};

fn forms(secret: &[u8]) -> Vec<String> {
    let lower = hex::encode(secret);
    vec![
        lower.clone(),
        lower.to_uppercase(),
        lower[..16].to_string(),
        format!("{secret:?}"),
        format!("{:?}", &secret[..4]),
        secret
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        secret
            .iter()
            .map(|b| format!("{b:#04x}"))
            .collect::<Vec<_>>()
            .join(", "),
    ]
}

fn assert_redacted(debug: &str, secret: &[u8]) {
    for form in forms(secret) {
        assert!(
            !debug.contains(&form),
            "Debug output {debug:?} leaks {form:?}"
        );
    }
    // Pretty-printed Debug too.
    assert!(!debug.is_empty());
}

#[test]
fn secret_types_print_no_key_bytes() {
    let seed = 0x5EC7E7;
    println!("rng seed {seed}");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);

    let s32 = SecretBytes::<32>::random(&mut rng);
    assert_redacted(&format!("{s32:?}"), s32.expose());
    assert_redacted(&format!("{s32:#?}"), s32.expose());
    let s64 = SecretBytes::<64>::random(&mut rng);
    assert_redacted(&format!("{s64:?}"), s64.expose());

    let key = AeadKey::random(&mut rng);
    assert_redacted(&format!("{key:?}"), key.expose());

    let id = IdentityKeyPair::generate(&mut rng);
    let dbg = format!("{id:?} {id:#?}");
    assert_redacted(&dbg, id.seed().as_ref());
    // Nor the X25519 scalar derived from it.
    assert_redacted(&dbg, id.to_x25519().to_secret_bytes().expose());
    // The public key is what it shows instead.
    assert!(dbg.contains(&hex::encode(id.public_key().as_bytes())));

    let x = X25519Secret::generate(&mut rng);
    let dbg = format!("{x:?} {x:#?}");
    assert_redacted(&dbg, x.to_secret_bytes().expose());
    assert!(dbg.contains(&hex::encode(x.public_key().as_bytes())));

    let y = X25519Secret::generate(&mut rng);
    let shared = x.diffie_hellman(&y.public_key()).unwrap();
    assert_redacted(&format!("{shared:?} {shared:#?}"), shared.expose());
}

#[test]
fn the_check_itself_catches_a_leak() {
    // A Debug that prints the bytes is caught, so the test above can fail.
    let secret = [0xABu8; 32];
    let leaky = format!("Leaky({secret:?})");
    let caught = std::panic::catch_unwind(|| assert_redacted(&leaky, &secret));
    assert!(caught.is_err());
    let leaky_hex = format!("Leaky({})", hex::encode(secret));
    let caught = std::panic::catch_unwind(|| assert_redacted(&leaky_hex, &secret));
    assert!(caught.is_err());
}

//! zentalk-ratchet against its own primitives and vodozemac 0.9, in the same run.
//!
//! Build: `cargo bench -p zentalk-ratchet --no-run`, then run the printed binary with
//! `--bench --warm-up-time 1 --measurement-time 3` (see docs/benchmarks/zentalk-ratchet.md).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zentalk_crypto::hash::{blake2b_256_parts, hmac_sha256};
use zentalk_crypto::kdf::hkdf_sha256;
use zentalk_crypto::{AeadKey, AeadSuite, IdentityKeyPair, IdentityPublicKey, X25519Secret};
use zentalk_ratchet::group::{InboundGroupSession, OutboundGroupSession};
use zentalk_ratchet::{Account, Message, Session, SessionConfig};

fn established(rng: &mut ChaCha20Rng) -> (Session, Session) {
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

fn vodozemac_established() -> (vodozemac::olm::Session, vodozemac::olm::Session) {
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

const INFO_MSG: &[u8] = b"ZentalkMessageKeys";

/// One message's symmetric primitives on one side: two HMAC, one HKDF (key, nonce).
fn chain_step(ck: &[u8; 32]) -> (AeadKey, [u8; 12], [u8; 32]) {
    let mk = hmac_sha256(ck, &[0x01]);
    let next = hmac_sha256(ck, &[0x02]);
    let mut kn = [0u8; 44];
    hkdf_sha256(Some(&[0u8; 32]), &mk, INFO_MSG, &mut kn).unwrap();
    let key = AeadKey::from_slice(&kn[..32]).unwrap();
    (key, kn[32..].try_into().unwrap(), next)
}

fn steady_chain(c: &mut Criterion) {
    for size in [100usize, 1024] {
        let mut g = c.benchmark_group(format!("steady_chain_{size}B"));
        let pt = vec![0x5au8; size];
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        // Alice keeps sending on one chain: no DH step inside the loop.
        let (mut a, mut b) = established(&mut rng);
        g.bench_function("zentalk", |bench| {
            bench.iter(|| {
                let m = a.encrypt(&mut rng, black_box(&pt)).unwrap();
                black_box(b.decrypt(&m).unwrap())
            })
        });
        let aad = [7u8; 104];
        let ck = [9u8; 32];
        g.bench_function("primitives", |bench| {
            bench.iter(|| {
                let (k, n, _) = chain_step(black_box(&ck));
                let ct = AeadSuite::Aes256Gcm
                    .seal(&k, &n, &aad, black_box(&pt))
                    .unwrap();
                let (k2, n2, _) = chain_step(black_box(&ck));
                black_box(AeadSuite::Aes256Gcm.open(&k2, &n2, &aad, &ct).unwrap())
            })
        });
        let (mut va, mut vb) = vodozemac_established();
        g.bench_function("vodozemac", |bench| {
            bench.iter(|| {
                let m = va.encrypt(black_box(&pt));
                black_box(vb.decrypt(&m).unwrap())
            })
        });
        g.finish();
    }
}

fn ping_pong(c: &mut Criterion) {
    let mut g = c.benchmark_group("ping_pong_100B_per_message");
    let pt = vec![0x5au8; 100];
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let (mut a, mut b) = established(&mut rng);
    // Each iteration: one message, alternately A->B and B->A, so every message has a DH step.
    let mut turn = false;
    g.bench_function("zentalk", |bench| {
        bench.iter(|| {
            turn = !turn;
            let (s, r) = if turn {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            let m = s.encrypt(&mut rng, black_box(&pt)).unwrap();
            black_box(r.decrypt(&m).unwrap())
        })
    });
    let peer = X25519Secret::generate(&mut rng);
    let aad = [7u8; 104];
    let rk = [3u8; 32];
    g.bench_function("primitives", |bench| {
        bench.iter(|| {
            // Sender: keygen, DH, root HKDF, chain step, seal.
            let new = X25519Secret::generate(&mut rng);
            let dh = new.diffie_hellman(&peer.public_key()).unwrap();
            let mut out = [0u8; 64];
            hkdf_sha256(Some(&rk), dh.expose(), b"ZentalkRatchetRoot", &mut out).unwrap();
            let (k, n, _) = chain_step(&out[32..].try_into().unwrap());
            let ct = AeadSuite::Aes256Gcm
                .seal(&k, &n, &aad, black_box(&pt))
                .unwrap();
            // Receiver: DH, root HKDF, chain step, open.
            let dh2 = peer.diffie_hellman(&new.public_key()).unwrap();
            let mut out2 = [0u8; 64];
            hkdf_sha256(Some(&rk), dh2.expose(), b"ZentalkRatchetRoot", &mut out2).unwrap();
            let (k2, n2, _) = chain_step(&out2[32..].try_into().unwrap());
            black_box(AeadSuite::Aes256Gcm.open(&k2, &n2, &aad, &ct).unwrap())
        })
    });
    let (mut va, mut vb) = vodozemac_established();
    let mut vturn = false;
    g.bench_function("vodozemac", |bench| {
        bench.iter(|| {
            vturn = !vturn;
            let (s, r) = if vturn {
                (&mut va, &mut vb)
            } else {
                (&mut vb, &mut va)
            };
            let m = s.encrypt(black_box(&pt));
            black_box(r.decrypt(&m).unwrap())
        })
    });
    g.finish();
}

fn session_setup(c: &mut Criterion) {
    let mut g = c.benchmark_group("session_setup_both_sides");
    let pt = vec![0x5au8; 100];
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let alice = Account::new(&mut rng);
    let mut setup_rng = ChaCha20Rng::seed_from_u64(4);
    g.bench_function("zentalk", |bench| {
        bench.iter_batched(
            || {
                let mut bob = Account::new(&mut setup_rng);
                bob.generate_one_time_prekeys(&mut setup_rng, 1);
                let bundle = bob.prekey_bundle().to_bytes();
                (bob, bundle)
            },
            |(mut bob, bundle)| {
                let bundle = zentalk_ratchet::PrekeyBundle::from_bytes(&bundle).unwrap();
                let mut a = alice
                    .create_outbound_session(&mut rng, &bundle, SessionConfig::default())
                    .unwrap();
                let wire = a.encrypt(&mut rng, &pt).unwrap().to_bytes();
                let Message::Prekey(p) = Message::from_bytes(&wire).unwrap() else {
                    panic!()
                };
                black_box(bob.create_inbound_session(&p).unwrap())
            },
            BatchSize::SmallInput,
        )
    });
    // The same primitives, in the same order, without the protocol around them.
    let bob_id = IdentityKeyPair::generate(&mut rng);
    let bob_idx = bob_id.to_x25519();
    let alice_id = IdentityKeyPair::generate(&mut rng);
    let alice_idx = alice_id.to_x25519();
    let spk = X25519Secret::generate(&mut rng);
    let opk = X25519Secret::generate(&mut rng);
    let sig = bob_id.sign(spk.public_key().as_bytes());
    let bob_pub = bob_id.public_key().to_bytes();
    let alice_pub = alice_id.public_key().to_bytes();
    let aad = [7u8; 104];
    g.bench_function("primitives", |bench| {
        bench.iter(|| {
            // Alice.
            let ikb = IdentityPublicKey::from_bytes(&bob_pub).unwrap();
            ikb.verify(spk.public_key().as_bytes(), &sig).unwrap();
            let ikb_x = ikb.to_x25519();
            let ek = X25519Secret::generate(&mut rng);
            let mut ikm = [0xFFu8; 160];
            ikm[32..64].copy_from_slice(
                alice_idx
                    .diffie_hellman(&spk.public_key())
                    .unwrap()
                    .expose(),
            );
            ikm[64..96].copy_from_slice(ek.diffie_hellman(&ikb_x).unwrap().expose());
            ikm[96..128].copy_from_slice(ek.diffie_hellman(&spk.public_key()).unwrap().expose());
            ikm[128..].copy_from_slice(ek.diffie_hellman(&opk.public_key()).unwrap().expose());
            let mut sk = [0u8; 32];
            hkdf_sha256(Some(&[0u8; 32]), &ikm, b"ZentalkX3DH", &mut sk).unwrap();
            black_box(blake2b_256_parts(&[
                b"ZentalkSessionId",
                &aad[..64],
                ek.public_key().as_bytes(),
            ]));
            let rat = X25519Secret::generate(&mut rng);
            let dh = rat.diffie_hellman(&spk.public_key()).unwrap();
            let mut out = [0u8; 64];
            hkdf_sha256(Some(&sk), dh.expose(), b"ZentalkRatchetRoot", &mut out).unwrap();
            let (k, n, _) = chain_step(&out[32..].try_into().unwrap());
            let ct = AeadSuite::Aes256Gcm.seal(&k, &n, &aad, &pt).unwrap();
            // Bob.
            let ika = IdentityPublicKey::from_bytes(&alice_pub).unwrap();
            let ika_x = ika.to_x25519();
            let mut ikm2 = [0xFFu8; 160];
            ikm2[32..64].copy_from_slice(spk.diffie_hellman(&ika_x).unwrap().expose());
            ikm2[64..96]
                .copy_from_slice(bob_idx.diffie_hellman(&ek.public_key()).unwrap().expose());
            ikm2[96..128].copy_from_slice(spk.diffie_hellman(&ek.public_key()).unwrap().expose());
            ikm2[128..].copy_from_slice(opk.diffie_hellman(&ek.public_key()).unwrap().expose());
            let mut sk2 = [0u8; 32];
            hkdf_sha256(Some(&[0u8; 32]), &ikm2, b"ZentalkX3DH", &mut sk2).unwrap();
            black_box(blake2b_256_parts(&[
                b"ZentalkSessionId",
                &aad[..64],
                ek.public_key().as_bytes(),
            ]));
            let dh2 = spk.diffie_hellman(&rat.public_key()).unwrap();
            let mut out2 = [0u8; 64];
            hkdf_sha256(Some(&sk2), dh2.expose(), b"ZentalkRatchetRoot", &mut out2).unwrap();
            let (k2, n2, _) = chain_step(&out2[32..].try_into().unwrap());
            black_box(AeadSuite::Aes256Gcm.open(&k2, &n2, &aad, &ct).unwrap())
        })
    });
    g.bench_function("vodozemac", |bench| {
        use vodozemac::olm::{Account, OlmMessage, SessionConfig};
        let valice = Account::new();
        bench.iter_batched(
            || {
                let mut bob = Account::new();
                bob.generate_one_time_keys(1);
                let otk = *bob.one_time_keys().values().next().unwrap();
                (bob, otk)
            },
            |(mut bob, otk)| {
                let mut a = valice.create_outbound_session(
                    SessionConfig::version_2(),
                    bob.curve25519_key(),
                    otk,
                );
                let OlmMessage::PreKey(m) = a.encrypt(&pt) else {
                    panic!()
                };
                black_box(
                    bob.create_inbound_session(valice.curve25519_key(), &m)
                        .unwrap(),
                )
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn group(c: &mut Criterion) {
    let mut g = c.benchmark_group("group_1KiB");
    let pt = vec![0x5au8; 1024];
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut out = OutboundGroupSession::new(&mut rng, AeadSuite::default());
    let mut inb = InboundGroupSession::new(&out.distribution());
    g.bench_function("zentalk", |bench| {
        bench.iter(|| {
            let m = out.encrypt(black_box(&pt)).unwrap();
            black_box(inb.decrypt(&m).unwrap())
        })
    });
    let mut vout =
        vodozemac::megolm::GroupSession::new(vodozemac::megolm::SessionConfig::version_1());
    let mut vin = vodozemac::megolm::InboundGroupSession::new(
        &vout.session_key(),
        vodozemac::megolm::SessionConfig::version_1(),
    );
    g.bench_function("vodozemac_megolm", |bench| {
        bench.iter(|| {
            let m = vout.encrypt(black_box(&pt));
            black_box(vin.decrypt(&m).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, steady_chain, ping_pong, session_setup, group);
criterion_main!(benches);

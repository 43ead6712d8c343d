//! Arbitrary bytes never panic any decoder of the client, nor a client that receives them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zentalk_client::payload::open_outer;
use zentalk_client::{Client, ContactCard, Inner};
use zentalk_crypto::NodeId;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2100)) {
        let _ = Inner::from_bytes(&bytes);
        let _ = ContactCard::from_bytes(&bytes);
        let _ = open_outer(&bytes);
    }

    #[test]
    fn a_client_survives_arbitrary_deliveries(
        bytes in proptest::collection::vec(any::<u8>(), 0..2100),
        version_one in any::<bool>(),
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut c = Client::new(&mut rng, NodeId::from_bytes([1; 32]), vec![]);
        let mut bytes = bytes;
        if version_one && !bytes.is_empty() {
            bytes[0] = zentalk_client::PAYLOAD_VERSION;
        }
        let mb = c.contact_mailbox().id();
        prop_assert!(c.handle_delivery(&mut rng, &mb, &bytes, 0).is_err());
        prop_assert!(c.poll_outgoing().is_none());
    }
}

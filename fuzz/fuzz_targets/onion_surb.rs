//! Arbitrary bytes into reply-block parsing and reply opening: never a panic; a parsed block
//! re-encodes to exactly its input and can always be used once; a reply payload that was not
//! produced through the block opens to a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zentalk_onion::{PAYLOAD_LEN, ReplyKeyStore, ReplyPayload, Surb, SurbId};

fuzz_target!(|data: &[u8]| {
    if let Ok(surb) = Surb::from_bytes(data) {
        assert_eq!(surb.to_bytes(), data);
        let _ = format!("{surb:?}");
        let reply = surb.into_reply(b"fuzz");
        assert!(reply.is_ok());
    }
    match ReplyPayload::from_bytes(data) {
        Ok(payload) => {
            assert_eq!(data.len(), PAYLOAD_LEN);
            let mut store = ReplyKeyStore::new(1);
            let mut id = [0u8; 32];
            let n = data.len().min(32);
            id[..n].copy_from_slice(&data[..n]);
            assert!(store.open_reply(&SurbId::from_bytes(id), &payload).is_err());
        }
        Err(_) => assert_ne!(data.len(), PAYLOAD_LEN),
    }
});

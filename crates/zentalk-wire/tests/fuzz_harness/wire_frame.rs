//! The one harness of the `wire_frame` fuzz target, shared by the target
//! (fuzz/fuzz_targets/wire_frame.rs) and the corpus replay test
//! (crates/zentalk-wire/tests/fuzz_corpus.rs), both of which include this file with
//! `#[path = ...] mod harness;`, so the two cannot drift apart.
//!
//! Arbitrary bytes into zentalk-wire's decoders: the one-shot `Frame::decode_exact`, the
//! streaming `decode` over the whole buffer, and the streaming decoder fed the same bytes in
//! chunks whose sizes the first input byte chooses. None may panic, and the chunked stream must
//! give exactly the frames and the outcome of the whole one.

use zentalk_wire::bytes::{Bytes, BytesMut};
use zentalk_wire::{Body, Frame, WireError, decode, decode_eof};

/// Frames decoded from a stream and how it ended.
pub(crate) type Outcome = (Vec<Frame>, Result<(), WireError>);

/// Feeds `chunks` to the streaming decoder, then ends the stream.
pub(crate) fn feed(chunks: &mut dyn Iterator<Item = &[u8]>) -> Outcome {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => return (frames, Err(e)),
            }
        }
    }
    let end = decode_eof(&mut buf).map(|rest| assert!(rest.is_none()));
    (frames, end)
}

/// Splits `data` into chunks of 1..=64 bytes chosen by a small LCG seeded with `seed`.
fn chunks(seed: u8, data: &[u8]) -> Vec<&[u8]> {
    let mut state = u32::from(seed) | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = ((state >> 16) % 64 + 1) as usize;
        let (head, tail) = rest.split_at(n.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

/// The whole check for one input (first byte: chunking seed, rest: the stream). Returns the
/// stream and what decoding it whole gave, for callers that check more.
pub(crate) fn harness(data: &[u8]) -> (&[u8], Outcome) {
    let (seed, stream) = match data.split_first() {
        Some((seed, stream)) => (*seed, stream),
        None => (0, data),
    };

    let exact = Frame::decode_exact(stream);
    assert_eq!(
        exact,
        Frame::decode_exact_bytes(Bytes::copy_from_slice(stream))
    );

    let whole = feed(&mut std::iter::once(stream));
    for frame in &whole.0 {
        assert_eq!(Frame::decode_exact(&frame.to_bytes()).as_ref(), Ok(frame));
        if let Ok(body) = Body::decode(frame) {
            assert_eq!(body.message_type(), frame.message_type());
        }
    }
    if let Ok(frame) = &exact {
        assert_eq!(whole.0.as_slice(), std::slice::from_ref(frame));
        assert_eq!(whole.1, Ok(()));
    }

    let chunked = feed(&mut chunks(seed, stream).into_iter());
    assert_eq!(chunked, whole);
    (stream, whole)
}

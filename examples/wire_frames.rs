//! ZenTalk wire frames end to end: encode a few frames (a Ping, a MailboxPut, an onion packet),
//! send them as one byte stream cut into uneven pieces, take them off the stream with the
//! streaming decoder, and dispatch each body by its type. Then the two things a receiver must
//! refuse: a header announcing a body over its type's limit (refused before anything is
//! allocated) and a datagram with trailing bytes.
//!
//! Run with `cargo run --example wire_frames`.

use zentalk_wire::bytes::{Bytes, BytesMut};
use zentalk_wire::{
    Body, Flags, Frame, HEADER_LEN, MAX_ONION_PACKET_LEN, MessageId, MessageType, WireError,
    decode, decode_eof, proto,
};

#[allow(
    clippy::disallowed_types,
    reason = "an example is a top-level binary: the one place that creates an OsRng"
)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = rand_core::OsRng;

    // Three frames, each with a fresh random message id.
    let ping = Frame::new(MessageId::random(&mut rng), &proto::Ping { nonce: 7 })?;
    let put = Frame::new(
        MessageId::random(&mut rng),
        &proto::MailboxPut {
            mailbox_id: Bytes::from(vec![0x11; 32]),
            message_id: Bytes::from(vec![0x22; 16]),
            payload: Bytes::from_static(b"end-to-end ciphertext goes here"),
        },
    )?;
    let onion = Frame::onion_packet(
        MessageId::random(&mut rng),
        Flags::EMPTY,
        Bytes::from(vec![0xab; 2048]),
    )?;

    let mut stream = BytesMut::new();
    for frame in [&ping, &put, &onion] {
        frame.encode_into(&mut stream);
    }
    println!("sent 3 frames, {} bytes on the stream", stream.len());

    // The receiver gets the stream in uneven pieces.
    let mut received = BytesMut::new();
    let mut decoded = 0;
    for piece in stream.chunks(700) {
        received.extend_from_slice(piece);
        while let Some(frame) = decode(&mut received)? {
            decoded += 1;
            match Body::decode(&frame)? {
                Body::Ping(p) => println!(
                    "  {} id {}: nonce {}",
                    frame.message_type(),
                    frame.id(),
                    p.nonce
                ),
                Body::MailboxPut(p) => println!(
                    "  {} id {}: {} payload bytes for mailbox {:02x?}..",
                    frame.message_type(),
                    frame.id(),
                    p.payload.len(),
                    &p.mailbox_id[..4]
                ),
                Body::OnionPacket(packet) => println!(
                    "  {} id {}: {} raw bytes (limit {MAX_ONION_PACKET_LEN})",
                    frame.message_type(),
                    frame.id(),
                    packet.len()
                ),
                other => println!("  unexpected {}", other.message_type()),
            }
        }
    }
    assert_eq!(decode_eof(&mut received)?, None);
    println!("received {decoded} frames, stream ended cleanly");

    // A peer announces a 4 GiB Ping: refused from the header alone.
    let mut evil = BytesMut::from(&ping.to_bytes()[..HEADER_LEN]);
    evil[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    let capacity = evil.capacity();
    match decode(&mut evil) {
        Err(e @ WireError::BodyTooLong { .. }) => println!(
            "refused: {e} (buffer capacity still {capacity} bytes; close the link: fatal = {})",
            e.is_fatal_to_stream()
        ),
        other => return Err(format!("expected BodyTooLong, got {other:?}").into()),
    }

    // A datagram must be exactly one frame.
    let mut datagram = ping.to_bytes().to_vec();
    datagram.push(0);
    match Frame::decode_exact(&datagram) {
        Err(e @ WireError::TrailingBytes { .. }) => println!("refused: {e}"),
        other => return Err(format!("expected TrailingBytes, got {other:?}").into()),
    }
    assert_eq!(ping.message_type(), MessageType::Ping);
    Ok(())
}

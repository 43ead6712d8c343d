//! Encode and decode of 2 KiB frames: an onion-packet-sized raw body and a protobuf
//! MailboxPut, beside two baselines (prost decoding the same body without a frame, and a plain
//! 2 KiB copy) so the ratio survives a noisy machine.
//!
//! Run: `cargo bench -p zentalk-wire --no-run`, then the printed binary with
//! `--bench --warm-up-time 1 --measurement-time 3`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use zentalk_wire::{Flags, Frame, MessageId, decode, proto};

const BODY_LEN: usize = 2048;
/// Frames per decode batch (so buffer setup is outside the timed loop).
const BATCH: usize = 256;

fn onion_body() -> Bytes {
    Bytes::from((0..BODY_LEN).map(|i| i as u8).collect::<Vec<u8>>())
}

/// A MailboxPut whose encoded body is exactly 2048 bytes.
fn mailbox_put() -> proto::MailboxPut {
    let mut put = proto::MailboxPut {
        mailbox_id: Bytes::from(vec![7u8; 32]),
        message_id: Bytes::from(vec![9u8; 16]),
        payload: Bytes::new(),
    };
    let overhead = put.encoded_len() + 3; // tag + 2-byte length varint for the payload
    put.payload = Bytes::from(vec![0x5a; BODY_LEN - overhead]);
    assert_eq!(put.encoded_len(), BODY_LEN);
    put
}

fn stream_of(frame: &Bytes) -> BytesMut {
    let mut buf = BytesMut::with_capacity(frame.len() * BATCH);
    for _ in 0..BATCH {
        buf.extend_from_slice(frame);
    }
    buf
}

fn bench(c: &mut Criterion) {
    let id = MessageId::from_bytes([1; 16]);
    let onion = onion_body();
    let put = mailbox_put();
    let onion_frame = Frame::onion_packet(id, Flags::EMPTY, onion.clone())
        .unwrap()
        .to_bytes();
    let put_frame = Frame::encode(&put, id, Flags::EMPTY).unwrap();
    let put_body = put_frame.slice(zentalk_wire::HEADER_LEN..);
    assert_eq!(onion_frame.len(), BODY_LEN + 32);
    assert_eq!(put_frame.len(), BODY_LEN + 32);

    let mut g = c.benchmark_group("encode_2k");
    g.throughput(Throughput::Bytes(onion_frame.len() as u64));
    g.bench_function("onion_packet", |b| {
        b.iter(|| {
            Frame::onion_packet(id, Flags::EMPTY, black_box(onion.clone()))
                .unwrap()
                .to_bytes()
        })
    });
    let mut out = BytesMut::with_capacity(onion_frame.len());
    g.bench_function("onion_packet_into_reused_buf", |b| {
        b.iter(|| {
            out.clear();
            Frame::onion_packet(id, Flags::EMPTY, black_box(onion.clone()))
                .unwrap()
                .encode_into(&mut out);
        })
    });
    g.bench_function("mailbox_put", |b| {
        b.iter(|| Frame::encode(black_box(&put), id, Flags::EMPTY).unwrap())
    });
    g.bench_function("baseline_prost_encode_body_only", |b| {
        b.iter(|| black_box(&put).encode_to_vec())
    });
    g.bench_function("baseline_copy_2k", |b| {
        b.iter(|| Bytes::copy_from_slice(black_box(&onion_frame[..])))
    });
    g.finish();

    let mut g = c.benchmark_group("decode_2k");
    g.throughput(Throughput::Bytes((onion_frame.len() * BATCH) as u64));
    let onion_stream = stream_of(&onion_frame);
    g.bench_function("onion_packet_stream", |b| {
        b.iter_batched(
            || onion_stream.clone(),
            |mut buf| {
                let mut n = 0;
                while let Some(frame) = decode(&mut buf).unwrap() {
                    black_box(frame.body());
                    n += 1;
                }
                assert_eq!(n, BATCH);
            },
            BatchSize::LargeInput,
        )
    });
    let put_stream = stream_of(&put_frame);
    g.bench_function("mailbox_put_stream_and_body", |b| {
        b.iter_batched(
            || put_stream.clone(),
            |mut buf| {
                while let Some(frame) = decode(&mut buf).unwrap() {
                    let put: proto::MailboxPut = frame.decode_body().unwrap();
                    black_box(put);
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("baseline_prost_decode_body_only", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                black_box(proto::MailboxPut::decode(black_box(put_body.clone())).unwrap());
            }
        })
    });
    g.bench_function("baseline_copy_2k", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                black_box(Bytes::copy_from_slice(black_box(&onion_frame[..])));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

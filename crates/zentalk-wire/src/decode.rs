//! The streaming decoder.

use bytes::{Buf, BytesMut};

use crate::error::WireError;
use crate::frame::Frame;
use crate::header::{HEADER_LEN, Header};

/// Takes one frame off the front of a stream buffer.
///
/// - `Ok(Some(frame))`: a complete frame was removed from `buf`; call again, more may follow.
/// - `Ok(None)`: `buf` holds the start of a frame but not all of it; read more bytes into
///   `buf` and call again. Once the header is complete, `buf` has capacity for the whole frame,
///   so the caller can read into it without reallocating.
/// - `Err(e)`: the stream is malformed ([`WireError::is_fatal_to_stream`]); close the link.
///   `buf` is left as it was.
///
/// The header is validated (magic, version, reserved bytes, type, then the body length
/// against the type's limit) as soon as its 32 bytes are present and before any room is made
/// for the body, so a peer cannot make this side allocate more than the type's limit. The
/// frame's body is a view into `buf`'s allocation, not a copy. No input makes this panic.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, WireError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let header = Header::decode(buf)?;
    let frame_len = header.frame_len();
    if buf.len() < frame_len {
        buf.reserve(frame_len - buf.len());
        return Ok(None);
    }
    // Split the frame off, drop its header in place (no reference-count traffic) and freeze
    // what remains: the body shares `buf`'s allocation.
    let mut frame = buf.split_to(frame_len);
    frame.advance(HEADER_LEN);
    Ok(Some(Frame::from_parts(header, frame.freeze())))
}

/// As [`decode`], for when the stream has ended: leftover bytes that do not form a whole frame
/// are an error ([`WireError::Truncated`]) instead of `Ok(None)`. `Ok(None)` means the buffer
/// was empty, so the stream ended cleanly between frames.
pub fn decode_eof(buf: &mut BytesMut) -> Result<Option<Frame>, WireError> {
    match decode(buf)? {
        Some(frame) => Ok(Some(frame)),
        None if buf.is_empty() => Ok(None),
        None => {
            let needed = match Header::decode(buf) {
                Ok(header) => header.frame_len(),
                Err(_) => HEADER_LEN,
            };
            Err(WireError::Truncated {
                needed,
                found: buf.len(),
            })
        }
    }
}

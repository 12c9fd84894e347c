//! The Ikigai wire protocol, shared by the daemon and every Rust client.
//!
//! A frame is a 4-byte big-endian length followed by one msgpack map. This crate owns those
//! bytes: [`frame`] encodes and decodes them, [`connection`] reads and writes them on a stream,
//! [`error`] names the stable error codes, [`payload`] defines what a JSON-compatible payload
//! is, [`packed`] keeps one as msgpack, and [`raw`] holds values left undecoded until needed, and `check` the rules every request's values
//! meet. Nothing outside this crate touches
//! `rmp-serde`.

mod check;
pub mod connection;
pub mod error;
pub mod frame;
pub mod packed;
pub mod payload;
pub mod raw;

pub use connection::{pump_frames, FrameReader, ReadError};
pub use error::{ErrorBody, ErrorCode};
pub use frame::{
    decode_incoming, decode_request, encode_err, encode_ok, encode_push, encode_request,
    encode_request_into, from_value, DecodeError, Incoming, Request, Value,
};
pub use packed::Packed;
pub use payload::Json;
pub use raw::Raw;

/// The protocol version spoken in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The default largest frame body, in bytes (16 MiB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

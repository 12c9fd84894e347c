//! Arbitrary bytes, in arbitrary chunks, through `FrameReader`: it yields exactly the frames the
//! bytes hold (each frame's prefix and body are the bytes it was cut from), then a clean close,
//! `Truncated` or `TooLarge` exactly where the bytes say so; it never panics and never
//! allocates more than twice its initial buffer and one largest frame, whatever a length prefix
//! claims.
#![no_main]

use ikigai_fuzz::chunked::{Chunked, Peak};
use ikigai_protocol::{FrameReader, ReadError};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static PEAK: Peak = Peak;

/// The reader's initial buffer (`FrameReader::new`).
const INITIAL_BUFFER: usize = 64 * 1024;

/// The fuzzer's bytes, read as: the largest frame (u16, big-endian), a count `n` and `n` chunk
/// sizes, then the stream (so that a seed is frames behind a short header).
struct Input<'a> {
    max_frame: usize,
    chunks: &'a [u8],
    stream: &'a [u8],
}

impl Input<'_> {
    fn of(data: &[u8]) -> Option<Input<'_>> {
        let (head, rest) = data.split_first_chunk::<3>()?;
        let (chunks, stream) = rest.split_at_checked(usize::from(head[2]))?;
        let max_frame = usize::from(u16::from_be_bytes([head[0], head[1]]));
        Some(Input {
            max_frame,
            chunks,
            stream,
        })
    }
}

/// What the reader must say next about `rest`, the bytes not yet cut into frames.
#[derive(Debug)]
enum Expected<'a> {
    Frame(&'a [u8]),
    Closed,
    Truncated,
    TooLarge(usize),
}

fn expected(rest: &[u8], max: usize) -> Expected<'_> {
    let Some(prefix) = rest.get(..4) else {
        return match rest.is_empty() {
            true => Expected::Closed,
            false => Expected::Truncated,
        };
    };
    let len = u32::from_be_bytes(prefix.try_into().unwrap()) as usize;
    match rest.get(4..4 + len) {
        _ if len > max => Expected::TooLarge(len),
        Some(body) => Expected::Frame(body),
        None => Expected::Truncated,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::of(data) else {
        return;
    };
    let max = input.max_frame;
    let bound = 2 * (INITIAL_BUFFER + max + 4);
    let mut reader = FrameReader::new(Chunked::new(input.stream, input.chunks), max);
    let mut rest = input.stream;
    loop {
        Peak::reset();
        let got = Chunked::run(reader.read_frame());
        assert!(
            Peak::largest() <= bound,
            "allocated {} > {bound}",
            Peak::largest()
        );
        match (expected(rest, max), got) {
            (Expected::Frame(body), Ok(Some(frame))) => {
                assert_eq!(&frame[..], body);
                let mut encoded = (frame.len() as u32).to_be_bytes().to_vec();
                encoded.extend_from_slice(&frame);
                assert_eq!(
                    &encoded[..],
                    &rest[..4 + body.len()],
                    "re-encoding reproduces"
                );
                rest = &rest[4 + body.len()..];
            }
            (Expected::Closed, Ok(None)) | (Expected::Truncated, Err(ReadError::Truncated)) => {
                break
            }
            (Expected::TooLarge(len), Err(ReadError::TooLarge { len: l, max: m })) => {
                assert_eq!((l, m), (len, max));
                break;
            }
            (want, got) => panic!("expected {want:?}, got {got:?}"),
        }
    }
});

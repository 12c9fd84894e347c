//! Reading and writing frames on a byte stream (a `UnixStream` half, in practice).
//!
//! [`FrameReader::read_frame`] returns one frame body at a time, `None` on a clean close between
//! frames, and refuses a length prefix over the configured maximum before reading its body.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Why reading a frame failed. Every variant ends the connection.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Buffers reads from `R` and cuts them into frames.
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max_frame: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max_frame: usize) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(64 * 1024),
            max_frame,
        }
    }

    /// Reads the next frame body; `Ok(None)` when the peer closed cleanly between frames.
    pub async fn read_frame(&mut self) -> Result<Option<Bytes>, ReadError> {
        loop {
            if let Some(frame) = self.parse_frame()? {
                return Ok(Some(frame));
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::Truncated)
                };
            }
        }
    }

    /// The next frame if it is already buffered, without reading; `Ok(None)` when it is not.
    pub fn buffered_frame(&mut self) -> Result<Option<Bytes>, ReadError> {
        self.parse_frame()
    }

    fn parse_frame(&mut self) -> Result<Option<Bytes>, ReadError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
        if len > self.max_frame {
            return Err(ReadError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        if self.buf.len() < 4 + len {
            self.buf.reserve(4 + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(4);
        Ok(Some(self.buf.split_to(len).freeze()))
    }
}

/// Writes every frame sent on `frames` to `w`: the frames queued together leave in one write
/// (appended to the first one), so that a burst of pipelined frames leaves in few writes. Ends
/// when the channel closes or a write fails.
pub async fn pump_frames<W: AsyncWrite + Unpin>(mut w: W, mut frames: mpsc::Receiver<Vec<u8>>) {
    while let Some(mut batch) = frames.recv().await {
        while let Ok(frame) = frames.try_recv() {
            batch.extend_from_slice(&frame);
        }
        if w.write_all(&batch).await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn splits_frames_and_reports_clean_close() {
        let mut bytes = Vec::new();
        for body in [&b"ab"[..], &b""[..], &b"xyz"[..]] {
            bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
            bytes.extend_from_slice(body);
        }
        let mut reader = FrameReader::new(&bytes[..], 16);
        assert_eq!(&reader.read_frame().await.unwrap().unwrap()[..], b"ab");
        assert_eq!(&reader.read_frame().await.unwrap().unwrap()[..], b"");
        assert_eq!(&reader.read_frame().await.unwrap().unwrap()[..], b"xyz");
        assert!(reader.read_frame().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversize_prefix_is_refused_before_the_body() {
        let bytes = 1000u32.to_be_bytes();
        let mut reader = FrameReader::new(&bytes[..], 16);
        assert!(matches!(
            reader.read_frame().await,
            Err(ReadError::TooLarge { len: 1000, max: 16 })
        ));
    }

    #[tokio::test]
    async fn close_mid_frame_is_truncated() {
        let bytes = [0, 0, 0, 5, b'a'];
        let mut reader = FrameReader::new(&bytes[..], 16);
        assert!(matches!(
            reader.read_frame().await,
            Err(ReadError::Truncated)
        ));
    }
}

//! Reading and writing frames on a byte stream (a `UnixStream` half, in practice).
//!
//! [`FrameReader::read_frame`] returns one frame body at a time, `None` on a clean close between
//! frames, and refuses a length prefix over the configured maximum before reading its body.
//! [`FrameReader::read_frame_before`] also bounds how long a started frame may take, with a
//! deadline the caller makes (so the reader stays free of any timer).

use bytes::{Buf, Bytes, BytesMut};
use std::future::{poll_fn, Future};
use std::io::IoSlice;
use std::pin::pin;
use std::task::Poll;
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
    #[error("frame not completed in time")]
    Stalled,
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

    /// Like [`read_frame`](Self::read_frame), but once part of a frame is buffered the rest
    /// must arrive before the future `started` makes (called then, once) resolves; otherwise
    /// `Err(Stalled)`. Waiting between frames is not limited.
    pub async fn read_frame_before<D, F>(&mut self, started: F) -> Result<Option<Bytes>, ReadError>
    where
        F: FnOnce() -> D,
        D: Future<Output = ()>,
    {
        let mut started = Some(started);
        let mut deadline = None;
        loop {
            if let Some(frame) = self.parse_frame()? {
                return Ok(Some(frame));
            }
            if !self.buf.is_empty() && deadline.is_none() {
                deadline = started.take().map(|f| Box::pin(f()));
            }
            let mut read = pin!(self.inner.read_buf(&mut self.buf));
            let n = poll_fn(|cx| {
                if let Some(d) = deadline.as_mut() {
                    if d.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(ReadError::Stalled));
                    }
                }
                read.as_mut().poll(cx).map_err(ReadError::from)
            })
            .await?;
            if n == 0 {
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

/// Writes every frame sent on `frames` to `w`: the frames queued together leave in one
/// vectored write (never copied into one buffer, which would hold them twice), so that a burst
/// of pipelined frames leaves in few writes. Each frame is dropped only once written (a frame
/// may carry what accounts for its bytes). Ends when the channel closes or a write fails.
pub async fn pump_frames<W, F>(mut w: W, mut frames: mpsc::UnboundedReceiver<F>)
where
    W: AsyncWrite + Unpin,
    F: AsRef<[u8]>,
{
    while let Some(first) = frames.recv().await {
        let mut written = vec![first];
        while let Ok(frame) = frames.try_recv() {
            written.push(frame);
        }
        if write_all_vectored(&mut w, &written).await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

/// Writes all of `frames`, in order, with as few (vectored) writes as `w` takes.
async fn write_all_vectored<W, F>(w: &mut W, frames: &[F]) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    F: AsRef<[u8]>,
{
    let mut slices: Vec<IoSlice> = frames.iter().map(|f| IoSlice::new(f.as_ref())).collect();
    let mut unwritten = &mut slices[..];
    while !unwritten.is_empty() {
        match w.write_vectored(unwritten).await? {
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            n => IoSlice::advance_slices(&mut unwritten, n),
        }
    }
    Ok(())
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
    async fn a_started_frame_past_its_deadline_is_stalled() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(&[0, 0, 0, 5, b'a']).await.unwrap();
        let mut reader = FrameReader::new(server, 16);
        let stalled = reader.read_frame_before(|| std::future::ready(())).await;
        assert!(matches!(stalled, Err(ReadError::Stalled)));
    }

    #[tokio::test]
    async fn waiting_between_frames_is_not_limited() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(server, 16);
        let read = reader.read_frame_before(|| std::future::ready(()));
        let write = async {
            tokio::task::yield_now().await;
            client.write_all(&[0, 0, 0, 1, b'a']).await.unwrap();
        };
        let (frame, ()) = tokio::join!(read, write);
        assert_eq!(&frame.unwrap().unwrap()[..], b"a");
    }

    #[tokio::test]
    async fn frames_queued_together_are_written_whole_and_in_order() {
        let (tx, rx) = mpsc::unbounded_channel();
        let frames: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| vec![i as u8; i as usize % 700])
            .collect();
        for f in &frames {
            tx.send(f.clone()).unwrap();
        }
        drop(tx);
        let (client, mut server) = tokio::io::duplex(4096);
        let pump = tokio::spawn(pump_frames(client, rx));
        let mut written = Vec::new();
        server.read_to_end(&mut written).await.unwrap();
        pump.await.unwrap();
        assert_eq!(written, frames.concat());
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

//! For the frame reader's target: a byte stream that arrives in the chunk sizes the fuzzer
//! chose (and never makes its reader wait), a way to run a future over it without a runtime,
//! and an allocator that remembers the largest allocation asked of it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, ReadBuf};

/// `data`, handed over `chunks[i] + 1` bytes at a time (cycling; all at once when `chunks` is
/// empty), and then the end of the stream.
pub struct Chunked<'a> {
    data: &'a [u8],
    chunks: &'a [u8],
    next: usize,
}

impl<'a> Chunked<'a> {
    pub fn new(data: &'a [u8], chunks: &'a [u8]) -> Chunked<'a> {
        Chunked {
            data,
            chunks,
            next: 0,
        }
    }

    /// Runs `f` to completion; a `Chunked` is always ready, so anything reading only from one
    /// never waits, and waiting is a failure.
    pub fn run<F: Future>(f: F) -> F::Output {
        let mut cx = Context::from_waker(Waker::noop());
        match pin!(f).poll(&mut cx) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("waited on a stream that is always ready"),
        }
    }
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let chunk = match self.chunks {
            [] => usize::MAX,
            chunks => usize::from(chunks[self.next % chunks.len()]) + 1,
        };
        let n = chunk.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.next += 1;
        Poll::Ready(Ok(()))
    }
}

static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, remembering the largest allocation since [`Peak::reset`].
pub struct Peak;

impl Peak {
    pub fn reset() {
        LARGEST.store(0, Ordering::Relaxed);
    }

    pub fn largest() -> usize {
        LARGEST.load(Ordering::Relaxed)
    }

    fn saw(size: usize) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Peak::saw(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Peak::saw(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Peak::saw(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

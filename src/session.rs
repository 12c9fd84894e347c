//! One client connection: authentication, then pipelined requests.
//!
//! Frames are read in order; until `hello` succeeds each request is answered before the next is
//! read. After that each request runs at once, in place, and its reply joins those of the other
//! requests answered in place since the read buffer was last drained: they go to the writer as
//! one batch (one write) before the session waits for more bytes. A request that has to wait
//! continues as its own task (at most `max_in_flight` at once) and its response is written as
//! soon as it is ready, so responses may leave out of order. A bad frame is answered with
//! `bad_frame` (id 0) and ends the connection; on close or shutdown the in-flight requests
//! finish, the mailboxes this session received from get their deliveries back, and its
//! subscriptions end. Pushes share the bounded response queue.
//!
//! Every connection is bounded in bytes: replies and pushes waiting to be written take
//! `max_reply_bytes` permits, requests served as tasks `max_in_flight_bytes`; reading pauses
//! while either is used up, and a connection whose replies waiting for room exceed
//! `max_reply_bytes` as well (its client does not read) is closed. `hello` must succeed within
//! `hello_timeout_ms`, and a started frame must be complete within `frame_timeout_ms`.

use crate::admission::{Admission, Peer, Ticket};
use crate::cmd;
use crate::services::{Services, Shutdown, ShutdownTrigger};
use crate::tx::Transactions;
use ikigai_actors::mailbox::SessionClosed;
use ikigai_actors::pubsub;
use ikigai_actors::queue;
use ikigai_actors::SessionId;
use ikigai_protocol::{
    decode_request, encode_err, pump_frames, DecodeError, ErrorBody, ErrorCode, FrameReader,
    ReadError, Request,
};
use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::net::unix::OwnedReadHalf;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::{spawn_local, JoinHandle};
use tracing::{debug, info, info_span, Instrument};
use uuid::Uuid;

/// An authenticated session.
pub struct Session {
    pub id: SessionId,
    pub agent: String,
    received_from: RefCell<HashSet<String>>,
    /// Transactions opened on this connection.
    pub txs: Rc<Transactions>,
    /// Tasks claimed on this connection, and the queue each belongs to.
    claimed: RefCell<HashMap<Uuid, String>>,
    closing: ShutdownTrigger,
    closed: Shutdown,
    /// The connection's response queue, for server pushes (set once authenticated).
    pushes: OnceCell<Out>,
}

impl Session {
    pub fn new(agent: String) -> Session {
        let (closing, closed) = Shutdown::new();
        Session {
            id: SessionId::new(),
            agent,
            received_from: RefCell::new(HashSet::new()),
            claimed: RefCell::new(HashMap::new()),
            txs: Rc::default(),
            closing,
            closed,
            pushes: OnceCell::new(),
        }
    }

    /// Where pushes to this connection go: the same queue as responses, within the same byte
    /// budget, so a client that stops reading stops receiving (its subscriptions then
    /// overflow).
    pub fn pushes(&self) -> Option<Out> {
        self.pushes.get().cloned()
    }

    /// Raised when the connection stops reading: waiting requests end early.
    pub fn closed(&self) -> Shutdown {
        self.closed.clone()
    }

    pub fn is_admin(&self) -> bool {
        self.agent == crate::identity::ADMIN
    }

    /// Remembers a mailbox this session received from, to release its deliveries on close.
    pub fn received_from(&self, mailbox: &str) {
        if !self.received_from.borrow().contains(mailbox) {
            self.received_from.borrow_mut().insert(mailbox.to_owned());
        }
    }

    /// Remembers tasks claimed on this connection (to find their queue, and to release them on
    /// close).
    pub fn claimed(&self, queue: &str, ids: impl IntoIterator<Item = Uuid>) {
        let mut claimed = self.claimed.borrow_mut();
        claimed.extend(ids.into_iter().map(|id| (id, queue.to_owned())));
    }

    /// The queue of a task claimed on this connection.
    pub fn queue_of(&self, id: &Uuid) -> Option<String> {
        self.claimed.borrow().get(id).cloned()
    }

    /// Forgets a task that was settled.
    pub fn settled(&self, id: &Uuid) {
        self.claimed.borrow_mut().remove(id);
    }

    fn release(&self, services: &Services) {
        self.txs.abandon_all();
        services.pubsub.do_send(pubsub::SessionClosed(self.id));
        for name in self.received_from.borrow().iter() {
            if let Some(addr) = services.mailboxes.running(name) {
                addr.do_send(SessionClosed(self.id));
            }
        }
        let queues: HashSet<String> = self.claimed.borrow().values().cloned().collect();
        for name in queues {
            if let Some(addr) = services.queues.running(&name) {
                addr.do_send(queue::SessionClosed(self.id));
            }
        }
    }
}

/// Replies gathered in place are handed to the writer once they reach this size, even while
/// more requests are buffered.
const FLUSH_REPLIES_AT: usize = 256 << 10;

/// Response and push frames on their way to the writer, bounded in bytes: each queued frame
/// holds permits of the connection's reply budget until it is written. A sender waits for
/// room; when the frames waiting for room exceed the budget too, the connection overflows:
/// every send fails from then on and the session closes.
#[derive(Clone)]
pub struct Out(Rc<Outbox>);

struct Outbox {
    frames: mpsc::UnboundedSender<Queued>,
    budget: Arc<Semaphore>,
    max: usize,
    /// Bytes of frames whose senders wait for room.
    waiting: Cell<usize>,
    overflowed: ShutdownTrigger,
    overflow: Shutdown,
}

/// A frame in the writer's queue, with the budget it holds.
struct Queued {
    bytes: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Queued {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// The connection is closing: the frame was not queued.
#[derive(Debug)]
pub struct Closed;

/// Takes its frame's bytes out of `waiting` when its send ends, however it ends.
struct Waiting<'a>(&'a Outbox, usize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.set(self.0.waiting.get() - self.1);
    }
}

impl Out {
    fn new(max: usize) -> (Out, mpsc::UnboundedReceiver<Queued>) {
        let (frames, rx) = mpsc::unbounded_channel();
        let (overflowed, overflow) = Shutdown::new();
        let max = max.min(Semaphore::MAX_PERMITS).min(u32::MAX as usize);
        let outbox = Outbox {
            frames,
            budget: Arc::new(Semaphore::new(max)),
            max,
            waiting: Cell::new(0),
            overflowed,
            overflow,
        };
        (Out(Rc::new(outbox)), rx)
    }

    /// Queues a frame for the writer, waiting for room in the budget (a frame larger than the
    /// whole budget waits until nothing else is queued). A frame counts the memory it holds,
    /// its capacity: an encoded reply may hold up to twice its length.
    pub async fn send(&self, frame: Vec<u8>) -> Result<(), Closed> {
        let o = &self.0;
        let size = frame.capacity();
        // The budget is at most u32::MAX, so this fits.
        let n = size.min(o.max) as u32;
        let permit = match o.budget.clone().try_acquire_many_owned(n) {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Err(Closed),
            Err(TryAcquireError::NoPermits) => {
                if o.waiting.get() + size > o.max {
                    self.overflow();
                    return Err(Closed);
                }
                o.waiting.set(o.waiting.get() + size);
                let _waiting = Waiting(o, size);
                o.budget
                    .clone()
                    .acquire_many_owned(n)
                    .await
                    .map_err(|_| Closed)?
            }
        };
        let queued = Queued {
            bytes: frame,
            _permit: permit,
        };
        o.frames.send(queued).map_err(|_| Closed)
    }

    /// Waits until the budget has room (at once when it has).
    async fn room(&self) {
        let _ = self.0.budget.acquire().await;
    }

    fn overflow(&self) {
        info!(
            max_reply_bytes = self.0.max,
            "replies waiting to be written exceed the connection's budget (the client does not \
             read them); closing the connection"
        );
        self.0.budget.close();
        self.0.overflowed.trigger();
    }

    fn overflowed(&self) -> Shutdown {
        self.0.overflow.clone()
    }
}

/// Serves one connection until the peer closes, a frame is bad, a deadline passes, the
/// admission pool closes it, or the daemon shuts down.
pub async fn serve(
    stream: UnixStream,
    services: Services,
    admission: Rc<Admission>,
    ticket: Ticket,
) {
    let peer: Peer = stream.peer_cred().ok().map(|c| c.uid());
    let (read, write) = stream.into_split();
    let daemon = &services.config.daemon;
    let (out, out_rx) = Out::new(daemon.max_reply_bytes);
    let writer = spawn_local(pump_frames(write, out_rx));
    let mut reader = FrameReader::new(read, daemon.max_frame_bytes);
    let services = Rc::new(services);
    let mut evicted = ticket.evicted.clone();
    let hello = tokio::time::timeout(
        services.config.daemon.hello_timeout,
        authenticate(&mut reader, &out, &services, &admission, peer),
    );
    let authenticated = tokio::select! {
        done = hello => done.unwrap_or_else(|_| {
            debug!("no hello in time; closing the connection");
            None
        }),
        _ = evicted.wait() => {
            debug!("too many connections before hello; closing the oldest");
            None
        }
    };
    drop(ticket);
    if let Some((session, _slot)) = authenticated {
        let span = info_span!("session", agent = %session.agent, session = %session.id);
        let _ = session.pushes.set(out.clone());
        let session = Rc::new(*session);
        serve_requests(&mut reader, &out, &services, &session)
            .instrument(span)
            .await;
        session.release(&services);
    }
    let grace = match out.overflowed().is_raised() {
        true => Duration::ZERO,
        false => services.config.daemon.frame_timeout,
    };
    drop(out);
    finish_writing(writer, grace).await;
}

/// Lets the writer write what is queued, for at most `grace` (a client that does not read
/// cannot keep its connection open).
async fn finish_writing(writer: JoinHandle<()>, grace: Duration) {
    let abort = writer.abort_handle();
    if tokio::time::timeout(grace, writer).await.is_err() {
        abort.abort();
    }
}

/// Reads the next frame, which must be complete within `[daemon] frame_timeout_ms` once started.
async fn read_frame(
    reader: &mut FrameReader<OwnedReadHalf>,
    services: &Services,
) -> Result<Option<bytes::Bytes>, ReadError> {
    let limit = services.config.daemon.frame_timeout;
    reader.read_frame_before(|| tokio::time::sleep(limit)).await
}

async fn serve_requests(
    reader: &mut FrameReader<OwnedReadHalf>,
    out: &Out,
    services: &Rc<Services>,
    session: &Rc<Session>,
) {
    let daemon = &services.config.daemon;
    let max = daemon.max_in_flight;
    let permits = Arc::new(Semaphore::new(max));
    let max_bytes = daemon
        .max_in_flight_bytes
        .min(Semaphore::MAX_PERMITS)
        .min(u32::MAX as usize);
    let bytes = Arc::new(Semaphore::new(max_bytes));
    let mut shutdown = services.shutdown.clone();
    let mut overflow = out.overflowed();
    // The replies of the requests answered in place since the read buffer was last drained:
    // they leave together, as one frame batch for the writer (one write), before reading more.
    let mut replies = Vec::new();
    while !shutdown.is_raised() && !overflow.is_raised() {
        // Pipelined requests are often buffered already: those are taken without waiting.
        let frame = match reader.buffered_frame() {
            Ok(None) => {
                send_replies(out, &mut replies).await;
                tokio::select! {
                    f = async { out.room().await; read_frame(reader, services).await } => f,
                    _ = shutdown.wait() => break,
                    _ = overflow.wait() => break,
                }
            }
            buffered => buffered,
        };
        // Fits in u32: the budget is at most u32::MAX.
        let size = frame
            .as_ref()
            .ok()
            .and_then(Option::as_ref)
            .map_or(0, |f| f.len().min(max_bytes)) as u32;
        let req = match next_request(frame) {
            Ok(req) => req,
            Err((next, answer)) => {
                replies.extend_from_slice(&answer);
                match next {
                    Next::Skip => continue,
                    Next::Close => break,
                }
            }
        };
        let (services, session, out) = (services.clone(), session.clone(), out.clone());
        let mut request = Box::pin(async move { cmd::dispatch(req, &services, &session).await });
        // Most requests (every cache op) complete without waiting: they run here, in order.
        // One that waits continues as a task of its own, holding one of the `max_in_flight`
        // permits and its frame's bytes of `max_in_flight_bytes`; when either is used up,
        // reading stops until some is returned (waiting requests end on shutdown, so this
        // wait does too).
        match futures::poll!(&mut request) {
            Poll::Ready(frame) => {
                replies.extend_from_slice(&frame);
                if replies.len() >= FLUSH_REPLIES_AT {
                    send_replies(&out, &mut replies).await;
                }
            }
            Poll::Pending => {
                send_replies(&out, &mut replies).await;
                let (Ok(permit), Ok(held)) = (
                    permits.clone().acquire_owned().await,
                    bytes.clone().acquire_many_owned(size).await,
                ) else {
                    break;
                };
                spawn_local(async move {
                    let _ = out.send(request.await).await;
                    drop((permit, held));
                });
            }
        }
    }
    send_replies(out, &mut replies).await;
    // Let the requests in flight finish (waiting receives end now) before the connection closes.
    session.closing.trigger();
    let _ = permits.acquire_many(max as u32).await;
}

/// Hands the replies gathered so far to the writer, as one batch; the next batch starts with
/// room for as much.
async fn send_replies(out: &Out, replies: &mut Vec<u8>) {
    if !replies.is_empty() {
        let next = Vec::with_capacity(replies.len().min(FLUSH_REPLIES_AT));
        let _ = out.send(std::mem::replace(replies, next)).await;
    }
}

/// Reads requests one at a time until `hello` succeeds: then the session and its
/// `max_connections` slot; `None` when the connection must end.
async fn authenticate(
    reader: &mut FrameReader<OwnedReadHalf>,
    out: &Out,
    services: &Services,
    admission: &Admission,
    peer: Peer,
) -> Option<(Box<Session>, OwnedSemaphorePermit)> {
    let mut shutdown = services.shutdown.clone();
    loop {
        let frame = tokio::select! {
            f = read_frame(reader, services) => f,
            _ = shutdown.wait() => return None,
        };
        let req = match next_request(frame) {
            Ok(req) => req,
            Err((next, mut answer)) => {
                send_replies(out, &mut answer).await;
                match next {
                    Next::Skip => continue,
                    Next::Close => return None,
                }
            }
        };
        match cmd::hello::authenticate(&req, services, admission, peer).await {
            cmd::hello::Outcome::Welcome(session, slot, reply) => {
                out.send(reply).await.ok()?;
                return Some((session, slot));
            }
            cmd::hello::Outcome::Refused(reply) => {
                out.send(reply).await.ok()?;
            }
            cmd::hello::Outcome::Rejected(reply) => {
                let _ = out.send(reply).await;
                return None;
            }
        }
    }
}

/// What follows a frame that is not a request.
enum Next {
    Skip,
    Close,
}

/// Decodes the next frame; otherwise what follows, and the answer to send (a bad frame also ends
/// the connection).
fn next_request(
    frame: Result<Option<bytes::Bytes>, ReadError>,
) -> Result<Request, (Next, Vec<u8>)> {
    match frame {
        Ok(Some(body)) => match decode_request(&body) {
            Ok(req) => Ok(req),
            Err(DecodeError::BadFrame(message)) => Err(bad_frame(message)),
            Err(DecodeError::BadRequest { id, message }) => {
                let body = ErrorBody::new(ErrorCode::BadRequest, message, false);
                Err((Next::Skip, encode_err(id, &body)))
            }
        },
        Ok(None) | Err(ReadError::Io(_)) => Err((Next::Close, Vec::new())),
        Err(e @ (ReadError::TooLarge { .. } | ReadError::Truncated | ReadError::Stalled)) => {
            Err(bad_frame(e.to_string()))
        }
    }
}

fn bad_frame(message: String) -> (Next, Vec<u8>) {
    debug!(error = %message, "bad frame; closing the connection");
    let body = ErrorBody::new(ErrorCode::BadFrame, message, false);
    (Next::Close, encode_err(0, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of `len` bytes holding `capacity`.
    fn frame(len: usize, capacity: usize) -> Vec<u8> {
        let mut frame = Vec::with_capacity(capacity);
        frame.resize(len, 0);
        frame
    }

    #[tokio::test]
    async fn queued_replies_count_the_memory_they_hold_not_their_length() {
        let (out, _writer) = Out::new(1000);
        out.send(frame(10, 800)).await.unwrap();
        let mut second = Box::pin(out.send(frame(10, 800)));
        assert!(futures::poll!(&mut second).is_pending(), "waits for room");
        assert!(
            out.send(frame(10, 800)).await.is_err(),
            "overflows the budget"
        );
        assert!(out.overflowed().is_raised());
    }
}

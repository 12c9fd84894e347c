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
use std::cell::{OnceCell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use tokio::net::unix::OwnedReadHalf;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::spawn_local;
use tracing::{debug, info_span, Instrument};
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

    /// Where pushes to this connection go: the same bounded queue as responses, so a client
    /// that stops reading stops receiving (its subscriptions then overflow).
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

/// Response frames on their way to the writer. Bounded: a client that stops reading stops
/// its own requests (their tasks wait here, holding their in-flight permits).
pub type Out = mpsc::Sender<Vec<u8>>;

/// Serves one connection until the peer closes, a frame is bad, or the daemon shuts down.
pub async fn serve(stream: UnixStream, services: Services) {
    let (read, write) = stream.into_split();
    let (out, out_rx) = mpsc::channel(services.config.daemon.max_in_flight);
    let writer = spawn_local(pump_frames(write, out_rx));
    let mut reader = FrameReader::new(read, services.config.daemon.max_frame_bytes);
    let services = Rc::new(services);
    if let Some(session) = authenticate(&mut reader, &out, &services).await {
        let span = info_span!("session", agent = %session.agent, session = %session.id);
        let _ = session.pushes.set(out.clone());
        let session = Rc::new(session);
        serve_requests(&mut reader, &out, &services, &session)
            .instrument(span)
            .await;
        session.release(&services);
    }
    drop(out);
    let _ = writer.await;
}

async fn serve_requests(
    reader: &mut FrameReader<OwnedReadHalf>,
    out: &Out,
    services: &Rc<Services>,
    session: &Rc<Session>,
) {
    let max = services.config.daemon.max_in_flight;
    let permits = Arc::new(Semaphore::new(max));
    let mut shutdown = services.shutdown.clone();
    // The replies of the requests answered in place since the read buffer was last drained:
    // they leave together, as one frame batch for the writer (one write), before reading more.
    let mut replies = Vec::new();
    while !shutdown.is_raised() {
        // Pipelined requests are often buffered already: those are taken without waiting.
        let frame = match reader.buffered_frame() {
            Ok(None) => {
                send_replies(out, &mut replies).await;
                tokio::select! {
                    f = reader.read_frame() => f,
                    _ = shutdown.wait() => break,
                }
            }
            buffered => buffered,
        };
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
        // permits; when none is left, reading stops until one is returned (waiting requests
        // end on shutdown, so this wait does too).
        match futures::poll!(&mut request) {
            Poll::Ready(frame) => replies.extend_from_slice(&frame),
            Poll::Pending => {
                send_replies(&out, &mut replies).await;
                let permit = permits.clone().acquire_owned().await;
                let permit = permit.expect("the semaphore is never closed");
                spawn_local(async move {
                    let _ = out.send(request.await).await;
                    drop(permit);
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
        let next = Vec::with_capacity(replies.len());
        let _ = out.send(std::mem::replace(replies, next)).await;
    }
}

/// Reads requests one at a time until `hello` succeeds; `None` when the connection must end.
async fn authenticate(
    reader: &mut FrameReader<OwnedReadHalf>,
    out: &Out,
    services: &Services,
) -> Option<Session> {
    let mut shutdown = services.shutdown.clone();
    loop {
        let frame = tokio::select! {
            f = reader.read_frame() => f,
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
        match cmd::hello::authenticate(&req, services).await {
            cmd::hello::Outcome::Welcome(session, reply) => {
                let _ = out.send(reply).await;
                return Some(session);
            }
            cmd::hello::Outcome::Refused(reply) => {
                let _ = out.send(reply).await;
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
        Err(e @ (ReadError::TooLarge { .. } | ReadError::Truncated)) => {
            Err(bad_frame(e.to_string()))
        }
    }
}

fn bad_frame(message: String) -> (Next, Vec<u8>) {
    debug!(error = %message, "bad frame; closing the connection");
    let body = ErrorBody::new(ErrorCode::BadFrame, message, false);
    (Next::Close, encode_err(0, &body))
}

//! The connection: a writer task, a reader task, and a table of calls waiting for replies.
//!
//! Calls append their request frames to one shared output buffer; the writer task writes all
//! that accumulated with one write while the next requests accumulate behind it, so a burst of
//! pipelined calls leaves in a few writes without a channel message or an allocation per frame.

use foldhash::fast::RandomState;
use ikigai_protocol::{
    decode_incoming, encode_request_into, ErrorBody, FrameReader, Incoming, Raw, Value,
    PROTOCOL_VERSION,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, Notify};

/// Why a call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The daemon answered with an error.
    #[error("{0}")]
    Server(#[from] ErrorBody),
    #[error("connection closed")]
    Closed,
    #[error("unexpected reply: {0}")]
    Decode(String),
    #[error("missing environment variable {0}")]
    Env(&'static str),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// The server's error code, when the daemon answered with an error.
    pub fn code(&self) -> Option<ikigai_protocol::ErrorCode> {
        match self {
            ClientError::Server(body) => Some(body.code),
            _ => None,
        }
    }

    /// Whether the same call may succeed later: the daemon's `retriable`, and true for a lost
    /// connection (its outcome is unknown; a new connection may succeed).
    pub fn retriable(&self) -> bool {
        match self {
            ClientError::Server(body) => body.retriable,
            ClientError::Closed | ClientError::Io(_) => true,
            ClientError::Decode(_) | ClientError::Env(_) => false,
        }
    }
}

/// A server push: `{"push": name, "data": value}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    pub push: String,
    pub data: Value,
}

/// The daemon's answer to `hello`.
#[derive(Debug, Clone, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub daemon: String,
    pub version: String,
    pub session: String,
}

/// A reply's `ok` value is decoded by the caller that waits for it, not by the reading task.
type Reply = Result<Raw, ErrorBody>;

/// A submitted request whose reply has not been read yet.
pub struct Pending {
    rx: oneshot::Receiver<Reply>,
}

impl Pending {
    /// The `ok` value, untyped.
    pub async fn value(self) -> Result<Value, ClientError> {
        self.ok().await?.value().map_err(ClientError::Decode)
    }

    /// The `ok` value decoded into `R`.
    pub async fn reply<R: DeserializeOwned>(self) -> Result<R, ClientError> {
        self.ok().await?.parse().map_err(ClientError::Decode)
    }

    async fn ok(self) -> Result<Raw, ClientError> {
        Ok(self.rx.await.map_err(|_| ClientError::Closed)??)
    }
}
/// Calls waiting for their reply, by id; `None` once the connection is gone.
type Waiters = Arc<Mutex<Option<HashMap<u64, Waiter, RandomState>>>>;

/// Where a push goes when it has an owner.
pub(crate) type Route = mpsc::UnboundedSender<Push>;

/// One call waiting for its reply.
struct Waiter {
    reply: oneshot::Sender<Reply>,
    /// For `pubsub.subscribe`: the route of the subscription's pushes, taken by the reading task
    /// when the reply names the subscription, before it reads the pushes that follow it.
    subscription: Option<Route>,
}

/// Who owns a push: a call in flight (`llm.delta`, `llm.tool_call` name their `request`) or a
/// subscription (pub/sub pushes are named by its id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Owner {
    Request(u64),
    Subscription(String),
}

/// The owners of pushes; a push without one goes to [`Client::next_push`]. `None`: an owner
/// that is gone and whose stragglers are dropped (a subscription ended by its client: pushes
/// queued before its end may still arrive; its entry stays until the connection closes).
type Routes = Arc<Mutex<HashMap<Owner, Option<Route>, RandomState>>>;

/// Bytes of queued requests beyond which a call waits for the writer (back-pressure).
const MAX_QUEUED: usize = 1 << 20;

/// A connection to the daemon. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    output: Arc<Output>,
    pending: Waiters,
    routes: Routes,
    next_id: AtomicU64,
    pushes: tokio::sync::Mutex<mpsc::UnboundedReceiver<Push>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.output.close();
    }
}

/// Request frames waiting for the writer task, shared with it.
#[derive(Default)]
struct Output {
    queued: Mutex<Queued>,
    /// Something was queued, or the connection is closing.
    queued_some: Notify,
    /// The writer took what was queued.
    taken: Notify,
}

#[derive(Default)]
struct Queued {
    frames: Vec<u8>,
    /// No more writes: the client was dropped or a write failed.
    closed: bool,
}

impl Output {
    /// Appends the frame of one request; waits while too much is queued.
    async fn queue<A: Serialize + ?Sized>(
        &self,
        id: u64,
        op: &str,
        args: &A,
    ) -> Result<(), ClientError> {
        loop {
            let taken = {
                let mut queued = self.queued.lock().expect("output lock");
                if queued.closed {
                    return Err(ClientError::Closed);
                }
                if queued.frames.len() < MAX_QUEUED {
                    let was_empty = queued.frames.is_empty();
                    encode_request_into(&mut queued.frames, id, op, args)
                        .map_err(|e| ClientError::Decode(e.to_string()))?;
                    drop(queued);
                    if was_empty {
                        self.queued_some.notify_one();
                    }
                    return Ok(());
                }
                // Made while the lock is held, so the writer's take cannot be missed.
                self.taken.notified()
            };
            taken.await;
        }
    }

    fn close(&self) {
        self.queued.lock().expect("output lock").closed = true;
        self.queued_some.notify_one();
    }

    /// Swaps what is queued into `batch` (empty before): `Some(true)` if it took frames,
    /// `Some(false)` if none are queued, `None` once closed with none left.
    fn take(&self, batch: &mut Vec<u8>) -> Option<bool> {
        let mut queued = self.queued.lock().expect("output lock");
        if queued.frames.is_empty() {
            return (!queued.closed).then_some(false);
        }
        // Callers wait only while the queue is full.
        let full = queued.frames.len() >= MAX_QUEUED;
        std::mem::swap(&mut queued.frames, batch);
        drop(queued);
        if full {
            self.taken.notify_waiters();
        }
        Some(true)
    }
}

/// Writes whatever requests have queued, one write per batch, until the client is dropped or a
/// write fails.
async fn write_loop(mut w: OwnedWriteHalf, output: Arc<Output>) {
    let mut batch = Vec::new();
    loop {
        match output.take(&mut batch) {
            Some(true) => {
                if w.write_all(&batch).await.is_err() {
                    output.close();
                    return;
                }
                batch.clear();
            }
            Some(false) => output.queued_some.notified().await,
            None => break,
        }
    }
    let _ = w.shutdown().await;
}

impl Client {
    /// Connects without authenticating; the first call must be [`Client::hello`].
    pub async fn connect(socket: impl AsRef<Path>) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(socket).await?;
        let (read, write) = stream.into_split();
        let output = Arc::new(Output::default());
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let pending: Waiters = Arc::new(Mutex::new(Some(HashMap::default())));
        let routes = Routes::default();
        tokio::spawn(write_loop(write, output.clone()));
        tokio::spawn(read_loop(
            // The daemon is trusted: its replies (a receive of many large messages) may exceed the
            // request limit, up to what a 4-byte length can say.
            FrameReader::new(read, u32::MAX as usize),
            pending.clone(),
            routes.clone(),
            push_tx,
        ));
        Ok(Client {
            inner: Arc::new(Inner {
                output,
                pending,
                routes,
                next_id: AtomicU64::new(1),
                pushes: tokio::sync::Mutex::new(push_rx),
            }),
        })
    }

    /// Connects and authenticates as `agent`.
    pub async fn connect_as(
        socket: impl AsRef<Path>,
        agent: &str,
        token: &str,
    ) -> Result<Client, ClientError> {
        let client = Client::connect(socket).await?;
        client.hello(agent, token).await?;
        Ok(client)
    }

    /// Connects the way an agent started by the daemon does: `IKIGAI_SOCKET` (default
    /// `../../daemon.sock`), `IKIGAI_AGENT` and `IKIGAI_TOKEN`.
    pub async fn connect_env() -> Result<Client, ClientError> {
        let socket = std::env::var("IKIGAI_SOCKET").unwrap_or_else(|_| "../../daemon.sock".into());
        let agent = std::env::var("IKIGAI_AGENT").map_err(|_| ClientError::Env("IKIGAI_AGENT"))?;
        let token = std::env::var("IKIGAI_TOKEN").map_err(|_| ClientError::Env("IKIGAI_TOKEN"))?;
        Client::connect_as(socket, &agent, &token).await
    }

    /// Authenticates this connection as `agent`.
    pub async fn hello(&self, agent: &str, token: &str) -> Result<Hello, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            protocol: u32,
            agent: &'a str,
            token: &'a str,
        }
        let args = Args {
            protocol: PROTOCOL_VERSION,
            agent,
            token,
        };
        self.call("hello", &args).await
    }

    /// Sends `op` with `args` and decodes the `ok` value into `R`.
    pub async fn call<A, R>(&self, op: &str, args: &A) -> Result<R, ClientError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.submit(op, args).await?.reply().await
    }

    /// Sends `op` with `args`, whose reply carries nothing (`{}`).
    pub(crate) async fn call_unit<A: Serialize + ?Sized>(
        &self,
        op: &str,
        args: &A,
    ) -> Result<(), ClientError> {
        let _: serde::de::IgnoredAny = self.call(op, args).await?;
        Ok(())
    }

    /// Sends `op` with `args` and returns the raw `ok` value.
    pub async fn call_value<A: Serialize + ?Sized>(
        &self,
        op: &str,
        args: &A,
    ) -> Result<Value, ClientError> {
        self.submit(op, args).await?.value().await
    }

    /// Queues `op` for writing and returns without waiting for its reply. Requests submitted one
    /// after another are written, and read by the daemon, in that order: this is how to
    /// pipeline while keeping order (e.g. sends that must stay FIFO).
    pub async fn submit<A: Serialize + ?Sized>(
        &self,
        op: &str,
        args: &A,
    ) -> Result<Pending, ClientError> {
        let id = self.next_id();
        self.submit_as(id, op, args, None).await
    }

    /// A fresh request id, for a call whose pushes must be routed before it is written.
    pub(crate) fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Submits `op` under `id`; a `subscription` route is installed when the reply arrives.
    pub(crate) async fn submit_as<A: Serialize + ?Sized>(
        &self,
        id: u64,
        op: &str,
        args: &A,
        subscription: Option<Route>,
    ) -> Result<Pending, ClientError> {
        let (reply, rx) = oneshot::channel();
        let waiter = Waiter {
            reply,
            subscription,
        };
        match self.inner.pending.lock().expect("pending lock").as_mut() {
            Some(pending) => pending.insert(id, waiter),
            None => return Err(ClientError::Closed),
        };
        if let Err(e) = self.inner.output.queue(id, op, args).await {
            let mut pending = self.inner.pending.lock().expect("pending lock");
            pending.as_mut().map(|p| p.remove(&id));
            return Err(e);
        }
        Ok(Pending { rx })
    }

    /// Sends the pushes of `owner` to `route` from now on.
    pub(crate) fn route(&self, owner: Owner, route: Route) {
        self.inner
            .routes
            .lock()
            .expect("routes lock")
            .insert(owner, Some(route));
    }

    /// Stops routing the pushes of `owner`, which sends no more of them; a later one would go to
    /// [`Client::next_push`].
    pub(crate) fn unroute(&self, owner: &Owner) {
        self.inner.routes.lock().expect("routes lock").remove(owner);
    }

    /// Drops the pushes of `owner` from now on.
    pub(crate) fn discard(&self, owner: Owner) {
        let mut routes = self.inner.routes.lock().expect("routes lock");
        routes.insert(owner, None);
    }

    /// Sends `op` from a destructor: written in the background, its reply ignored. Without a
    /// runtime (the program is ending) nothing is sent; closing the connection then ends what
    /// the call would have ended.
    pub(crate) fn send_and_forget<A: Serialize + Send + Sync + 'static>(
        &self,
        op: &'static str,
        args: A,
    ) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let client = self.clone();
            runtime.spawn(async move {
                let _ = client.call_value(op, &args).await;
            });
        }
    }

    /// Waits for the next server push; `None` once the connection is closed.
    pub async fn next_push(&self) -> Option<Push> {
        self.inner.pushes.lock().await.recv().await
    }
}

async fn read_loop(
    mut reader: FrameReader<tokio::net::unix::OwnedReadHalf>,
    pending: Waiters,
    routes: Routes,
    pushes: mpsc::UnboundedSender<Push>,
) {
    while let Ok(Some(body)) = reader.read_frame().await {
        match decode_incoming(&body) {
            Ok(Incoming::Response { id, result }) => {
                let waiter = pending
                    .lock()
                    .expect("pending lock")
                    .as_mut()
                    .and_then(|p| p.remove(&id));
                if let Some(waiter) = waiter {
                    if let (Some(route), Ok(ok)) = (waiter.subscription, &result) {
                        if let Ok(sub) = ok.parse::<Subscribed>() {
                            let owner = Owner::Subscription(sub.subscription);
                            let mut routes = routes.lock().expect("routes lock");
                            routes.insert(owner, Some(route));
                        }
                    }
                    let _ = waiter.reply.send(result);
                } else if let Err(err) = result {
                    // An error for id 0 (bad_frame) or an unknown id: hand it to every caller.
                    fail_all(&pending, Some(err));
                    break;
                }
            }
            Ok(Incoming::Push { push, data }) => {
                let push = Push { push, data };
                let owner = push.owner();
                let route = routes.lock().expect("routes lock").get(&owner).cloned();
                // A push nobody claimed goes to `next_push`, as does one whose stream was dropped
                // before its owner said it was gone.
                let unowned = match route {
                    Some(Some(route)) => route.send(push).err().map(|e| e.0),
                    Some(None) => None,
                    None => Some(push),
                };
                if let Some(push) = unowned {
                    let _ = pushes.send(push);
                }
            }
            Err(_) => break,
        }
    }
    // Routed streams end: their senders go with the table's entries.
    routes.lock().expect("routes lock").clear();
    fail_all(&pending, None);
}

/// The reply of `pubsub.subscribe`, read by the reading task to route what follows.
#[derive(Deserialize)]
pub(crate) struct Subscribed {
    pub(crate) subscription: String,
}

impl Push {
    /// Who this push belongs to: LLM pushes name their request, any other is a subscription's.
    fn owner(&self) -> Owner {
        let request = match self.push.as_str() {
            "llm.delta" | "llm.tool_call" => self.data["request"].as_u64(),
            _ => None,
        };
        match request {
            Some(id) => Owner::Request(id),
            None => Owner::Subscription(self.push.clone()),
        }
    }
}

fn fail_all(pending: &Waiters, err: Option<ErrorBody>) {
    let waiters = pending
        .lock()
        .expect("pending lock")
        .take()
        .unwrap_or_default();
    for (_, waiter) in waiters {
        if let Some(err) = &err {
            let _ = waiter.reply.send(Err(err.clone()));
        }
    }
}

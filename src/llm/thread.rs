//! Threads: conversations whose history the daemon keeps. Each thread is a supervised actor (one
//! per thread id, in a `Directory`) that holds its context's [`View`]: the metadata of what is
//! out of the context and the newest in-context exchanges, rebuilt from Postgres when the actor
//! starts (first use in this daemon's life, or after a panic) by replaying the thread's events.
//! Prompts on a thread take turns: `Begin` hands the context to one prompt at a time (or refuses
//! at once with `if_busy: "reject"`), and `Finish` appends that turn's messages as one exchange
//! in one statement, so a tool call is never stored without its result. A turn dropped without
//! `Finish` (a failed prompt) appends nothing. `Edit`s (marks, rewinds, exclusions, deletions,
//! summaries, the window) are stored first and applied to the view after their commit. A
//! thread unused for `[llm] thread_idle_ms`, with no turn running or waiting, stops its actor.

use super::context::{self, Entry, Event, Filter, Mark, Summary, View};
use super::provider::Message;
use super::tokenizer;
use super::window::{Strategy, Window};
use super::LlmError;
use crate::postgres::context as store;
use actix::prelude::*;
use deadpool_postgres::Pool;
use futures::future::LocalBoxFuture;
use ikigai_actors::alarm::{Alarm, Alarmed};
use ikigai_actors::directory::{Directory, Leave};
use ikigai_actors::supervise::guarded;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::warn;
use uuid::Uuid;

type Reply<T> = oneshot::Sender<Result<T, LlmError>>;

/// What a turn starts from.
#[derive(Clone)]
pub struct Snapshot {
    /// The thread's `context` line.
    pub context: Option<String>,
    pub summary: Option<Summary>,
    /// In-context entries, oldest first.
    pub entries: Vec<Entry>,
    pub window: Window,
}

/// Asks for the thread's next turn for `agent`.
#[derive(Message)]
#[rtype(result = "()")]
struct Begin {
    agent: String,
    reject_if_busy: bool,
    reply: Reply<Snapshot>,
}

/// Ends the running turn, appending `messages` as `exchange` (none when the prompt failed).
#[derive(Message)]
#[rtype(result = "()")]
struct Finish {
    messages: Vec<Message>,
    exchange: Uuid,
    reply: Option<Reply<()>>,
}

/// A change to the thread's context.
pub enum Change {
    Mark(String),
    Rewind(String),
    Exclude(Uuid),
    /// The newest `n` exchanges in context.
    ExcludePrevious(usize),
    Delete(u32),
    /// `tokens: Some(None)` resets to the model's size.
    Window {
        tokens: Option<Option<u32>>,
        strategy: Option<Strategy>,
    },
    /// A summary written on top of summary `base` (the one in force when it was asked for).
    Summary {
        base: Option<i64>,
        covers: u32,
        text: String,
        interaction: Uuid,
    },
}

/// What a change did.
pub enum Changed {
    Marked(Mark),
    Rewound(u32),
    Excluded(u32),
    Deleted,
    Window(Window),
    Summarized(Summary),
}

#[derive(Message)]
#[rtype(result = "()")]
struct Edit {
    agent: String,
    change: Change,
    reply: Reply<Changed>,
}

/// What is out of the context now, and the history's length (for reads of history).
pub struct Look {
    pub filter: Filter,
    pub next_seq: u32,
    pub summary: Option<Summary>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Peek {
    agent: String,
    reply: Reply<Look>,
}

/// The rules of one thread, without actix: its view, whether a turn runs, who waits.
#[derive(Default)]
struct ThreadState {
    owner: String,
    context: Option<String>,
    window: Window,
    view: View,
    busy: bool,
    waiting: VecDeque<(String, Reply<Snapshot>)>,
}

impl ThreadState {
    fn snapshot(&mut self) -> Snapshot {
        if let Some(bpe) = tokenizer::ready() {
            self.view.count_with(bpe);
        }
        Snapshot {
            context: self.context.clone(),
            summary: self.view.summary.clone(),
            entries: self.view.tail().cloned().collect(),
            window: self.window,
        }
    }

    /// Hands out the next turn if none is running (skipping callers that went away).
    fn serve(&mut self) {
        while !self.busy {
            let Some((agent, reply)) = self.waiting.pop_front() else {
                return;
            };
            if agent != self.owner {
                let _ = reply.send(Err(no_thread()));
                continue;
            }
            self.busy = reply.send(Ok(self.snapshot())).is_ok();
        }
    }

    fn is_quiet(&self) -> bool {
        !self.busy && self.waiting.is_empty()
    }

    fn fail_waiting(&mut self, e: impl Fn() -> LlmError) {
        for (_, reply) in self.waiting.drain(..) {
            let _ = reply.send(Err(e()));
        }
    }

    /// The stored effect of a change, checked against the view first.
    fn plan(&self, change: Change, pool: Pool, id: Uuid) -> Result<Planned, LlmError> {
        let view = &self.view;
        Ok(match change {
            Change::Mark(label) => {
                let mark = Mark {
                    id: Uuid::now_v7(),
                    label,
                    position: view.next_seq,
                    summary: view.summary.as_ref().map(|s| s.n),
                };
                Box::pin(async move {
                    store::insert_event(&pool, id, &mark_row(&mark)).await?;
                    Ok((vec![Event::Mark(mark.clone())], Changed::Marked(mark)))
                })
            }
            Change::Rewind(which) => {
                let mark = view
                    .mark(&which)
                    .ok_or_else(|| LlmError::NotFound(format!("no mark {which:?} on this thread")))?
                    .clone();
                let (from, until) = (mark.position, view.next_seq);
                let keep = view.summary_after_rewind(&mark);
                let current = view.summary.clone().filter(|s| Some(s.n) == keep);
                let rewound = (from..until)
                    .filter(|&s| view.filter.state(s, None, false) != context::State::Rewound)
                    .count() as u32;
                Box::pin(async move {
                    let summary = match (keep, current) {
                        (_, Some(s)) => Some(s),
                        (Some(n), None) => store::summary(&pool, n).await?,
                        (None, None) => None,
                    };
                    let row = store::NewEvent {
                        kind: "rewind",
                        position: Some(from),
                        until: Some(until),
                        mark: Some(mark.id),
                        summary_ref: keep,
                        ..Default::default()
                    };
                    store::insert_event(&pool, id, &row).await?;
                    let event = Event::Rewind {
                        from,
                        until,
                        summary,
                    };
                    Ok((vec![event], Changed::Rewound(rewound)))
                })
            }
            Change::ExcludePrevious(n) => {
                let exchanges = view.previous_exchanges(n);
                let mut planned = Vec::new();
                for x in exchanges {
                    planned.push(self.plan(Change::Exclude(x), pool.clone(), id)?);
                }
                Box::pin(async move {
                    let mut events = Vec::new();
                    let mut total = 0;
                    for p in planned {
                        let (done, changed) = p.await?;
                        events.extend(done);
                        total += match changed {
                            Changed::Excluded(n) => n,
                            _ => 0,
                        };
                    }
                    Ok((events, Changed::Excluded(total)))
                })
            }
            Change::Exclude(exchange) => {
                if view.filter.state(0, Some(exchange), false) == context::State::Excluded {
                    return Ok(Box::pin(async { Ok((Vec::new(), Changed::Excluded(0))) }));
                }
                let in_tail = view.exchange_len(exchange) as u32;
                Box::pin(async move {
                    let n = match in_tail {
                        0 => store::exchange_len(&pool, id, exchange).await?,
                        n => n,
                    };
                    if n == 0 {
                        return Err(LlmError::NotFound(format!(
                            "no exchange {exchange} on this thread"
                        )));
                    }
                    let row = store::NewEvent {
                        kind: "exclude",
                        exchange: Some(exchange),
                        ..Default::default()
                    };
                    store::insert_event(&pool, id, &row).await?;
                    Ok((vec![Event::Exclude(exchange)], Changed::Excluded(n)))
                })
            }
            Change::Delete(seq) => Box::pin(async move {
                let Some(kept) = store::delete(&pool, id, seq).await? else {
                    return Err(LlmError::NotFound(format!(
                        "no message {seq} on this thread"
                    )));
                };
                let message = Arc::new(kept);
                Ok((vec![Event::Delete { seq, message }], Changed::Deleted))
            }),
            Change::Window { tokens, strategy } => {
                let window = Window {
                    tokens: tokens.unwrap_or(self.window.tokens),
                    strategy: strategy.unwrap_or(self.window.strategy),
                };
                Box::pin(async move {
                    store::set_window(&pool, id, window).await?;
                    Ok((Vec::new(), Changed::Window(window)))
                })
            }
            Change::Summary {
                base,
                covers,
                text,
                interaction,
            } => {
                if view.summary.as_ref().map(|s| s.n) != base {
                    return Err(LlmError::Conflict(
                        "the thread's summary changed while this one was written; retry".into(),
                    ));
                }
                Box::pin(async move {
                    let row = store::NewEvent {
                        kind: "summary",
                        position: Some(covers),
                        body: Some(&text),
                        interaction: Some(interaction),
                        ..Default::default()
                    };
                    let n = store::insert_event(&pool, id, &row).await?;
                    let summary = Summary { n, covers, text };
                    Ok((
                        vec![Event::Summary(summary.clone())],
                        Changed::Summarized(summary),
                    ))
                })
            }
        })
    }
}

type Planned = LocalBoxFuture<'static, Result<(Vec<Event>, Changed), LlmError>>;

fn mark_row(mark: &Mark) -> store::NewEvent<'_> {
    store::NewEvent {
        kind: "mark",
        position: Some(mark.position),
        mark: Some(mark.id),
        label: Some(&mark.label),
        summary_ref: mark.summary,
        ..Default::default()
    }
}

/// Estimated tokens of in-context history a thread keeps in memory: twice its window (the
/// calibration may let a call send up to twice the window's size in estimated tokens).
fn keep(window: Window, default: u64) -> u64 {
    2 * window.tokens.map_or(default, u64::from)
}

/// The thread's storage failed when it was loaded; the next request loads it again.
fn not_loaded() -> LlmError {
    let e = "the thread could not be read from storage; retry".to_owned();
    LlmError::Store(ikigai_actors::store::StoreError::Unavailable(e))
}

fn no_thread() -> LlmError {
    LlmError::NotFound("no such thread".into())
}

pub struct ThreadActor {
    id: Uuid,
    pool: Pool,
    state: ThreadState,
    loaded: bool,
    /// Tokens of in-context history kept in memory when the thread names no window.
    default_keep: u64,
    /// When a prompt last began or finished a turn here.
    used: Instant,
    idle: Duration,
    /// Set only while quiet, for the idle stop.
    alarm: Alarm,
    leave: Leave<ThreadActor>,
}

/// A thread read from storage.
struct Loaded {
    head: store::Head,
    view: View,
}

impl ThreadActor {
    /// Runs thread logic with panics contained (a panic stops the actor for a restart), then
    /// sets the alarm for the idle stop if the thread is quiet now.
    fn guarded<T>(&mut self, ctx: &mut Context<Self>, f: impl FnOnce(&mut ThreadState) -> T) {
        let id = self.id.to_string();
        let _ = guarded::<Self, _, _>(ctx, "thread", &id, &mut self.state, f);
        self.rearm(ctx);
    }

    fn keep(&self, window: Window) -> u64 {
        keep(window, self.default_keep)
    }

    /// Loads the thread and replays its events; other messages wait until it is done.
    fn load(&mut self, ctx: &mut Context<Self>) {
        let (pool, id, default_keep) = (self.pool.clone(), self.id, self.default_keep);
        let fut = async move {
            let Some(head) = store::head(&pool, id).await? else {
                return Ok(None);
            };
            let keep = keep(head.window, default_keep);
            let mut view = View::new(head.next_seq, keep);
            for event in store::events(&pool, id).await? {
                view.apply(event);
            }
            let (tail, evicted) =
                store::tail(&pool, id, &view.filter, view.next_seq, view.keep).await?;
            view.set_tail(tail, evicted);
            Ok::<_, ikigai_actors::store::StoreError>(Some(Loaded { head, view }))
        };
        ctx.wait(fut.into_actor(self).map(|result, act, ctx| match result {
            Ok(Some(Loaded { head, view })) => {
                act.state.owner = head.agent;
                act.state.context = head.context;
                act.state.window = head.window;
                act.state.view = view;
                act.loaded = true;
                act.guarded(ctx, ThreadState::serve);
            }
            Ok(None) => act.guarded(ctx, |s| s.fail_waiting(no_thread)),
            Err(e) => {
                warn!(thread = %act.id, error = %e, "loading a thread failed");
                act.guarded(ctx, |s| s.fail_waiting(|| LlmError::Store(e.clone())));
            }
        }));
    }

    /// Reads the tail again (after a change took entries out of a tail that had left older
    /// ones in storage, or the window grew).
    fn reload_tail(&mut self, ctx: &mut Context<Self>) {
        let (pool, id) = (self.pool.clone(), self.id);
        let view = &self.state.view;
        let (filter, next, keep) = (view.filter.clone(), view.next_seq, view.keep);
        let fut = async move { store::tail(&pool, id, &filter, next, keep).await };
        ctx.wait(fut.into_actor(self).map(|result, act, _| match result {
            Ok((tail, evicted)) => act.state.view.set_tail(tail, evicted),
            Err(e) => warn!(thread = %act.id, error = %e, "reloading a thread's context failed"),
        }));
    }
}

impl Actor for ThreadActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.load(ctx);
    }
}

/// The alarm rings for the idle stop; not while a load or a write runs (`ctx.wait`), nor
/// with a turn running or waiting: a thread stops only between turns, none unanswered.
impl Alarmed for ThreadActor {
    fn alarm(&mut self) -> &mut Alarm {
        &mut self.alarm
    }

    fn next_due(&self) -> Option<Instant> {
        self.state.is_quiet().then(|| self.used + self.idle)
    }

    fn ring(&mut self, ctx: &mut Context<Self>) {
        match self.state.is_quiet() && self.used.elapsed() >= self.idle {
            true => self.leave.stop(ctx),
            false => self.rearm(ctx),
        }
    }
}

impl Supervised for ThreadActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        if !self.leave.after_stop() {
            warn!(thread = %self.id, "thread actor restarting; reloading its context");
        }
        self.state = ThreadState::default();
        self.loaded = false;
        self.alarm.clear();
    }
}

impl Handler<Begin> for ThreadActor {
    type Result = ();

    fn handle(&mut self, msg: Begin, ctx: &mut Context<Self>) {
        self.used = Instant::now();
        if msg.reject_if_busy && self.loaded && !self.state.is_quiet() {
            let _ = msg.reply.send(Err(LlmError::Conflict(format!(
                "thread {} is busy with another prompt (if_busy: \"reject\")",
                self.id
            ))));
            return;
        }
        self.state.waiting.push_back((msg.agent, msg.reply));
        match self.loaded {
            true => self.guarded(ctx, ThreadState::serve),
            false => self.load(ctx),
        }
    }
}

impl Handler<Finish> for ThreadActor {
    type Result = ();

    fn handle(&mut self, msg: Finish, ctx: &mut Context<Self>) {
        self.used = Instant::now();
        if msg.messages.is_empty() {
            self.guarded(ctx, |s| {
                s.busy = false;
                s.serve();
            });
            return;
        }
        let from = self.state.view.next_seq;
        let entries: Vec<Entry> = msg
            .messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| Entry::new(from + i as u32, Some(msg.exchange), m))
            .collect();
        let (pool, id) = (self.pool.clone(), self.id);
        let stored = entries.clone();
        let fut = async move { store::append(&pool, id, &stored).await };
        ctx.wait(fut.into_actor(self).map(move |result, act, ctx| {
            let outcome = result.map_err(LlmError::Store);
            act.guarded(ctx, |s| {
                if outcome.is_ok() {
                    s.view.append(entries);
                }
                s.busy = false;
                s.serve();
            });
            if let Some(reply) = msg.reply {
                let _ = reply.send(outcome);
            }
        }));
    }
}

impl Handler<Edit> for ThreadActor {
    type Result = ();

    fn handle(&mut self, msg: Edit, ctx: &mut Context<Self>) {
        if !self.loaded {
            let _ = msg.reply.send(Err(not_loaded()));
            self.load(ctx);
            return;
        }
        if msg.agent != self.state.owner {
            let _ = msg.reply.send(Err(no_thread()));
            return;
        }
        let planned = self.state.plan(msg.change, self.pool.clone(), self.id);
        let planned = match planned {
            Ok(p) => p,
            Err(e) => {
                let _ = msg.reply.send(Err(e));
                return;
            }
        };
        let reply = msg.reply;
        ctx.wait(planned.into_actor(self).map(move |result, act, ctx| {
            let mut reload = false;
            if let Ok((events, changed)) = &result {
                if let Changed::Window(w) = changed {
                    let keep = act.keep(*w);
                    reload = keep > act.state.view.keep && act.state.view.evicted;
                    act.state.window = *w;
                    act.state.view.keep = keep;
                }
                for event in events.iter().cloned() {
                    act.guarded(ctx, |s| reload |= s.view.apply(event));
                }
            }
            if reload {
                act.reload_tail(ctx);
            }
            let _ = reply.send(result.map(|(_, changed)| changed));
        }));
    }
}

impl Handler<Peek> for ThreadActor {
    type Result = ();

    fn handle(&mut self, msg: Peek, ctx: &mut Context<Self>) {
        if !self.loaded {
            self.load(ctx);
        }
        let look = match (self.loaded, msg.agent == self.state.owner) {
            (false, _) => Err(not_loaded()),
            (true, false) => Err(no_thread()),
            (true, true) => Ok(Look {
                filter: self.state.view.filter.clone(),
                next_seq: self.state.view.next_seq,
                summary: self.state.view.summary.clone(),
            }),
        };
        let _ = msg.reply.send(look);
    }
}

/// The turn of one prompt on a thread; dropping it unfinished lets the next prompt go.
pub struct Turn {
    addr: Addr<ThreadActor>,
    pub snapshot: Snapshot,
    finished: bool,
}

impl Turn {
    /// Appends the turn's messages as `exchange` and ends the turn.
    pub async fn finish(mut self, messages: Vec<Message>, exchange: Uuid) -> Result<(), LlmError> {
        self.finished = true;
        let (reply, rx) = oneshot::channel();
        let finish = Finish {
            messages,
            exchange,
            reply: Some(reply),
        };
        self.addr.send(finish).await.map_err(|_| restarted())?;
        rx.await.map_err(|_| restarted())?
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.finished {
            self.addr.do_send(Finish {
                messages: Vec::new(),
                exchange: Uuid::nil(),
                reply: None,
            });
        }
    }
}

fn restarted() -> LlmError {
    LlmError::Internal("the thread's actor restarted; its context is reloaded, retry".into())
}

/// The thread actors this daemon runs.
pub struct Threads {
    pool: Pool,
    actors: Directory<ThreadActor>,
}

impl Threads {
    /// `idle`: how long an unused thread's actor lives on; `keep`: tokens of in-context history
    /// kept in memory for a thread that names no window.
    pub fn new(pool: Pool, idle: Duration, keep: u64) -> Threads {
        let make_pool = pool.clone();
        let actors = Directory::new(move |id: String, leave| ThreadActor {
            id: Uuid::parse_str(&id).unwrap_or_default(),
            pool: make_pool.clone(),
            state: ThreadState::default(),
            loaded: false,
            default_keep: keep,
            used: Instant::now(),
            idle,
            alarm: Alarm::default(),
            leave,
        });
        Threads { pool, actors }
    }

    /// Thread actors running now.
    pub fn running(&self) -> usize {
        self.actors.count()
    }

    pub async fn create(&self, agent: &str, context: Option<String>) -> Result<Uuid, LlmError> {
        let id = Uuid::new_v4();
        store::create_thread(&self.pool, id, agent, context.as_deref()).await?;
        Ok(id)
    }

    /// The thread's actor; another agent's or an unknown thread is `NotFound`. An actor is
    /// started only for a thread that exists.
    async fn actor(&self, id: Uuid, agent: &str) -> Result<Addr<ThreadActor>, LlmError> {
        let name = id.to_string();
        if self.actors.running(&name).is_none() {
            let owner = store::thread_owner(&self.pool, id).await?;
            if owner.as_deref() != Some(agent) {
                return Err(LlmError::NotFound(format!("no thread {id}")));
            }
        }
        Ok(self.actors.get(&name))
    }

    /// Sends the thread's actor the message `make` builds around a reply, and waits for it.
    async fn ask<M, T>(
        &self,
        addr: &Addr<ThreadActor>,
        make: impl FnOnce(Reply<T>) -> M,
    ) -> Result<T, LlmError>
    where
        M: actix::Message<Result = ()> + Send + 'static,
        ThreadActor: Handler<M>,
    {
        let (reply, rx) = oneshot::channel();
        addr.send(make(reply)).await.map_err(|_| restarted())?;
        rx.await.map_err(|_| restarted())?
    }

    /// Waits for the thread's turn (or refuses at once if it is busy and `reject_if_busy`).
    pub async fn begin(
        &self,
        id: Uuid,
        agent: &str,
        reject_if_busy: bool,
    ) -> Result<Turn, LlmError> {
        let addr = self.actor(id, agent).await?;
        let agent = agent.to_owned();
        let snapshot = self
            .ask(&addr, |reply| Begin {
                agent,
                reject_if_busy,
                reply,
            })
            .await?;
        Ok(Turn {
            addr,
            snapshot,
            finished: false,
        })
    }

    /// Applies a change to the thread's context, after storing it.
    pub async fn edit(&self, id: Uuid, agent: &str, change: Change) -> Result<Changed, LlmError> {
        let addr = self.actor(id, agent).await?;
        let agent = agent.to_owned();
        self.ask(&addr, |reply| Edit {
            agent,
            change,
            reply,
        })
        .await
    }

    /// What is out of the thread's context now.
    pub async fn look(&self, id: Uuid, agent: &str) -> Result<Look, LlmError> {
        let addr = self.actor(id, agent).await?;
        let agent = agent.to_owned();
        self.ask(&addr, |reply| Peek { agent, reply }).await
    }
}

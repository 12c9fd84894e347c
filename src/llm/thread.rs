//! Threads: conversations whose history the daemon keeps. Each thread is a supervised actor (one
//! per thread id, in a `Directory`) that holds its history in memory, loaded from Postgres when
//! the actor starts (first use in this daemon's life, or after a panic), so follow-ups work
//! across restarts. Prompts on a thread take turns: `Begin` hands the conversation to one prompt
//! at a time, and `Finish` appends that turn's messages (the request, the answers, the tool
//! results) in one statement, so a tool call is never stored without its result, then hands out
//! the next turn. A turn dropped without `Finish` (a failed prompt) appends nothing. A thread
//! unused for `[llm] thread_idle_ms`, with no turn running or waiting, stops its actor (its
//! history is in Postgres; the next prompt loads it again).

use super::provider::{Message, Role};
use super::LlmError;
use crate::postgres;
use actix::prelude::*;
use deadpool_postgres::Pool;
use ikigai_actors::alarm::{Alarm, Alarmed};
use ikigai_actors::directory::{Directory, Leave};
use ikigai_actors::supervise::guarded;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::warn;
use uuid::Uuid;

type Reply<T> = oneshot::Sender<Result<T, LlmError>>;

/// Asks for the thread's next turn for `agent`; answered with the conversation so far.
#[derive(Message)]
#[rtype(result = "()")]
struct Begin {
    agent: String,
    reply: Reply<Vec<Message>>,
}

/// Ends the running turn, appending `messages` (none when the prompt failed).
#[derive(Message)]
#[rtype(result = "()")]
struct Finish {
    messages: Vec<Message>,
    reply: Option<Reply<()>>,
}

/// The rules of one thread, without actix: its history, whether a turn runs, who waits.
#[derive(Default)]
struct ThreadState {
    owner: String,
    context: Option<String>,
    history: Vec<Message>,
    busy: bool,
    waiting: VecDeque<(String, Reply<Vec<Message>>)>,
}

impl ThreadState {
    /// The context as a system message, then the history.
    fn conversation(&self) -> Vec<Message> {
        let context = self.context.iter().map(|c| Message {
            role: Role::System,
            content: c.clone(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            is_error: false,
        });
        context.chain(self.history.iter().cloned()).collect()
    }

    /// Hands out the next turn if none is running (skipping callers that went away).
    fn serve(&mut self) {
        while !self.busy {
            let Some((agent, reply)) = self.waiting.pop_front() else {
                return;
            };
            if agent != self.owner {
                let _ = reply.send(Err(LlmError::NotFound("no such thread".into())));
                continue;
            }
            self.busy = reply.send(Ok(self.conversation())).is_ok();
        }
    }

    /// No turn runs and none waits.
    fn is_quiet(&self) -> bool {
        !self.busy && self.waiting.is_empty()
    }

    fn fail_waiting(&mut self, e: impl Fn() -> LlmError) {
        for (_, reply) in self.waiting.drain(..) {
            let _ = reply.send(Err(e()));
        }
    }
}

pub struct ThreadActor {
    id: Uuid,
    pool: Pool,
    state: ThreadState,
    loaded: bool,
    /// When a prompt last began or finished a turn here.
    used: Instant,
    idle: Duration,
    /// Set only while quiet, for the idle stop.
    alarm: Alarm,
    leave: Leave<ThreadActor>,
}

impl ThreadActor {
    /// Runs thread logic with panics contained (a panic stops the actor for a restart), then
    /// sets the alarm for the idle stop if the thread is quiet now.
    fn guarded<T>(&mut self, ctx: &mut Context<Self>, f: impl FnOnce(&mut ThreadState) -> T) {
        let id = self.id.to_string();
        let _ = guarded::<Self, _, _>(ctx, "thread", &id, &mut self.state, f);
        self.rearm(ctx);
    }

    /// Loads owner, context and history; other messages wait until it is done.
    fn load(&mut self, ctx: &mut Context<Self>) {
        let (pool, id) = (self.pool.clone(), self.id);
        let fut = async move { postgres::llm::load_thread(&pool, id).await };
        ctx.wait(fut.into_actor(self).map(|result, act, ctx| match result {
            Ok(Some((owner, context, rows))) => match history(rows) {
                Ok(history) => {
                    act.state.owner = owner;
                    act.state.context = context;
                    act.state.history = history;
                    act.loaded = true;
                    act.guarded(ctx, ThreadState::serve);
                }
                Err(e) => act.guarded(ctx, |s| s.fail_waiting(|| LlmError::Internal(e.clone()))),
            },
            Ok(None) => act.guarded(ctx, |s| {
                s.fail_waiting(|| LlmError::NotFound("no such thread".into()))
            }),
            Err(e) => {
                warn!(thread = %act.id, error = %e, "loading a thread failed");
                act.guarded(ctx, |s| s.fail_waiting(|| LlmError::Store(e.clone())));
            }
        }));
    }
}

/// Stored messages as messages.
fn history(rows: Vec<serde_json::Value>) -> Result<Vec<Message>, String> {
    let parsed: Result<Vec<Message>, _> = rows.into_iter().map(serde_json::from_value).collect();
    parsed.map_err(|e| format!("unreadable thread history: {e}"))
}

impl Actor for ThreadActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.load(ctx);
    }
}

/// The alarm rings for the idle stop; not while a load or an append runs (`ctx.wait`), nor
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
            warn!(thread = %self.id, "thread actor restarting; reloading its history");
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
        let (pool, id, from) = (self.pool.clone(), self.id, self.state.history.len());
        let rows: Vec<serde_json::Value> = msg
            .messages
            .iter()
            .map(|m| serde_json::to_value(m).unwrap_or_default())
            .collect();
        let fut = async move { postgres::llm::append_thread(&pool, id, from, &rows).await };
        ctx.wait(fut.into_actor(self).map(move |result, act, ctx| {
            let outcome = result.map_err(LlmError::Store);
            act.guarded(ctx, |s| {
                if outcome.is_ok() {
                    s.history.extend(msg.messages);
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

/// The turn of one prompt on a thread; dropping it unfinished lets the next prompt go.
pub struct Turn {
    addr: Addr<ThreadActor>,
    pub conversation: Vec<Message>,
    finished: bool,
}

impl Turn {
    /// Appends the turn's messages and ends the turn.
    pub async fn finish(mut self, messages: Vec<Message>) -> Result<(), LlmError> {
        self.finished = true;
        let (reply, rx) = oneshot::channel();
        let finish = Finish {
            messages,
            reply: Some(reply),
        };
        self.addr.send(finish).await.map_err(|_| restarted())?;
        rx.await.map_err(|_| restarted())?
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.finished {
            let messages = Vec::new();
            self.addr.do_send(Finish {
                messages,
                reply: None,
            });
        }
    }
}

fn restarted() -> LlmError {
    LlmError::Internal("the thread's actor restarted; its history is reloaded, retry".into())
}

/// The thread actors this daemon runs.
pub struct Threads {
    pool: Pool,
    actors: Directory<ThreadActor>,
}

impl Threads {
    /// `idle`: how long an unused thread's actor lives on.
    pub fn new(pool: Pool, idle: Duration) -> Threads {
        let make_pool = pool.clone();
        let actors = Directory::new(move |id: String, leave| ThreadActor {
            id: Uuid::parse_str(&id).unwrap_or_default(),
            pool: make_pool.clone(),
            state: ThreadState::default(),
            loaded: false,
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
        postgres::llm::create_thread(&self.pool, id, agent, context.as_deref()).await?;
        Ok(id)
    }

    /// Waits for the thread's turn; another agent's or an unknown thread is `NotFound`. An actor
    /// is started only for a thread that exists.
    pub async fn begin(&self, id: Uuid, agent: &str) -> Result<Turn, LlmError> {
        let name = id.to_string();
        if self.actors.running(&name).is_none() {
            let owner = postgres::llm::thread_owner(&self.pool, id).await?;
            if owner.as_deref() != Some(agent) {
                return Err(LlmError::NotFound(format!("no thread {id}")));
            }
        }
        let addr = self.actors.get(&name);
        let (reply, rx) = oneshot::channel();
        let begin = Begin {
            agent: agent.to_owned(),
            reply,
        };
        addr.send(begin).await.map_err(|_| restarted())?;
        let conversation = rx.await.map_err(|_| restarted())??;
        Ok(Turn {
            addr,
            conversation,
            finished: false,
        })
    }
}

//! The queue actor: one per queue, supervised, its window rebuilt from storage on restart.
//!
//! Every state change that other agents could observe is a write through the persister
//! (pushes, claims, settlements); the actor applies its effect in memory only after the commit.
//!
//! It never polls: its [`Alarm`] rings at the next thing due (a lease running out, a waiting
//! claim's wait ending, the idle stop), and a second timer reloads the window when a scheduled
//! task falls due.

use super::state::{Held, LiveCounts, QueueState, Waiter};
use super::QueueError;
use crate::alarm::{Alarm, Alarmed};
use crate::directory::Leave;
use crate::message::SessionId;
use crate::persist::{Lanes, Outcome, Write};
use crate::store::{
    ClaimWrite, PushWrite, Pushed, QueueStore, Refusal, Settle, SettleWrite, StoreError,
};
use crate::supervise::{guarded, retry_delay};
use crate::task::{won_by, Lease, NewTask, Rank, Task};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::{info, warn};
use uuid::Uuid;

/// Tunables of every queue actor (`[queues]` in `ikigai.conf`).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// Most claimable tasks kept in memory per queue.
    pub window: usize,
    /// How long a queue stays unused, holding nothing that lives only in memory (no waiting
    /// consumer, no claim, no write in flight), before its actor stops.
    pub idle: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            window: 10_000,
            idle: Duration::from_secs(300),
        }
    }
}

/// Commits tasks; answers with one [`Pushed`] per task, after the commit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Push {
    pub tasks: Vec<NewTask>,
    pub reply: oneshot::Sender<Result<Vec<Pushed>, QueueError>>,
}

/// Claims up to `max` tasks for `lease`; parks the caller for up to `wait` when none is ready.
/// The answer always comes: tasks, or none once the wait is over.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Claim {
    pub session: SessionId,
    pub lease: Lease,
    pub max: usize,
    pub wait: Option<Duration>,
    pub reply: oneshot::Sender<Result<Vec<Task>, QueueError>>,
}

/// Completes, fails, extends or releases a claimed task on behalf of `agent`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SettleTask {
    pub agent: String,
    pub id: Uuid,
    pub action: Settle,
    pub reply: oneshot::Sender<Result<Task, QueueError>>,
}

/// A session ended: its claims are released with their attempt counted.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionClosed(pub SessionId);

/// Storage changed behind the actor's back (another daemon, plain SQL, a sweep): reload.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Refresh;

/// A task was settled elsewhere (inside a committed transaction): forget its lease, reload.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SettledElsewhere(pub Uuid);

/// A lease held here was extended inside a committed transaction.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ExtendedElsewhere {
    pub id: Uuid,
    pub deadline: Instant,
}

/// Claims committed inside a transaction, to be held (expired, released on disconnect) here.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Adopt {
    pub ids: Vec<Uuid>,
    pub held: Held,
}

/// Live counters.
#[derive(Message)]
#[rtype(result = "LiveCounts")]
pub struct Stats;

#[derive(Message)]
#[rtype(result = "()")]
struct Pushes {
    waiters: Vec<Option<Waiter>>,
    result: Result<Outcome, StoreError>,
    reply: oneshot::Sender<Result<Vec<Pushed>, QueueError>>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Claims {
    waiter: Waiter,
    candidates: Vec<Task>,
    result: Result<Outcome, StoreError>,
}

type SettleReply = Option<oneshot::Sender<Result<Task, QueueError>>>;

#[derive(Message)]
#[rtype(result = "()")]
struct Settled {
    actions: Vec<Settle>,
    result: Result<Outcome, StoreError>,
    reply: SettleReply,
}

/// One queue.
pub struct Queue {
    state: QueueState,
    store: Arc<dyn QueueStore>,
    lanes: Lanes,
    config: QueueConfig,
    loading: bool,
    load_failures: u32,
    wake: Option<(DateTime<Utc>, SpawnHandle)>,
    /// Writes sent to the persister whose outcome has not come back.
    writing: usize,
    /// When an agent last pushed, claimed or settled here.
    used: Instant,
    alarm: Alarm,
    leave: Leave<Queue>,
    /// `QueueStore::delivers`: the store is a broker.
    broker: Option<Duration>,
    /// The waiting consumers last told to a broker.
    wanted: usize,
}

impl Queue {
    pub fn new(
        name: String,
        store: Arc<dyn QueueStore>,
        lanes: Lanes,
        config: QueueConfig,
        leave: Leave<Queue>,
    ) -> Self {
        Queue {
            state: QueueState::new(name, config.window),
            broker: store.delivers(),
            wanted: 0,
            store,
            lanes,
            config,
            loading: false,
            load_failures: 0,
            wake: None,
            writing: 0,
            used: Instant::now(),
            alarm: Alarm::default(),
            leave,
        }
    }

    fn guarded<T>(
        &mut self,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut QueueState) -> T,
    ) -> Result<T, QueueError> {
        let name = self.state.name().to_owned();
        guarded::<Self, _, _>(ctx, "queue", &name, &mut self.state, f).map_err(|p| {
            QueueError::Panicked {
                queue: name,
                reason: p.0,
            }
        })
    }

    /// Sends `write` to the persister; `done` must bring its outcome back to a handler that
    /// calls [`Queue::written`].
    fn persist(
        &mut self,
        write: Write,
        done: impl FnOnce(Result<Outcome, StoreError>) + Send + 'static,
    ) {
        self.writing += 1;
        self.lanes.persist(write, Box::new(done));
    }

    /// Tells a broker how many consumers wait here when that changed, then re-arms the alarm.
    fn review(&mut self, ctx: &mut Context<Self>) {
        let waiting = self.state.counts().waiting;
        if self.broker.is_some() && waiting != self.wanted {
            self.wanted = waiting;
            self.store.want(self.state.name(), waiting);
        }
        self.rearm(ctx);
    }

    fn written(&mut self) {
        self.writing -= 1;
    }

    /// Stops the actor when the queue has been unused for `config.idle` and nothing of it lives
    /// only here: its tasks are all in storage, and its next use starts a new actor that loads
    /// them. Runs from the alarm, after the mailbox was emptied (and [`Leave::stop`] waits out a
    /// load, after which [`Alarmed::rearm`] rings again at once), so no request is left
    /// unanswered.
    fn stop_if_idle(&mut self, ctx: &mut Context<Self>, now: Instant) {
        if self.stop_at().is_some_and(|at| now >= at) {
            self.leave.stop(ctx);
        }
    }

    /// When the actor stops, if the queue stays unused until then with nothing only in memory.
    fn stop_at(&self) -> Option<Instant> {
        let quiet = self.writing == 0 && self.state.is_quiet();
        quiet.then(|| self.used + self.config.idle)
    }

    /// Reloads the window of claimable tasks and the next due time; blocks other messages
    /// until it is in.
    fn load(&mut self, ctx: &mut Context<Self>) {
        self.read(None, ctx);
    }

    /// Reads the next page after the window's last task (the window ran low, the store holds
    /// more).
    fn page_in(&mut self, ctx: &mut Context<Self>) {
        if self.state.needs_page() {
            let after = self.state.worst();
            self.read(Some(after), ctx);
        }
    }

    /// `None`: reload the whole window; `Some(after)`: add the page ranked after `after`.
    fn read(&mut self, page: Option<Option<Rank>>, ctx: &mut Context<Self>) {
        if self.loading {
            return;
        }
        self.loading = true;
        let store = self.store.clone();
        let name = self.state.name().to_owned();
        let limit = match page {
            None => self.state.capacity(),
            Some(_) => {
                self.state.capacity() - self.state.counts().ready.min(self.state.capacity() - 1)
            }
        };
        let after = page.flatten();
        let fut = async move {
            // Due time first: a task falling due between the two reads is then in one or both
            // (both costs one extra reload), never in neither.
            let next_due = store.next_due(&name).await?;
            let tasks = store.load_claimable(&name, after, limit).await?;
            Ok::<_, StoreError>((tasks, next_due))
        };
        ctx.wait(fut.into_actor(self).map(move |result, act, ctx| {
            act.loading = false;
            match result {
                Ok((tasks, next_due)) => {
                    act.load_failures = 0;
                    let more = tasks.len() >= limit;
                    let applied = act.guarded(ctx, |s| match page {
                        None => s.loaded(tasks, more),
                        Some(_) => s.paged(tasks, more),
                    });
                    if applied.is_ok() {
                        act.wake_at(next_due, ctx);
                        act.serve_waiters(ctx);
                    }
                }
                Err(e) => {
                    act.load_failures += 1;
                    let delay = retry_delay(act.load_failures);
                    warn!(queue = %act.state.name(), error = %e, "loading queue failed");
                    ctx.run_later(delay, |act, ctx| act.load(ctx));
                }
            }
            act.review(ctx);
        }));
    }

    /// Makes sure the actor reloads when `due` comes (scheduled tasks and retries).
    fn wake_at(&mut self, due: Option<DateTime<Utc>>, ctx: &mut Context<Self>) {
        let Some(due) = due else { return };
        if matches!(&self.wake, Some((at, _)) if *at <= due) {
            return;
        }
        if let Some((_, handle)) = self.wake.take() {
            ctx.cancel_future(handle);
        }
        let delay = (due - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(1);
        let handle = ctx.run_later(delay, |act, ctx| {
            act.wake = None;
            act.load(ctx);
        });
        self.wake = Some((due, handle));
    }

    /// Hands ready tasks to waiting consumers, oldest waiter first.
    fn serve_waiters(&mut self, ctx: &mut Context<Self>) {
        loop {
            let next = self.guarded(ctx, |s| {
                if !s.has_ready() {
                    return None;
                }
                let waiter = s.next_waiter()?;
                let candidates = s.take(waiter.max);
                Some((waiter, candidates))
            });
            let Ok(Some((waiter, candidates))) = next else {
                break;
            };
            self.claim(waiter, candidates, ctx);
        }
        self.page_in(ctx);
    }

    fn claim(&mut self, waiter: Waiter, candidates: Vec<Task>, ctx: &mut Context<Self>) {
        let claims = candidates
            .iter()
            .map(|t| ClaimWrite {
                id: t.id,
                lease: waiter.lease.clone(),
            })
            .collect();
        let me = ctx.address();
        self.persist(Write::Claim(claims), move |result| {
            me.do_send(Claims {
                waiter,
                candidates,
                result,
            })
        });
    }

    fn settle(&mut self, writes: Vec<SettleWrite>, reply: SettleReply, ctx: &mut Context<Self>) {
        if writes.is_empty() {
            return;
        }
        let actions = writes.iter().map(|w| w.action.clone()).collect();
        let me = ctx.address();
        self.persist(Write::Settle(writes), move |result| {
            me.do_send(Settled {
                actions,
                result,
                reply,
            })
        });
    }

    /// Expires the given leases (deadline passed, or session gone).
    fn expire(&mut self, leases: Vec<(Uuid, Held)>, ctx: &mut Context<Self>) {
        if !leases.is_empty() {
            info!(queue = %self.state.name(), count = leases.len(), "releasing expired claims");
        }
        let writes = leases
            .into_iter()
            .map(|(id, held)| SettleWrite {
                id,
                agent: held.agent,
                lease_id: Some(held.lease_id),
                action: Settle::Expire,
                payload: held.payload,
            })
            .collect();
        self.settle(writes, None, ctx);
    }

    /// A task that is claimable again (released, retried, expired) re-enters the window.
    /// On a broker the task is back there; its delivery here may have come before this
    /// outcome, while the window still held its claim: reload.
    fn reopened(&mut self, task: Task, ctx: &mut Context<Self>) {
        if task.claimed_by.is_some() || !task.is_open() {
            return;
        }
        if self.broker.is_some() {
            return self.load(ctx);
        }
        if task.scheduled_for > Utc::now() {
            self.wake_at(Some(task.scheduled_for), ctx);
        } else if self.guarded(ctx, |s| s.offer(task)).is_ok() {
            self.serve_waiters(ctx);
        }
    }

    /// Tasks claimed for a consumer who is gone are given back untouched.
    fn give_back(&mut self, tasks: Vec<Task>, lease: &Lease, ctx: &mut Context<Self>) {
        let writes = tasks
            .into_iter()
            .map(|t| SettleWrite {
                id: t.id,
                agent: lease.agent.clone(),
                lease_id: Some(lease.lease_id),
                action: Settle::Release,
                payload: Some(t.payload),
            })
            .collect();
        self.settle(writes, None, ctx);
    }
}

impl Actor for Queue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        self.load(ctx);
        self.review(ctx);
    }
}

impl Alarmed for Queue {
    fn alarm(&mut self) -> &mut Alarm {
        &mut self.alarm
    }

    fn next_due(&self) -> Option<Instant> {
        self.state
            .next_deadline()
            .into_iter()
            .chain(self.stop_at())
            .min()
    }

    /// Ends the waits that are over, expires the leases that ran out, stops when idle.
    fn ring(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        if let Ok(due) = self.guarded(ctx, |s| {
            s.stop_waiting(now);
            s.expired(now)
        }) {
            self.expire(due, ctx);
        }
        self.stop_if_idle(ctx, now);
        self.review(ctx);
    }
}

impl Supervised for Queue {
    fn restarting(&mut self, _: &mut Context<Self>) {
        if !self.leave.after_stop() {
            warn!(queue = %self.state.name(), "queue actor restarting; rebuilding from storage");
        }
        self.state.reset();
        self.loading = false;
        self.wake = None;
        self.alarm.clear();
    }
}

impl Handler<Push> for Queue {
    type Result = ();

    fn handle(&mut self, msg: Push, ctx: &mut Context<Self>) {
        self.used = Instant::now();
        let now = Utc::now();
        let pairs = self.broker.is_none();
        let paired = self.guarded(ctx, |s| {
            msg.tasks
                .into_iter()
                .map(|task| {
                    let due = pairs && task.run_at.is_none_or(|at| at <= now);
                    let waiter = if due { s.next_waiter() } else { None };
                    let claim = waiter.as_ref().map(|w| w.lease.clone());
                    (PushWrite { task, claim }, waiter)
                })
                .unzip::<_, _, Vec<_>, Vec<_>>()
        });
        let (writes, waiters) = match paired {
            Ok(p) => p,
            Err(e) => {
                let _ = msg.reply.send(Err(e));
                return;
            }
        };
        let (me, reply) = (ctx.address(), msg.reply);
        self.persist(Write::Push(writes), move |result| {
            me.do_send(Pushes {
                waiters,
                result,
                reply,
            })
        });
    }
}

impl Handler<Pushes> for Queue {
    type Result = ();

    fn handle(&mut self, msg: Pushes, ctx: &mut Context<Self>) {
        self.written();
        let pushed = match msg.result {
            Ok(Outcome::Pushed(pushed)) => pushed,
            other => {
                for w in msg.waiters.into_iter().flatten() {
                    let _ = self.guarded(ctx, |s| s.unpark(w));
                }
                let _ = msg.reply.send(Err(unexpected(other).into()));
                return self.review(ctx);
            }
        };
        for (p, waiter) in pushed.iter().zip(msg.waiters) {
            match waiter {
                Some(w) if p.created => self.hand_over(w, vec![p.task.clone()], ctx),
                Some(w) => {
                    let _ = self.guarded(ctx, |s| s.unpark(w));
                }
                None if p.created => self.reopened(p.task.clone(), ctx),
                None => {}
            }
        }
        let _ = msg.reply.send(Ok(pushed));
        self.serve_waiters(ctx);
        self.review(ctx);
    }
}

impl Queue {
    /// Gives claimed tasks to their consumer, or back to the queue when it has gone.
    fn hand_over(&mut self, waiter: Waiter, tasks: Vec<Task>, ctx: &mut Context<Self>) {
        let deadline = Instant::now() + waiter.lease.duration;
        let held = |t: &Task| Held {
            session: waiter.session,
            agent: waiter.lease.agent.clone(),
            lease_id: waiter.lease.lease_id,
            deadline,
            payload: Some(t.payload.clone()),
        };
        let holds: Vec<(Uuid, Held)> = tasks.iter().map(|t| (t.id, held(t))).collect();
        let ids: Vec<Uuid> = holds.iter().map(|(id, _)| *id).collect();
        let _ = self.guarded(ctx, |s| holds.into_iter().for_each(|(id, h)| s.hold(id, h)));
        if let Err(Ok(tasks)) = waiter.reply.send(Ok(tasks)) {
            let _ = self.guarded(ctx, |s| ids.iter().for_each(|id| drop(s.unhold(id))));
            self.give_back(tasks, &waiter.lease, ctx);
        }
    }
}

impl Handler<Claim> for Queue {
    type Result = ();

    fn handle(&mut self, msg: Claim, ctx: &mut Context<Self>) {
        self.used = Instant::now();
        if !self.state.is_loaded() {
            let _ = msg
                .reply
                .send(Err(QueueError::NotLoaded(self.state.name().into())));
            return;
        }
        let Claim {
            session,
            lease,
            max,
            wait,
            reply,
        } = msg;
        // A broker's first deliveries take a moment: a claim waits at least that long.
        let wait = match self.broker {
            Some(first) => Some(wait.map_or(first, |wait| wait.max(first))),
            None => wait,
        };
        let waiter = Waiter {
            session,
            lease,
            max,
            until: wait.map(|wait| Instant::now() + wait),
            reply,
        };
        match (self.guarded(ctx, |s| s.take(max)), wait) {
            (Ok(candidates), _) if !candidates.is_empty() => self.claim(waiter, candidates, ctx),
            (Ok(_), Some(_)) => {
                let _ = self.guarded(ctx, |s| s.park(waiter));
            }
            (Ok(_), None) => {
                let _ = waiter.reply.send(Ok(Vec::new()));
            }
            (Err(e), _) => {
                let _ = waiter.reply.send(Err(e));
            }
        }
        self.page_in(ctx);
        self.review(ctx);
    }
}

impl Handler<Claims> for Queue {
    type Result = ();

    fn handle(&mut self, msg: Claims, ctx: &mut Context<Self>) {
        self.written();
        let Claims {
            waiter,
            candidates,
            result,
        } = msg;
        let ids: Vec<Uuid> = candidates.iter().map(|t| t.id).collect();
        match result {
            Ok(Outcome::Claimed(won)) if !won.is_empty() => {
                let _ = self.guarded(ctx, |s| s.drop_candidates(&ids));
                let tasks = won_by(candidates, won, &waiter.lease.agent);
                self.hand_over(waiter, tasks, ctx);
            }
            Ok(Outcome::Claimed(_)) => {
                // Every candidate was taken elsewhere: the window is stale.
                let _ = self.guarded(ctx, |s| {
                    s.drop_candidates(&ids);
                    s.unpark(waiter);
                });
                self.load(ctx);
            }
            other => {
                let _ = self.guarded(ctx, |s| s.claim_failed(candidates));
                let _ = waiter.reply.send(Err(unexpected(other).into()));
            }
        }
        self.review(ctx);
    }
}

impl Handler<SettleTask> for Queue {
    type Result = ();

    fn handle(&mut self, msg: SettleTask, ctx: &mut Context<Self>) {
        self.used = Instant::now();
        let held = self.state.held(&msg.id).filter(|h| h.agent == msg.agent);
        let write = SettleWrite {
            id: msg.id,
            agent: msg.agent,
            lease_id: held.map(|h| h.lease_id),
            action: msg.action,
            payload: held.and_then(|h| h.payload.clone()),
        };
        self.settle(vec![write], Some(msg.reply), ctx);
    }
}

impl Handler<Settled> for Queue {
    type Result = ();

    fn handle(&mut self, msg: Settled, ctx: &mut Context<Self>) {
        self.written();
        let outcomes = match msg.result {
            Ok(Outcome::Settled(outcomes)) => outcomes,
            other => {
                if let Some(reply) = msg.reply {
                    let _ = reply.send(Err(unexpected(other).into()));
                }
                return self.review(ctx);
            }
        };
        let mut answer = None;
        for ((id, outcome), action) in outcomes.into_iter().zip(msg.actions) {
            answer = Some(match outcome {
                Ok(task) => {
                    self.applied(id, &task, &action, ctx);
                    Ok(task)
                }
                Err(refusal) => {
                    if matches!(refusal, Refusal::LeaseLost | Refusal::Finished) {
                        let _ = self.guarded(ctx, |s| s.unhold(&id));
                    }
                    Err(QueueError::refused(id, refusal))
                }
            });
        }
        if let (Some(reply), Some(answer)) = (msg.reply, answer) {
            let _ = reply.send(answer);
        }
        self.review(ctx);
    }
}

impl Queue {
    /// Applies a committed settlement to the in-memory state.
    fn applied(&mut self, id: Uuid, task: &Task, action: &Settle, ctx: &mut Context<Self>) {
        if let Settle::Extend(duration) = action {
            let deadline = Instant::now() + *duration;
            let _ = self.guarded(ctx, |s| s.extend(&id, deadline));
            return;
        }
        let _ = self.guarded(ctx, |s| s.unhold(&id));
        self.reopened(task.clone(), ctx);
    }
}

impl Handler<SessionClosed> for Queue {
    type Result = ();

    fn handle(&mut self, msg: SessionClosed, ctx: &mut Context<Self>) {
        if let Ok(held) = self.guarded(ctx, |s| s.held_by(msg.0)) {
            self.expire(held, ctx);
        }
    }
}

impl Handler<Refresh> for Queue {
    type Result = ();

    fn handle(&mut self, _: Refresh, ctx: &mut Context<Self>) {
        self.load(ctx);
    }
}

impl Handler<SettledElsewhere> for Queue {
    type Result = ();

    fn handle(&mut self, msg: SettledElsewhere, ctx: &mut Context<Self>) {
        let _ = self.guarded(ctx, |s| s.unhold(&msg.0));
        self.load(ctx);
        self.review(ctx);
    }
}

impl Handler<ExtendedElsewhere> for Queue {
    type Result = ();

    fn handle(&mut self, msg: ExtendedElsewhere, ctx: &mut Context<Self>) {
        let _ = self.guarded(ctx, |s| s.extend(&msg.id, msg.deadline));
    }
}

impl Handler<Adopt> for Queue {
    type Result = ();

    fn handle(&mut self, msg: Adopt, ctx: &mut Context<Self>) {
        self.used = Instant::now();
        let Adopt { ids, held } = msg;
        let _ = self.guarded(ctx, |s| {
            ids.iter().for_each(|id| s.adopt(*id, held.clone()))
        });
        self.review(ctx);
    }
}

impl Handler<Stats> for Queue {
    type Result = MessageResult<Stats>;

    fn handle(&mut self, _: Stats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state.counts())
    }
}

fn unexpected(result: Result<Outcome, StoreError>) -> StoreError {
    match result {
        Err(e) => e,
        Ok(other) => StoreError::Rejected(format!("unexpected outcome {other:?}")),
    }
}

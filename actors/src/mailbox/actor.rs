//! The mailbox actor: one per mailbox, supervised, its state rebuilt from storage on restart.
//!
//! Only the daemon holding a mailbox's lease in storage serves it. The actor takes the lease
//! when a receiver asks (loading the unread messages then), renews it while in use, gives it up
//! after [`IDLE_RELEASE`] without receivers or deliveries, and stops serving at once if a renewal
//! fails. Messages another daemon commits for a held mailbox arrive as [`ForeignSent`].
//!
//! It never polls: its [`Alarm`] rings at the next thing due (a visibility deadline, the
//! lease's renewal or end, the idle release, a retry to take the lease, the idle stop), so a
//! mailbox that is only sent to has one timer set minutes ahead and costs no CPU.

use super::state::{LiveCounts, MailboxState, Waiter};
use super::MailboxError;
use crate::alarm::{Alarm, Alarmed};
use crate::directory::Leave;
use crate::message::{SessionId, StoredMessage};
use crate::persist::{Outcome, Persist, Persister, Write};
use crate::store::{AttemptsWrite, MailboxStore, StoreError};
use crate::supervise::{guarded, retry_delay};

use crate::telemetry::Telemetry;
use actix::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::{info, warn};
use uuid::Uuid;

/// Tunables of every mailbox actor (`[mailboxes]` in `ikigai.conf`).
#[derive(Debug, Clone, PartialEq)]
pub struct MailboxConfig {
    /// Most ready messages kept in memory per mailbox; the rest are paged in from storage.
    pub max_buffered: usize,
    /// How long a lease to serve the mailbox lasts unless renewed.
    pub lease: Duration,
    /// How long a mailbox stays unused, not served here (its lease given up) and with no
    /// receiver waiting, before its actor stops.
    pub idle: Duration,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig {
            max_buffered: 10_000,
            lease: Duration::from_secs(10),
            idle: Duration::from_secs(300),
        }
    }
}

/// A held lease is given up after this long without receivers or deliveries.
pub const IDLE_RELEASE: Duration = Duration::from_secs(2);

/// How often receivers parked at a daemon that does not hold the lease try to take it.
const RETRY_ACQUIRE: Duration = Duration::from_secs(1);

/// Whether this daemon serves the mailbox.
#[derive(Debug, Clone, Copy)]
enum Lease {
    /// Not held here; receivers waiting here try to take it at `retry_at`.
    Free { retry_at: Instant },
    /// Held: deliver until `until` (a margin short of the stored deadline), renew at `renew_at`.
    Held {
        until: Instant,
        renew_at: Instant,
        renewing: bool,
    },
}

/// Delivers up to `max` messages; parks the caller when none is ready and `wait` is set.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Receive {
    pub session: SessionId,
    pub max: usize,
    pub visibility: Duration,
    pub wait: bool,
    pub reply: oneshot::Sender<Result<Vec<StoredMessage>, MailboxError>>,
}

/// Acknowledges messages for `reader`; answers with how many changed to read, after commit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ack {
    pub reader: String,
    pub ids: Vec<Uuid>,
    pub reply: oneshot::Sender<Result<u64, MailboxError>>,
}

/// The oldest ready messages, without delivering them.
#[derive(Message)]
#[rtype(result = "Result<Vec<StoredMessage>, MailboxError>")]
pub struct Peek {
    pub limit: usize,
}

/// Live counters.
#[derive(Message)]
#[rtype(result = "LiveCounts")]
pub struct Stats;

/// A session ended: its deliveries become deliverable again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionClosed(pub SessionId);

/// Messages acknowledged elsewhere (a committed transaction): never deliver them again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Forget(pub Vec<Uuid>);

/// Another daemon committed messages for this mailbox (`None`: too many to name; re-read).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ForeignSent(pub Option<Vec<Uuid>>);

/// The daemon that served this mailbox let it go: receivers waiting here may take it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Released;

/// Gives up the lease (daemon shutdown); answers once it is given up.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release(pub oneshot::Sender<()>);

/// Makes the actor's logic panic (operators' fault injection, enabled by config).
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

/// A committed message, handed over by the persistence callback in commit order.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Appended(pub StoredMessage);

#[derive(Message)]
#[rtype(result = "()")]
struct AckDone {
    ids: Vec<Uuid>,
    result: Result<Outcome, StoreError>,
    reply: oneshot::Sender<Result<u64, MailboxError>>,
}

/// One mailbox.
pub struct Mailbox {
    state: MailboxState,
    store: Arc<dyn MailboxStore>,
    persister: Addr<Persister>,
    config: MailboxConfig,
    loading: bool,
    load_failures: u32,
    telemetry: Option<Telemetry>,
    lease: Lease,
    /// Counts acquisitions, so that the answer to an older renewal is ignored.
    generation: u64,
    last_used: Instant,
    alarm: Alarm,
    leave: Leave<Mailbox>,
}

impl Mailbox {
    pub fn new(
        name: String,
        store: Arc<dyn MailboxStore>,
        persister: Addr<Persister>,
        config: MailboxConfig,
        leave: Leave<Mailbox>,
    ) -> Self {
        Mailbox {
            state: MailboxState::new(name, config.max_buffered),
            store,
            persister,
            config,
            loading: false,
            load_failures: 0,
            telemetry: None,
            lease: Lease::Free {
                retry_at: Instant::now(),
            },
            generation: 0,
            last_used: Instant::now(),
            alarm: Alarm::default(),
            leave,
        }
    }

    /// Reports redeliveries and restarts as telemetry events of the mailbox's agent.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    fn record(&self, event_type: &str, payload: serde_json::Value) {
        if let Some(t) = &self.telemetry {
            t.record(self.state.name(), event_type, payload);
        }
    }

    /// Telemetry for messages handed back for redelivery, and why.
    fn record_redelivery(&self, writes: &[AttemptsWrite], reason: &str) {
        if !writes.is_empty() {
            let payload = serde_json::json!({
                "mailbox": self.state.name(), "count": writes.len(), "reason": reason,
            });
            self.record("mailbox_redelivery", payload);
        }
    }

    /// Runs service logic with panics contained; a panic stops the actor for a restart.
    fn guarded<T>(
        &mut self,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut MailboxState) -> T,
    ) -> Result<T, MailboxError> {
        let name = self.state.name().to_owned();
        guarded::<Self, _, _>(ctx, "mailbox", &name, &mut self.state, f).map_err(|p| {
            MailboxError::Panicked {
                mailbox: name,
                reason: p.0,
            }
        })
    }

    /// Loads the next page of unread messages; blocks other messages until it is in.
    fn load(&mut self, ctx: &mut Context<Self>) {
        if self.loading {
            return;
        }
        self.loading = true;
        let store = self.store.clone();
        let name = self.state.name().to_owned();
        let (after, limit) = (self.state.max_seq(), self.state.capacity());
        let fut = async move { store.load_unread(&name, after, limit).await };
        ctx.wait(fut.into_actor(self).map(move |result, act, ctx| {
            act.loading = false;
            match result {
                Ok(page) => {
                    act.load_failures = 0;
                    let more = page.len() >= limit;
                    act.state.loaded(page, more);
                    let _ = act.guarded(ctx, |s| s.serve_waiters(Instant::now()));
                }
                Err(e) => act.retry_load(ctx, e),
            }
            act.rearm(ctx);
        }));
    }

    fn retry_load(&mut self, ctx: &mut Context<Self>, e: StoreError) {
        self.load_failures += 1;
        let delay = retry_delay(self.load_failures);
        warn!(mailbox = %self.state.name(), error = %e, retry_in_ms = delay.as_millis() as u64,
              "loading mailbox failed");
        ctx.run_later(delay, |act, ctx| act.load(ctx));
    }

    fn page_in_if_low(&mut self, ctx: &mut Context<Self>) {
        if self.state.needs_page() {
            self.load(ctx);
        }
    }

    /// Records redelivery counts; a failure only costs accuracy of `attempts`.
    fn record_attempts(&self, writes: Vec<AttemptsWrite>) {
        if writes.is_empty() {
            return;
        }
        let mailbox = self.state.name().to_owned();
        self.persister.do_send(Persist {
            write: Write::Attempts(writes),
            done: Box::new(move |r| {
                if let Err(e) = r {
                    warn!(mailbox = %mailbox, error = %e, "recording redelivery attempts failed");
                }
            }),
        });
    }

    fn serving(&self) -> bool {
        matches!(self.lease, Lease::Held { .. })
    }

    /// Renews, gives up or retries the lease as time requires.
    fn tend_lease(&mut self, ctx: &mut Context<Self>, now: Instant) {
        match self.lease {
            Lease::Held { until, .. } if now >= until => self.lose(),
            Lease::Held {
                renew_at,
                renewing: false,
                ..
            } if now >= renew_at => self.renew(ctx),
            Lease::Held { .. } if self.idle(now) => self.release(ctx, None),
            Lease::Free { retry_at } if now >= retry_at && self.state.counts().waiting > 0 => {
                self.acquire(ctx, None)
            }
            _ => {}
        }
    }

    /// Stops the actor when the mailbox has been unused for `config.idle`, is not served here
    /// and nobody waits: all it has is in storage, and its next use starts a new actor. Runs
    /// from the alarm, after the mailbox was emptied (and [`Leave::stop`] waits out a load or a
    /// lease change, which block the actor, after which [`Alarmed::rearm`] rings again at
    /// once), so no request is left unanswered.
    fn stop_if_idle(&mut self, ctx: &mut Context<Self>, now: Instant) {
        if self.stop_at().is_some_and(|at| now >= at) {
            self.leave.stop(ctx);
        }
    }

    /// Nothing is delivered and nobody waits here.
    fn quiet(&self) -> bool {
        let c = self.state.counts();
        c.in_flight == 0 && c.waiting == 0
    }

    /// When a held lease is given up, if the mailbox stays unused until then.
    fn release_at(&self) -> Option<Instant> {
        (self.serving() && self.quiet()).then(|| self.last_used + IDLE_RELEASE)
    }

    /// When the actor stops, if the mailbox stays unused and not served here until then.
    fn stop_at(&self) -> Option<Instant> {
        (!self.serving() && self.quiet()).then(|| self.last_used + self.config.idle)
    }

    fn idle(&self, now: Instant) -> bool {
        self.release_at().is_some_and(|at| now >= at)
    }

    /// The lease is ours from `since` (when the statement that took or renewed it was sent).
    fn hold(&mut self, since: Instant) {
        let lease = self.config.lease;
        self.lease = Lease::Held {
            until: since + lease * 9 / 10,
            renew_at: since + lease / 4,
            renewing: false,
        };
    }

    fn free(&mut self, retry_in: Duration) {
        self.lease = Lease::Free {
            retry_at: Instant::now() + retry_in,
        };
    }

    /// Takes the lease (loading the mailbox), then handles `receive`, if any.
    fn acquire(&mut self, ctx: &mut Context<Self>, receive: Option<Receive>) {
        let (store, name, lease) = (
            self.store.clone(),
            self.state.name().to_owned(),
            self.config.lease,
        );
        let since = Instant::now();
        let fut = async move { store.acquire(&name, lease).await };
        ctx.wait(fut.into_actor(self).map(move |result, act, ctx| {
            act.acquired(ctx, result, since, receive);
            act.rearm(ctx);
        }));
    }

    /// The answer to [`Mailbox::acquire`], sent at `since`.
    fn acquired(
        &mut self,
        ctx: &mut Context<Self>,
        result: Result<bool, StoreError>,
        since: Instant,
        receive: Option<Receive>,
    ) {
        match result {
            Ok(true) => {
                self.generation += 1;
                self.hold(since);
                self.state.reload();
                self.load(ctx);
                if let Some(receive) = receive {
                    ctx.address().do_send(receive);
                }
            }
            Ok(false) => {
                self.free(RETRY_ACQUIRE);
                if let Some(receive) = receive {
                    self.wait_elsewhere(receive);
                }
            }
            Err(e) => {
                warn!(mailbox = %self.state.name(), error = %e, "taking the mailbox lease failed");
                self.free(RETRY_ACQUIRE);
                if let Some(receive) = receive {
                    let _ = receive.reply.send(Err(e.into()));
                }
            }
        }
    }

    /// Another daemon serves the mailbox: a waiting receiver parks until it lets go.
    fn wait_elsewhere(&mut self, receive: Receive) {
        if !receive.wait {
            let _ = receive.reply.send(Ok(Vec::new()));
            return;
        }
        self.state.park(Waiter {
            session: receive.session,
            max: receive.max,
            visibility: receive.visibility,
            reply: receive.reply,
        });
    }

    fn renew(&mut self, ctx: &mut Context<Self>) {
        if let Lease::Held { renewing, .. } = &mut self.lease {
            *renewing = true;
        }
        let (store, name, lease) = (
            self.store.clone(),
            self.state.name().to_owned(),
            self.config.lease,
        );
        let (since, generation) = (Instant::now(), self.generation);
        let fut = async move { store.renew(&name, lease).await };
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
            if act.generation == generation && act.serving() {
                act.renewed(result, since);
            }
            act.rearm(ctx);
        }));
    }

    /// The answer to a renewal of the current lease, sent at `since`.
    fn renewed(&mut self, result: Result<bool, StoreError>, since: Instant) {
        match result {
            Ok(true) => self.hold(since),
            Ok(false) => self.lose(),
            Err(e) => {
                warn!(mailbox = %self.state.name(), error = %e, "renewing the mailbox lease failed");
                if let Lease::Held {
                    renewing, renew_at, ..
                } = &mut self.lease
                {
                    *renewing = false;
                    *renew_at = Instant::now() + self.config.lease / 10;
                }
            }
        }
    }

    /// When the lease needs tending: renewed, or ended at its deadline when renewals fail;
    /// not held, taken again for the receivers waiting here.
    fn lease_due(&self) -> Option<Instant> {
        match self.lease {
            Lease::Held {
                until,
                renewing: true,
                ..
            } => Some(until),
            Lease::Held {
                until, renew_at, ..
            } => Some(until.min(renew_at)),
            Lease::Free { retry_at } => (self.state.counts().waiting > 0).then_some(retry_at),
        }
    }

    /// The lease ran out or was taken: stop serving; receivers still here try again.
    fn lose(&mut self) {
        warn!(mailbox = %self.state.name(), "mailbox lease lost; no longer serving it here");
        self.state.reload();
        self.free(Duration::ZERO);
    }

    /// Gives the lease up; blocks the actor until it is given up, so that a later acquisition
    /// cannot overtake it.
    fn release(&mut self, ctx: &mut Context<Self>, done: Option<oneshot::Sender<()>>) {
        self.state.reload();
        self.free(Duration::ZERO);
        let (store, name) = (self.store.clone(), self.state.name().to_owned());
        ctx.wait(
            async move {
                if let Err(e) = store.release(&name).await {
                    warn!(mailbox = %name, error = %e, "giving up the mailbox lease failed");
                }
            }
            .into_actor(self)
            .map(move |(), act, ctx| {
                if let Some(done) = done {
                    let _ = done.send(());
                }
                act.rearm(ctx);
            }),
        );
    }

    /// Reads messages another daemon committed and adds the unknown ones. Blocks the actor
    /// meanwhile, so an acknowledgement cannot slip between the read and the merge.
    fn take_foreign(&mut self, ctx: &mut Context<Self>, ids: Option<Vec<Uuid>>) {
        let (store, name, limit) = (
            self.store.clone(),
            self.state.name().to_owned(),
            self.state.capacity(),
        );
        let fut = async move {
            match ids {
                Some(ids) => store.load_ids(&name, &ids).await,
                None => store.load_unread(&name, 0, limit).await,
            }
        };
        ctx.wait(fut.into_actor(self).map(|result, act, ctx| {
            match result {
                Ok(page) => {
                    let _ = act.guarded(ctx, |s| {
                        page.into_iter().for_each(|m| {
                            s.append(m);
                        });
                        s.serve_waiters(Instant::now());
                    });
                }
                Err(e) => {
                    warn!(mailbox = %act.state.name(), error = %e, "reading messages sent elsewhere failed; re-reading");
                    act.state.reload();
                    act.load(ctx);
                }
            }
            act.rearm(ctx);
        }));
    }
}

impl Actor for Mailbox {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        self.rearm(ctx);
    }
}

impl Alarmed for Mailbox {
    fn alarm(&mut self) -> &mut Alarm {
        &mut self.alarm
    }

    fn next_due(&self) -> Option<Instant> {
        let due = [self.lease_due(), self.release_at(), self.stop_at()];
        due.into_iter()
            .chain([self.state.next_deadline()])
            .flatten()
            .min()
    }

    fn ring(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.tend_lease(ctx, now);
        if let Ok(writes) = self.guarded(ctx, |s| {
            let writes = s.expire(now);
            s.serve_waiters(now);
            s.purge_waiters();
            writes
        }) {
            if !writes.is_empty() {
                info!(mailbox = %self.state.name(), count = writes.len(), "redelivering after visibility timeout");
            }
            self.record_redelivery(&writes, "visibility_timeout");
            self.record_attempts(writes);
        }
        self.stop_if_idle(ctx, now);
        self.rearm(ctx);
    }
}

impl Supervised for Mailbox {
    fn restarting(&mut self, _: &mut Context<Self>) {
        if !self.leave.after_stop() {
            warn!(mailbox = %self.state.name(), "mailbox actor restarting; rebuilding from storage");
            let payload = serde_json::json!({"actor": "mailbox", "mailbox": self.state.name()});
            self.record("actor_restarted", payload);
        }
        self.state.reset();
        self.loading = false;
        self.alarm.clear();
        self.free(Duration::ZERO);
    }
}

impl Handler<Receive> for Mailbox {
    type Result = ();

    fn handle(&mut self, msg: Receive, ctx: &mut Context<Self>) {
        self.receive(msg, ctx);
        self.rearm(ctx);
    }
}

impl Mailbox {
    fn receive(&mut self, msg: Receive, ctx: &mut Context<Self>) {
        self.last_used = Instant::now();
        if !self.serving() {
            return self.acquire(ctx, Some(msg));
        }
        if !self.state.is_loaded() {
            let _ = msg
                .reply
                .send(Err(MailboxError::NotLoaded(self.state.name().into())));
            return;
        }
        let Receive {
            session,
            max,
            visibility,
            wait,
            reply,
        } = msg;
        let taken = self.guarded(ctx, |s| s.take(session, max, visibility, Instant::now()));
        match taken {
            Ok(msgs) if msgs.is_empty() && wait => {
                let waiter = Waiter {
                    session,
                    max,
                    visibility,
                    reply,
                };
                let _ = self.guarded(ctx, |s| s.park(waiter));
            }
            Ok(msgs) => {
                if let Err(Ok(msgs)) = reply.send(Ok(msgs)) {
                    // The receiver gave up: its messages are deliverable again at once.
                    let _ = self.guarded(ctx, |s| s.give_back(msgs));
                }
                self.page_in_if_low(ctx);
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

impl Handler<Appended> for Mailbox {
    type Result = ();

    fn handle(&mut self, msg: Appended, ctx: &mut Context<Self>) {
        let _ = self.guarded(ctx, |s| {
            if s.append(msg.0) {
                s.serve_waiters(Instant::now());
            }
        });
        self.rearm(ctx);
    }
}

impl Handler<Ack> for Mailbox {
    type Result = ();

    fn handle(&mut self, msg: Ack, ctx: &mut Context<Self>) {
        let Ack { reader, ids, reply } = msg;
        let writes = match self.guarded(ctx, |s| s.begin_ack(&ids, &reader, Instant::now())) {
            Ok(w) => w,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let me = ctx.address();
        self.persister.do_send(Persist {
            write: Write::Ack(writes),
            done: Box::new(move |result| me.do_send(AckDone { ids, result, reply })),
        });
    }
}

impl Handler<AckDone> for Mailbox {
    type Result = ();

    fn handle(&mut self, msg: AckDone, ctx: &mut Context<Self>) {
        let AckDone { ids, result, reply } = msg;
        let answer = match result {
            Ok(Outcome::Acked(acked)) => self
                .guarded(ctx, |s| s.ack_committed(&ids))
                .map(|()| acked.len() as u64),
            Ok(other) => Err(MailboxError::Store(StoreError::Rejected(format!(
                "ack produced {other:?}"
            )))),
            Err(e) => self
                .guarded(ctx, |s| {
                    s.ack_failed(&ids);
                    s.serve_waiters(Instant::now());
                })
                .and(Err(MailboxError::Store(e))),
        };
        let _ = reply.send(answer);
        self.rearm(ctx);
    }
}

impl Handler<Peek> for Mailbox {
    type Result = Result<Vec<StoredMessage>, MailboxError>;

    fn handle(&mut self, msg: Peek, ctx: &mut Context<Self>) -> Self::Result {
        if !self.serving() || !self.state.is_loaded() {
            return Err(MailboxError::NotLoaded(self.state.name().into()));
        }
        self.guarded(ctx, |s| s.peek(msg.limit))
    }
}

impl Handler<Stats> for Mailbox {
    type Result = MessageResult<Stats>;

    fn handle(&mut self, _: Stats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state.counts())
    }
}

impl Handler<SessionClosed> for Mailbox {
    type Result = ();

    fn handle(&mut self, msg: SessionClosed, ctx: &mut Context<Self>) {
        if let Ok(writes) = self.guarded(ctx, |s| {
            let writes = s.session_closed(msg.0);
            s.serve_waiters(Instant::now());
            writes
        }) {
            self.record_redelivery(&writes, "connection_closed");
            self.record_attempts(writes);
        }
        self.rearm(ctx);
    }
}

impl Handler<Forget> for Mailbox {
    type Result = ();

    fn handle(&mut self, msg: Forget, ctx: &mut Context<Self>) {
        let _ = self.guarded(ctx, |s| s.forget(&msg.0));
        self.rearm(ctx);
    }
}

impl Handler<ForeignSent> for Mailbox {
    type Result = ();

    fn handle(&mut self, msg: ForeignSent, ctx: &mut Context<Self>) {
        if self.serving() && self.state.is_loaded() {
            self.take_foreign(ctx, msg.0);
        }
    }
}

impl Handler<Released> for Mailbox {
    type Result = ();

    fn handle(&mut self, _: Released, ctx: &mut Context<Self>) {
        if !self.serving() && self.state.counts().waiting > 0 {
            self.acquire(ctx, None);
        }
    }
}

impl Handler<Release> for Mailbox {
    type Result = ();

    fn handle(&mut self, msg: Release, ctx: &mut Context<Self>) {
        match self.serving() {
            true => self.release(ctx, Some(msg.0)),
            false => drop(msg.0.send(())),
        }
    }
}

impl Handler<InjectPanic> for Mailbox {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, ctx: &mut Context<Self>) {
        let _ = self.guarded(ctx, |s| -> () {
            panic!("fault injected into mailbox {}", s.name())
        });
    }
}

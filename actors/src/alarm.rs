//! An actor's one timer, armed only for the earliest moment it has something to do.
//!
//! Actors that keep deadlines (mailboxes, queues, LLM threads) never poll: each holds an
//! [`Alarm`] and, after every change, calls [`Alarmed::rearm`], which sets the alarm for
//! [`Alarmed::next_due`] when that is earlier than what is already set. An alarm that rings
//! early (a deadline moved later) costs one wake-up: [`Alarmed::ring`] finds nothing due yet and
//! re-arms. An actor with nothing due has no timer at all, so an idle actor costs memory only.

use actix::{Actor, AsyncContext, Context, SpawnHandle};
use std::time::Instant;

/// The time an alarm is set for, and the handle to cancel it.
#[derive(Debug, Default)]
pub struct Alarm(Option<(Instant, SpawnHandle)>);

impl Alarm {
    /// When the alarm rings next, if it is set.
    pub fn at(&self) -> Option<Instant> {
        self.0.map(|(at, _)| at)
    }

    /// Forgets the alarm; for `Supervised::restarting`, whose context drops every timer.
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

/// An actor driven by its alarm.
pub trait Alarmed: Actor<Context = Context<Self>> {
    fn alarm(&mut self) -> &mut Alarm;

    /// The earliest moment something is due (a deadline, a renewal, an idle stop), if any.
    fn next_due(&self) -> Option<Instant>;

    /// Does what is due now; ends with [`Alarmed::rearm`].
    fn ring(&mut self, ctx: &mut Context<Self>);

    /// Makes sure the alarm rings by [`Alarmed::next_due`].
    fn rearm(&mut self, ctx: &mut Context<Self>) {
        let Some(due) = self.next_due() else { return };
        if self.alarm().at().is_some_and(|at| at <= due) {
            return;
        }
        if let Some((_, handle)) = self.alarm().0.take() {
            ctx.cancel_future(handle);
        }
        let delay = due.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, |act: &mut Self, ctx| {
            act.alarm().clear();
            act.ring(ctx);
        });
        self.alarm().0 = Some((due, handle));
    }
}

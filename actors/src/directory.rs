//! A directory of named actors: one supervised actor per name, started on first use. Services
//! (mailboxes, queues) keep their actors in one. An actor with nothing left to do may leave it
//! (see [`Leave`]); the next use of its name starts a new one, which loads from storage.

use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Supervised, Supervisor};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use tracing::debug;

type Actors<A> = RefCell<HashMap<String, Addr<A>>>;

pub struct Directory<A: Actor<Context = Context<A>> + Supervised> {
    actors: Rc<Actors<A>>,
    make: Box<dyn Fn(String, Leave<A>) -> A>,
}

/// Given to each actor the directory starts: takes the actor out of the directory, so that it
/// can stop for good. Everything runs on the daemon's actor thread, and every sender asks the
/// directory for an address right before sending; so once an actor with an empty mailbox has
/// left, no message can reach it, and with no address of it left, its supervisor lets it go.
pub struct Leave<A: Actor> {
    actors: Weak<Actors<A>>,
    name: String,
    stopped: Cell<bool>,
}

impl<A: Actor<Context = Context<A>>> Leave<A> {
    /// Takes the actor out of the directory (unless its name has since gone to another actor)
    /// and stops it. Call only with nothing left in the actor that lives only in memory. Does
    /// nothing while the actor waits on work of its own (`ctx.wait`, such as giving up a lease
    /// it just decided to give up), which a stop would drop: the caller's next check stops it.
    pub fn stop(&self, ctx: &mut Context<A>) {
        if ctx.waiting() {
            return;
        }
        if let Some(actors) = self.actors.upgrade() {
            let mut actors = actors.borrow_mut();
            if actors.get(&self.name) == Some(&ctx.address()) {
                actors.remove(&self.name);
            }
        }
        debug!(actor = %self.name, "idle; the actor stops");
        self.stopped.set(true);
        ctx.stop();
    }

    /// For `Supervised::restarting`: whether this restart follows [`Leave::stop`] (then clears
    /// that). The supervisor restarts such an actor, outside the directory, only to answer a
    /// message whose sender kept its address (a send's hand-over after its commit): not a
    /// failure, unlike a restart after a panic.
    pub fn after_stop(&self) -> bool {
        self.stopped.replace(false)
    }
}

impl<A: Actor<Context = Context<A>> + Supervised> Directory<A> {
    /// `make` builds the actor of a name the first time it is asked for.
    pub fn new(make: impl Fn(String, Leave<A>) -> A + 'static) -> Self {
        Directory {
            actors: Rc::new(RefCell::new(HashMap::new())),
            make: Box::new(make),
        }
    }

    /// The actor of `name`, started (and loading from storage) if it was not running.
    pub fn get(&self, name: &str) -> Addr<A> {
        if let Some(addr) = self.running(name) {
            return addr;
        }
        let leave = Leave {
            actors: Rc::downgrade(&self.actors),
            name: name.to_owned(),
            stopped: Cell::new(false),
        };
        let actor = (self.make)(name.to_owned(), leave);
        let addr = Supervisor::start(move |_| actor);
        self.actors
            .borrow_mut()
            .insert(name.to_owned(), addr.clone());
        addr
    }

    /// The actor of `name` if it is running.
    pub fn running(&self, name: &str) -> Option<Addr<A>> {
        self.actors.borrow().get(name).cloned()
    }

    /// How many actors are running.
    pub fn count(&self) -> usize {
        self.actors.borrow().len()
    }

    /// Every running actor, with its name.
    pub fn all(&self) -> Vec<(String, Addr<A>)> {
        let actors = self.actors.borrow();
        actors.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

//! A directory of named actors: one supervised actor per name, started on first use. Services
//! (mailboxes, queues) keep their actors in one.

use actix::{Actor, Addr, Context, Supervised, Supervisor};
use std::cell::RefCell;
use std::collections::HashMap;

pub struct Directory<A: Actor<Context = Context<A>> + Supervised> {
    actors: RefCell<HashMap<String, Addr<A>>>,
    make: Box<dyn Fn(String) -> A>,
}

impl<A: Actor<Context = Context<A>> + Supervised> Directory<A> {
    /// `make` builds the actor of a name the first time it is asked for.
    pub fn new(make: impl Fn(String) -> A + 'static) -> Self {
        Directory {
            actors: RefCell::new(HashMap::new()),
            make: Box::new(make),
        }
    }

    /// The actor of `name`, started (and loading from storage) if it was not running.
    pub fn get(&self, name: &str) -> Addr<A> {
        if let Some(addr) = self.running(name) {
            return addr;
        }
        let actor = (self.make)(name.to_owned());
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

    /// Every running actor, with its name.
    pub fn all(&self) -> Vec<(String, Addr<A>)> {
        let actors = self.actors.borrow();
        actors.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

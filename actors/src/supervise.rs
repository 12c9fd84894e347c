//! Panic containment at the handler boundary.
//!
//! actix's `Supervisor` restarts an actor only after it stops itself, and a panic that escapes a
//! handler takes the whole arbiter thread down with every actor on it. Every handler that runs
//! service logic therefore goes through [`contain`]: a panic becomes an error for the caller, and
//! the actor stops so that its supervisor restarts it with state rebuilt from storage.

use actix::{Actor, ActorContext};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;
use tracing::error;

/// The logic panicked; the message says where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panicked(pub String);

/// Runs `f`, turning a panic into `Err(Panicked)`.
pub fn contain<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| Panicked(panic_message(&p)))
}

/// Runs the future `f`, turning a panic while it is polled into `Err(Panicked)`.
pub async fn contain_future<F: std::future::Future>(f: F) -> Result<F::Output, Panicked> {
    use futures::FutureExt;
    AssertUnwindSafe(f)
        .catch_unwind()
        .await
        .map_err(|p| Panicked(panic_message(&p)))
}

/// Runs an actor's logic on its state with panics contained: a panic is logged, stops the actor
/// (its supervisor restarts it, rebuilding the state) and becomes `Err`.
pub fn guarded<A, S, T>(
    ctx: &mut A::Context,
    actor: &'static str,
    name: &str,
    state: &mut S,
    f: impl FnOnce(&mut S) -> T,
) -> Result<T, Panicked>
where
    A: Actor,
    A::Context: ActorContext,
{
    contain(|| f(state)).inspect_err(|p| {
        error!(actor, name, panic = %p.0, "actor logic panicked; restarting");
        ctx.stop();
    })
}

/// How long to wait before retrying a failed load: 200 ms doubling to 12.8 s.
pub fn retry_delay(failures: u32) -> Duration {
    Duration::from_millis(100 << failures.clamp(1, 7))
}

fn panic_message(payload: &Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_its_message() {
        assert_eq!(contain(|| 7), Ok(7));
        let err = contain(|| -> u8 { panic!("boom {}", 1) }).unwrap_err();
        assert_eq!(err, Panicked("boom 1".into()));
    }
}

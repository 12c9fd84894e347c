//! Panic containment at the handler boundary.
//!
//! actix's `Supervisor` restarts an actor only after it stops itself, and a panic that escapes a
//! handler takes the whole arbiter thread down with every actor on it. Every handler that runs
//! service logic therefore goes through [`contain`]: a panic becomes an error for the caller, and
//! the actor stops so that its supervisor restarts it with state rebuilt from storage.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The logic panicked; the message says where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panicked(pub String);

/// Runs `f`, turning a panic into `Err(Panicked)`.
pub fn contain<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| Panicked(panic_message(&p)))
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

//! The Redis engine: the store implementations of the services Redis can serve.

pub mod mailbox;

//! The actors of the Ikigai runtime and the storage traits they call.
//!
//! Actors hold the logic of each service and stay thin: the rules live in plain structs
//! (e.g. [`mailbox::MailboxState`]) that unit tests drive without an actix `System`. Durability is
//! delegated to the [`persist::Persister`], which commits writes in groups through a store trait
//! ([`store::MailboxStore`]); the engines implementing those traits live in the daemon crate.
//! Nothing here knows about sockets, frames or SQL.

pub mod cache;
pub mod mailbox;
pub mod message;
pub mod persist;
pub mod pubsub;
pub mod storage;
pub mod store;
pub mod supervise;
pub mod telemetry;

pub use message::{NewMessage, SessionId, StoredMessage};

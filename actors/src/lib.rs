//! The actors of the Ikigai runtime and the storage traits they call.
//!
//! Actors hold the logic of each service and stay thin: the rules live in plain structs
//! (e.g. [`mailbox::MailboxState`]) that unit tests drive without an actix `System`. Durability is
//! delegated to the [`persist::Persister`], which commits the writes of every service in groups
//! through each service's journal ([`store::MailboxJournal`], [`store::QueueJournal`]); reads go
//! through one store trait per service. The engines implementing those traits ([`store::Engine`])
//! live outside this crate: Postgres in the daemon crate, each other engine in a crate of its own.
//! Nothing here knows about sockets, frames or SQL.

pub mod alarm;
pub mod cache;
pub mod directory;
pub mod mailbox;
pub mod message;
pub mod persist;
pub mod pubsub;
pub mod queue;
pub mod storage;
pub mod store;
pub mod supervise;
pub mod task;
pub mod telemetry;

pub use message::{NewMessage, SessionId, StoredMessage};
pub use task::{Lease, NewTask, Task};

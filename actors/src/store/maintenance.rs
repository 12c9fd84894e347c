//! What the engines' upkeep of finished work is told: how long finished tasks and messages stay
//! where they are, and how often the upkeep runs (`[queues] retain_*`, `[mailboxes]
//! retain_read`, `[postgres] maintenance_ms`). Each engine keeps or drops finished work its own
//! way ([`Engine::maintain`](super::Engine::maintain)).

use std::time::Duration;

/// How long finished work stays where it is; `None` keeps it forever.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    /// Completed tasks.
    pub completed: Option<Duration>,
    /// Dead tasks.
    pub dead: Option<Duration>,
    /// Read messages.
    pub read: Option<Duration>,
    /// Archived tasks, on an engine that archives them (Postgres: `task_queue_archive`).
    pub task_archive: Option<Duration>,
    /// Archived messages, on an engine that archives them (Postgres: `mailbox_archive`).
    pub message_archive: Option<Duration>,
}

/// What the upkeep does, and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct Maintenance {
    pub every: Duration,
    pub retention: Retention,
    /// Whether the upkeep vacuums what churns when the engine's own vacuum does not (Postgres).
    pub vacuum: bool,
}

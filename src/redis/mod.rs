//! The Redis engine: the stores of the services that can run on Redis.
pub mod queue;

//! Rust client for agents of the Ikigai runtime.
//!
//! One [`Client`] is one connection to `ikigai-daemon`'s Unix socket. Calls are pipelined: any
//! number may be in flight at once from clones of the client, and each is matched to its response
//! by id. Server pushes arrive on [`Client::next_push`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), ikigai_client::ClientError> {
//! let client = ikigai_client::Client::connect_env().await?;
//! let id = client.mailbox_send("reviewer", &serde_json::json!({"pr": 42})).await?;
//! # Ok(()) }
//! ```

mod client;
mod mailbox;
mod queue;

pub use client::{Client, ClientError, Hello, Pending, Push};
pub use ikigai_protocol::{ErrorBody, ErrorCode};
pub use mailbox::{Message, Receive};
pub use queue::{ClaimArgs, Task};

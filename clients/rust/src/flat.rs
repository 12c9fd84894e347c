//! The first client's flat calls (`mailbox_send`, `queue_claim`...), which the daemon's own
//! tests, benches and CLI use: each is one line over its service's handle.

use crate::{ClaimArgs, Client, ClientError, Message, Receive, Task};
use serde_json::Value as Json;

impl Client {
    /// `self.mailbox(mailbox).send(payload)`.
    pub async fn mailbox_send(&self, mailbox: &str, payload: &Json) -> Result<String, ClientError> {
        self.mailbox(mailbox).send(payload).await
    }

    /// [`Client::receive`].
    pub async fn mailbox_receive(&self, args: &Receive<'_>) -> Result<Vec<Message>, ClientError> {
        self.receive(args).await
    }

    /// `self.mailbox(mailbox).ack(ids)`.
    pub async fn mailbox_ack(&self, mailbox: &str, ids: &[String]) -> Result<u64, ClientError> {
        self.mailbox(mailbox).ack(ids).await
    }

    /// `self.queue(queue).push(payload)`, its id.
    pub async fn queue_push(&self, queue: &str, payload: &Json) -> Result<String, ClientError> {
        Ok(self.queue(queue).push(payload).await?.id)
    }

    /// `self.queue(args.queue).claim(..)`.
    pub async fn queue_claim(&self, args: &ClaimArgs<'_>) -> Result<Vec<Task>, ClientError> {
        let queue = self.queue(args.queue);
        queue.claim(args.max, args.wait_ms, args.lease_ms).await
    }

    /// `self.task(id).complete(result)`.
    pub async fn queue_complete(
        &self,
        id: &str,
        result: Option<&Json>,
    ) -> Result<Task, ClientError> {
        self.task(id).complete(result).await
    }

    /// `self.task(id).fail(error, retry_in_ms)`.
    pub async fn queue_fail(
        &self,
        id: &str,
        error: &str,
        retry_in_ms: Option<u64>,
    ) -> Result<Task, ClientError> {
        self.task(id).fail(error, retry_in_ms).await
    }

    /// `self.task(id).release()`.
    pub async fn queue_release(&self, id: &str) -> Result<Task, ClientError> {
        self.task(id).release().await
    }

    /// `self.task(id).extend(lease_ms)`, its new `lease_until`.
    pub async fn queue_extend(&self, id: &str, lease_ms: u64) -> Result<String, ClientError> {
        self.task(id).extend(lease_ms).await
    }
}

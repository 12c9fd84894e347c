//! The agent registry: deployed agents and the supervision of their OS processes.
//!
//! [`Agents`] is the handle requests use. Each deployed agent owned by this daemon has one
//! supervised [`actor::AgentActor`] (kept in a [`Directory`]), the only owner of the agent's
//! process; the durable registry is a [`store::RegistryStore`] (`agent_registry`). An entry is
//! owned by the daemon whose root it was deployed in: its `daemon_id` is that root's
//! `.ikigai/daemon.id`, and a daemon supervises only the entries it owns.

pub mod actor;
pub mod deploy;
pub mod isolation;
pub mod process;
pub mod state;
pub mod store;
mod writes;

use crate::identity::Identities;
use crate::root::Root;
use actix::Addr;
use actor::{AgentActor, Command, Heartbeat, InjectPanic, Op};
use deploy::DeployError;
use ikigai_actors::directory::Directory;
use ikigai_actors::store::StoreError;
use ikigai_actors::telemetry::Telemetry;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use store::{Entry, Owner, RegistryStore, Status};
use thiserror::Error;
use tokio::sync::oneshot;
use tracing::warn;

/// Why a registry operation failed.
#[derive(Debug, Error)]
pub enum AgentError {
    #[error("no agent {0:?} is deployed")]
    NotDeployed(String),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the agent's supervisor restarted before answering; the outcome is unknown")]
    Gone,
    #[error("{0:?} has no command in its manifest: it connects by itself and is never started by the daemon")]
    NoCommand(String),
}

/// What every agent actor needs.
pub struct Shared {
    pub store: Arc<dyn RegistryStore>,
    pub identities: Identities,
    pub telemetry: Telemetry,
    /// `.ikigai/services`: one directory per agent.
    pub services: PathBuf,
    /// This daemon, as recorded on the entries it owns.
    pub owner: Owner,
}

/// The registry as requests see it. Lives on the daemon's actor thread; cloning is cheap.
#[derive(Clone)]
pub struct Agents {
    inner: Rc<Inner>,
}

struct Inner {
    actors: Directory<AgentActor>,
    shared: Rc<Shared>,
}

impl Agents {
    pub fn new(
        store: Arc<dyn RegistryStore>,
        identities: Identities,
        telemetry: Telemetry,
        root: &Root,
        daemon_id: String,
    ) -> Agents {
        let shared = Rc::new(Shared {
            store,
            identities,
            telemetry,
            services: root.services(),
            owner: Owner {
                server: crate::root::hostname(),
                daemon_id,
            },
        });
        let make = {
            let shared = shared.clone();
            move |name, _| AgentActor::new(name, shared.clone())
        };
        Agents {
            inner: Rc::new(Inner {
                actors: Directory::new(make),
                shared,
            }),
        }
    }

    pub fn owner(&self) -> &Owner {
        &self.inner.shared.owner
    }

    pub fn services(&self) -> &PathBuf {
        &self.inner.shared.services
    }

    /// At start: finishes deployments a crash interrupted, then starts an actor for every entry
    /// this daemon owns whose directory is in place; each adopts its surviving process or starts
    /// a new one if the entry should run.
    pub async fn replay(&self) -> Result<usize, StoreError> {
        deploy::recover(self.services());
        let mut replayed = 0;
        for entry in self.list().await? {
            if !self.owns(&entry) {
                continue;
            }
            if !self.services().join(&entry.name).is_dir() {
                self.missing(&entry).await?;
                continue;
            }
            self.inner.actors.get(&entry.name);
            replayed += 1;
        }
        Ok(replayed)
    }

    /// An entry of this daemon whose directory is gone cannot run: it is marked `failed`.
    async fn missing(&self, entry: &Entry) -> Result<(), StoreError> {
        warn!(agent = %entry.name, "registered here but its service directory is missing; not started");
        if entry.status != Status::Running {
            return Ok(());
        }
        let shared = &self.inner.shared;
        shared.store.set_status(&entry.name, Status::Failed).await?;
        let message = format!("{}/ is missing; the agent cannot start", entry.name);
        let payload = serde_json::json!({"message": message, "kind": "missing_directory"});
        shared.telemetry.record(&entry.name, "error", payload);
        Ok(())
    }

    /// True when this daemon supervises `entry`.
    pub fn owns(&self, entry: &Entry) -> bool {
        entry.daemon_id.as_ref() == Some(&self.owner().daemon_id)
    }

    pub async fn get(&self, name: &str) -> Result<Option<Entry>, StoreError> {
        self.inner.shared.store.get(name).await
    }

    pub async fn list(&self) -> Result<Vec<Entry>, StoreError> {
        self.inner.shared.store.list().await
    }

    /// Carries out `op` on the agent `name` (its actor started if need be).
    pub async fn command(&self, name: &str, op: Op) -> Result<(), AgentError> {
        let (reply, answer) = oneshot::channel();
        send(&self.inner.actors.get(name), Command { op, reply }).await?;
        answer.await.map_err(|_| AgentError::Gone)?
    }

    /// Records a heartbeat of `name`; false when it is not registered.
    pub async fn heartbeat(&self, name: &str) -> Result<bool, StoreError> {
        let found = self.inner.shared.store.heartbeat(name).await?;
        if let Some(addr) = self.inner.actors.running(name) {
            addr.do_send(Heartbeat);
        }
        Ok(found)
    }

    /// Makes the logic of `name`'s actor panic (fault injection); false when it does not run.
    pub fn inject_panic(&self, name: &str) -> bool {
        let addr = self.inner.actors.running(name);
        addr.map(|a| a.do_send(InjectPanic)).is_some()
    }

    /// At daemon shutdown: stops every agent's process (TERM, KILL after its grace), all at
    /// once, leaving the entries as they are for the next start.
    pub async fn shutdown(&self) {
        let stops = self
            .inner
            .actors
            .all()
            .into_iter()
            .map(|(_, addr)| async move {
                let (reply, answer) = oneshot::channel();
                let op = Op::Shutdown;
                if send(&addr, Command { op, reply }).await.is_ok() {
                    let _ = answer.await;
                }
            });
        futures::future::join_all(stops).await;
    }
}

async fn send(addr: &Addr<AgentActor>, command: Command) -> Result<(), AgentError> {
    addr.send(command).await.map_err(|_| AgentError::Gone)
}

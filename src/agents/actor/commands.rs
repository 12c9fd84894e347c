//! The commands an agent's actor carries out: start, stop, restart, deploy, undeploy and the
//! daemon's shutdown. Each that stops the process does so inside `ctx.wait` (SIGTERM, SIGKILL
//! after `stop_grace_s`), so the actor's other messages wait until it is done, and each is
//! answered only after the registry writes it made.

use super::{cancel, AgentActor};
use crate::agents::deploy::{self, Staged};
use crate::agents::state::Supervision;
use crate::agents::store::Status;
use crate::agents::AgentError;
use crate::manifest::Manifest;
use actix::prelude::*;
use serde_json::json;
use std::future::Future;
use tokio::sync::oneshot;
use tracing::info;

/// What an operator (or another agent) asks of an agent.
pub enum Op {
    /// Runs it (again), forgetting a failure.
    Start,
    /// Stops it (TERM, KILL after `stop_grace_s`); it stays stopped.
    Stop,
    /// Stops it if it runs, then starts it.
    Restart,
    /// Replaces the deployment: stop, install, record, start with a fresh token.
    Deploy(Box<Deployment>),
    /// Stops it, forgets it, revokes its tokens and removes its directory.
    Undeploy,
    /// The daemon is stopping: stop the process but leave the entry `running`, so the next
    /// daemon starts it again.
    Shutdown,
}

/// A validated manifest and, unless the directory is already in place, its staged files.
pub struct Deployment {
    pub manifest: Manifest,
    pub staged: Option<Staged>,
}

/// Carries out `op`; answered once it is done.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Command {
    pub op: Op,
    pub reply: Reply,
}

/// Where a command's outcome goes.
pub type Reply = oneshot::Sender<Result<(), AgentError>>;

impl AgentActor {
    /// Stops the process (if any), then runs `work`, then `then` on the actor; the actor's other
    /// messages wait meanwhile.
    fn after_stopping<T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        work: impl Future<Output = T> + 'static,
        then: impl FnOnce(&mut Self, &mut Context<Self>, T) + 'static,
    ) {
        cancel(self.pending.take(), ctx);
        cancel(self.hang_timer.take(), ctx);
        let stopping = self.process.take().map(|p| {
            ctx.cancel_future(p.watcher);
            (p.running, self.grace())
        });
        let fut = async move {
            let end = match stopping {
                Some((running, grace)) => Some(running.terminate(grace).await),
                None => None,
            };
            (end, work.await)
        };
        ctx.wait(fut.into_actor(self).map(move |(end, out), act, ctx| {
            if let Some(end) = end {
                act.hung = false;
                act.record_exit(end);
                act.save_process(None);
            }
            then(act, ctx, out);
        }));
    }

    fn command(&mut self, op: Op, reply: Reply, ctx: &mut Context<Self>) {
        if self.deployed.is_none() && !matches!(op, Op::Deploy(_) | Op::Shutdown) {
            self.answer(reply, Err(AgentError::NotDeployed(self.name.clone())));
            return;
        }
        let connects_only = self.manifest().is_some_and(|m| m.command.is_none());
        if connects_only && matches!(op, Op::Start | Op::Restart) {
            self.answer(reply, Err(AgentError::NoCommand(self.name.clone())));
            return;
        }
        match op {
            Op::Start => {
                self.run(ctx);
                self.answer(reply, Ok(()));
            }
            Op::Stop => {
                self.set_status(Status::Stopped);
                self.after_stopping(ctx, async {}, |act, _, ()| act.answer(reply, Ok(())));
            }
            Op::Restart => self.after_stopping(ctx, async {}, |act, ctx, ()| {
                act.run(ctx);
                act.answer(reply, Ok(()));
            }),
            Op::Deploy(deployment) => self.deploy(deployment, reply, ctx),
            Op::Undeploy => self.undeploy(reply, ctx),
            Op::Shutdown => {
                self.down = true;
                self.after_stopping(ctx, async {}, |act, _, ()| act.answer(reply, Ok(())));
            }
        }
    }

    /// Marks the agent `running` with a clean restart history and starts it unless it runs.
    fn run(&mut self, ctx: &mut Context<Self>) {
        if let Some((_, supervision)) = &mut self.deployed {
            supervision.reset();
        }
        self.set_status(Status::Running);
        if self.process.is_none() && self.pending.is_none() {
            self.launch(ctx);
        }
    }

    fn deploy(&mut self, deployment: Box<Deployment>, reply: Reply, ctx: &mut Context<Self>) {
        let Deployment { manifest, staged } = *deployment;
        let (store, owner) = (self.shared.store.clone(), self.shared.owner.clone());
        let (services, identities) = (self.shared.services.clone(), self.shared.identities.clone());
        let value = serde_json::to_value(&manifest).expect("a manifest serializes");
        let (m, writes) = (manifest.clone(), self.writes.clone());
        // A started agent's fresh token revokes the older ones; one that only connects gets
        // none here (`agents.token` issues it), so its older ones are revoked at its deploy.
        let revoke = m.command.is_none().then(|| m.name.clone());
        let work = async move {
            let installed = match staged {
                Some(staged) => Some(deploy::install(&services, &m.name, staged)?),
                None => {
                    deploy::write_manifest(&services.join(&m.name), &m)?;
                    None
                }
            };
            let recorded = writes
                .queued(async move { store.deploy(&m.name, &m.version, &value, &owner).await })
                .await;
            if let Some(installed) = installed {
                match recorded {
                    Ok(()) => installed.commit(),
                    Err(_) => installed.rollback(),
                }
            }
            recorded?;
            if let Some(name) = revoke {
                identities.revoke(&name).await?;
            }
            Ok(())
        };
        self.after_stopping(
            ctx,
            work,
            move |act, ctx, result: Result<(), AgentError>| {
                if result.is_ok() {
                    info!(agent = %act.name, version = %manifest.version, "deployed");
                    act.record("agent_deployed", json!({"version": manifest.version}));
                    act.deployed = Some((manifest.clone(), Supervision::new(&manifest)));
                    act.token = None;
                    act.restarts = 0;
                    act.status = Status::Running;
                    if manifest.command.is_none() {
                        act.set_status(Status::Stopped);
                    }
                }
                if act.status == Status::Running {
                    act.launch(ctx);
                }
                act.answer(reply, result);
            },
        );
    }

    fn undeploy(&mut self, reply: Reply, ctx: &mut Context<Self>) {
        self.status = Status::Stopped;
        let (store, identities) = (self.shared.store.clone(), self.shared.identities.clone());
        let (name, dir) = (self.name.clone(), self.shared.services.join(&self.name));
        let writes = self.writes.clone();
        let work = async move {
            let removed = name.clone();
            writes
                .queued(async move { store.remove(&removed).await })
                .await?;
            identities.revoke(&name).await?;
            let _ = std::fs::remove_dir_all(&dir);
            Ok(())
        };
        self.after_stopping(ctx, work, move |act, _, result: Result<(), AgentError>| {
            if result.is_ok() {
                info!(agent = %act.name, "undeployed");
                act.record("agent_undeployed", json!({}));
                act.deployed = None;
                act.token = None;
            }
            act.answer(reply, result);
        });
    }

    /// Answers a command once the registry writes it made are done, so that a reader who got
    /// the answer sees them.
    fn answer(&self, reply: Reply, result: Result<(), AgentError>) {
        let written = self.writes.done();
        tokio::task::spawn_local(async move {
            written.await;
            let _ = reply.send(result);
        });
    }
}

impl Handler<Command> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: Command, ctx: &mut Context<Self>) {
        self.contained(ctx, |act, ctx| act.command(msg.op, msg.reply, ctx));
    }
}

//! `AgentActor`: one supervised actor per registry entry, the only owner of that agent's OS
//! process. It starts the process, learns of its end from the task that reaps it (or, for a
//! process adopted after a daemon restart, from polling `/proc`), applies the restart rules of
//! [`Supervision`] with their backoff, kills a process whose heartbeats stop, and carries out
//! the operators' commands (`commands.rs`).
//!
//! On start (and after a panic) it reloads its entry: an entry that should run either adopts the
//! process recorded for it, if that process still lives, or starts a new one.

mod commands;

pub use commands::{Command, Deployment, Op};

use super::process::{self, Ended, Launch, Running};
use super::state::{Decision, Exit, Supervision};
use super::store::{Entry, ProcessId, Status};
use super::writes::Writes;
use super::Shared;
use crate::manifest::Manifest;
use actix::prelude::*;
use ikigai_actors::store::StoreError;
use ikigai_actors::supervise::{contain, retry_delay};
use serde_json::json;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// The agent proved it is alive: its hang timer starts over.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Heartbeat;

/// Fault injection (`debug.panic_agent`): the actor's logic panics.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

/// The running process, as this actor watches it.
struct Proc {
    running: Rc<Running>,
    generation: u64,
    watcher: SpawnHandle,
}

pub struct AgentActor {
    name: String,
    shared: Rc<Shared>,
    deployed: Option<(Manifest, Supervision)>,
    /// The plain token handed to the process; kept across restarts of the process, replaced on
    /// redeploy and when the daemon restarts (the stored hash cannot give it back).
    token: Option<String>,
    process: Option<Proc>,
    /// Counts the processes watched, so that the end of an old one is not taken for the end of
    /// the current one.
    generation: u64,
    status: Status,
    restarts: u32,
    /// The pending restart after a backoff.
    pending: Option<SpawnHandle>,
    hang_timer: Option<SpawnHandle>,
    /// The current process was killed for missing heartbeats.
    hung: bool,
    /// The daemon is shutting down: nothing is started any more.
    down: bool,
    load_failures: u32,
    /// This agent's registry writes, applied in order.
    writes: Writes,
}

impl AgentActor {
    pub fn new(name: String, shared: Rc<Shared>) -> Self {
        let writes = Writes::start(&name);
        AgentActor {
            name,
            shared,
            deployed: None,
            token: None,
            process: None,
            generation: 0,
            status: Status::Stopped,
            restarts: 0,
            pending: None,
            hang_timer: None,
            hung: false,
            down: false,
            load_failures: 0,
            writes,
        }
    }

    fn record(&self, event_type: &str, payload: serde_json::Value) {
        self.shared
            .telemetry
            .record(&self.name, event_type, payload);
    }

    fn manifest(&self) -> Option<&Manifest> {
        self.deployed.as_ref().map(|(m, _)| m)
    }

    /// Reads the entry and resumes it: adopts its live process or starts one if it should run.
    fn load(&mut self, ctx: &mut Context<Self>) {
        let (store, name) = (self.shared.store.clone(), self.name.clone());
        let fut = async move { store.get(&name).await };
        ctx.wait(fut.into_actor(self).map(|result, act, ctx| match result {
            Ok(entry) => {
                act.load_failures = 0;
                act.resume(entry, ctx);
            }
            Err(e) => {
                act.load_failures += 1;
                let delay = retry_delay(act.load_failures);
                warn!(agent = %act.name, error = %e, ?delay, "loading the agent failed; retrying");
                ctx.run_later(delay, |act, ctx| act.load(ctx));
            }
        }));
    }

    fn resume(&mut self, entry: Option<Entry>, ctx: &mut Context<Self>) {
        let Some(entry) =
            entry.filter(|e| e.daemon_id.as_ref() == Some(&self.shared.owner.daemon_id))
        else {
            return;
        };
        let manifest = match Manifest::from_value(&entry.manifest) {
            Ok(m) => m,
            Err(e) => {
                error!(agent = %self.name, error = %e, "stored manifest is invalid; not starting");
                return;
            }
        };
        self.deployed = Some((manifest.clone(), Supervision::new(&manifest)));
        self.status = entry.status;
        self.restarts = entry.restarts;
        if self.status != Status::Running || self.process.is_some() {
            return;
        }
        let dir = self.shared.services.join(&self.name);
        match entry.process.and_then(|id| process::adopt(id, &dir)) {
            Some(running) => {
                info!(agent = %self.name, pid = running.id.pid, "adopted a process that outlived the daemon");
                self.record("agent_adopted", json!({"pid": running.id.pid}));
                self.watch(running, ctx);
            }
            None => self.launch(ctx),
        }
    }

    /// Starts the process, issuing a token first if there is none.
    fn launch(&mut self, ctx: &mut Context<Self>) {
        self.pending = None;
        let runnable = self.manifest().is_some_and(|m| m.command.is_some());
        if self.down || self.process.is_some() || self.status != Status::Running || !runnable {
            return;
        }
        if self.token.is_some() {
            return self.spawn(ctx);
        }
        let (identities, name) = (self.shared.identities.clone(), self.name.clone());
        let fut = async move { identities.rotate(&name).await };
        ctx.wait(fut.into_actor(self).map(|result, act, ctx| match result {
            Ok(token) => {
                act.token = Some(token);
                act.spawn(ctx);
            }
            Err(e) => {
                warn!(agent = %act.name, error = %e, "issuing the agent's token failed");
                act.after_exit(Ended::UNKNOWN, ctx);
            }
        }));
    }

    fn spawn(&mut self, ctx: &mut Context<Self>) {
        let (Some((manifest, _)), Some(token)) = (&self.deployed, &self.token) else {
            return;
        };
        let dir = self.shared.services.join(&self.name);
        let launch = Launch {
            name: &self.name,
            dir: &dir,
            manifest,
            token,
        };
        let version = manifest.version.clone();
        match process::spawn(&launch, &self.shared.telemetry) {
            Ok(running) => {
                let pid = running.id.pid;
                info!(agent = %self.name, pid, %version, "agent started");
                let payload = json!({"pid": pid, "version": version, "restarts": self.restarts});
                self.record("agent_started", payload);
                self.watch(running, ctx);
            }
            Err(e) => {
                warn!(agent = %self.name, error = %e, "starting the agent failed");
                let payload = json!({"stream": "daemon", "line": format!("cannot start: {e}")});
                self.record("log", payload);
                self.after_exit(Ended::UNKNOWN, ctx);
            }
        }
    }

    /// Makes `running` the agent's process: records it and waits for its end.
    fn watch(&mut self, running: Running, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        let running = Rc::new(running);
        let id = running.id;
        let watched = running.clone();
        let ended = async move { watched.ended().await };
        let watcher = ctx.spawn(ended.into_actor(self).map(move |end, act, ctx| {
            act.exited(generation, end, ctx);
        }));
        self.process = Some(Proc {
            running,
            generation,
            watcher,
        });
        self.arm_hang_timer(ctx);
        self.save_process(Some(id));
    }

    fn exited(&mut self, generation: u64, end: Ended, ctx: &mut Context<Self>) {
        if self.process.as_ref().map(|p| p.generation) != Some(generation) {
            return;
        }
        self.process = None;
        cancel(self.hang_timer.take(), ctx);
        let end = if std::mem::take(&mut self.hung) {
            Ended {
                exit: Exit::Abnormal,
                ..end
            }
        } else {
            end
        };
        self.record_exit(end);
        self.after_exit(end, ctx);
    }

    fn record_exit(&self, end: Ended) {
        info!(agent = %self.name, code = ?end.code, signal = ?end.signal, "agent exited");
        let normal = end.exit == Exit::Normal;
        let payload = json!({"code": end.code, "signal": end.signal, "normal": normal});
        self.record("agent_exited", payload);
    }

    /// Applies the restart rules to an exit (or a failed start).
    fn after_exit(&mut self, end: Ended, ctx: &mut Context<Self>) {
        self.save_process(None);
        if self.down || self.status != Status::Running {
            return;
        }
        let Some((manifest, supervision)) = &mut self.deployed else {
            return;
        };
        let (max, window) = (manifest.max_restarts, manifest.restart_window_s);
        match supervision.on_exit(end.exit, Instant::now()) {
            Decision::Restart(delay) => {
                self.restarts += 1;
                let delay_ms = delay.as_millis() as u64;
                self.record(
                    "agent_restarted",
                    json!({"delay_ms": delay_ms, "restarts": self.restarts}),
                );
                self.pending = Some(ctx.run_later(delay, |act, ctx| act.launch(ctx)));
            }
            Decision::Stop => self.set_status(Status::Stopped),
            Decision::Fail => {
                warn!(agent = %self.name, max, window, "agent restarted too often; marked failed");
                let message = format!(
                    "agent {} restarted more than {max} times in {window} s; marked failed, no longer restarted",
                    self.name
                );
                self.record("error", json!({"message": message, "kind": "crash_loop"}));
                self.set_status(Status::Failed);
            }
        }
    }

    fn arm_hang_timer(&mut self, ctx: &mut Context<Self>) {
        cancel(self.hang_timer.take(), ctx);
        if let Some(timeout) = self.manifest().and_then(|m| m.heartbeat_timeout_s) {
            let timeout = Duration::from_secs(timeout);
            self.hang_timer = Some(ctx.run_later(timeout, |act, ctx| act.hung(ctx)));
        }
    }

    /// No heartbeat within `heartbeat_timeout_s`: kill the process; its end restarts it.
    fn hung(&mut self, ctx: &mut Context<Self>) {
        self.hang_timer = None;
        let (Some(proc), Some(manifest)) = (&self.process, self.manifest()) else {
            return;
        };
        let timeout_s = manifest.heartbeat_timeout_s;
        warn!(agent = %self.name, ?timeout_s, "no heartbeat in time; killing the agent");
        self.record(
            "agent_hung",
            json!({"pid": proc.running.id.pid, "heartbeat_timeout_s": timeout_s}),
        );
        self.hung = true;
        let (running, grace) = (proc.running.clone(), self.grace());
        ctx.spawn(
            async move { running.terminate(grace).await }
                .into_actor(self)
                .map(|_, _, _| ()),
        );
    }

    fn grace(&self) -> Duration {
        Duration::from_secs(self.manifest().map_or(10, |m| m.stop_grace_s))
    }

    fn set_status(&mut self, status: Status) {
        self.status = status;
        let (store, name) = (self.shared.store.clone(), self.name.clone());
        self.save(async move { store.set_status(&name, status).await });
    }

    fn save_process(&self, process: Option<ProcessId>) {
        let (store, name, restarts) = (self.shared.store.clone(), self.name.clone(), self.restarts);
        self.save(async move { store.set_process(&name, process, restarts).await });
    }

    /// Queues a registry write; it runs after every write queued before it.
    fn save(&self, write: impl Future<Output = Result<(), StoreError>> + 'static) {
        self.writes.save(write);
    }

    /// Runs handler logic with panics contained: a panic stops the actor, and its supervisor
    /// restarts it (which reloads the entry and adopts the process).
    fn contained(
        &mut self,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut Self, &mut Context<Self>),
    ) {
        let panicked = contain(|| f(self, ctx)).err();
        if let Some(p) = panicked {
            error!(agent = %self.name, panic = %p.0, "agent supervisor panicked; restarting");
            ctx.stop();
        }
    }
}

impl Actor for AgentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.load(ctx);
    }
}

impl Supervised for AgentActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        warn!(agent = %self.name, "agent actor restarting; reloading its entry");
        self.record(
            "actor_restarted",
            json!({"actor": "agent", "agent": self.name}),
        );
        self.deployed = None;
        self.process = None;
        self.pending = None;
        self.hang_timer = None;
        self.hung = false;
    }
}

impl Handler<InjectPanic> for AgentActor {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, ctx: &mut Context<Self>) {
        self.contained(ctx, |act, _| {
            panic!("fault injected into agent {}", act.name)
        });
    }
}

impl Handler<Heartbeat> for AgentActor {
    type Result = ();

    fn handle(&mut self, _: Heartbeat, ctx: &mut Context<Self>) {
        self.contained(ctx, |act, ctx| {
            if act.process.is_some() {
                act.arm_hang_timer(ctx);
            }
        });
    }
}

fn cancel(handle: Option<SpawnHandle>, ctx: &mut Context<AgentActor>) {
    if let Some(handle) = handle {
        ctx.cancel_future(handle);
    }
}

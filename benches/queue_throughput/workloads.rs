//! The two workloads every queue in the comparison runs, here on the daemon: **drain** (tasks
//! pushed in bulk first, then consumed) and **flow** (producers pushing while consumers claim
//! and complete), and the result line both they and the peers print.

use crate::support::{now_us, percentile, Daemon};
use futures::stream::{FuturesUnordered, StreamExt};
use ikigai_client::{Client, NewTask, Task};
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Tasks one claim takes: the daemon's counterpart of the peers' local queue and batch size.
const CLAIM_MAX: u32 = 100;

/// What each queue reports for a workload (the peers print it as one JSON line).
#[derive(Debug, Clone, Deserialize)]
pub struct Measured {
    pub system: String,
    pub workload: String,
    pub tasks: u64,
    pub tasks_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub settings: String,
    /// The CPU time each process spent per task over the whole run, inserts included (filled
    /// in by the bench, for the daemon and for each peer).
    #[serde(default)]
    pub cpu_us: Vec<(String, f64)>,
}

impl Measured {
    pub fn print(&self) {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2} ms"));
        println!(
            "{:<8} {:<16} {:>9.0} tasks/s  ({} tasks)  push->start p50 {:>9}  p99 {:>9}  [{}]",
            self.workload,
            self.system,
            self.tasks_per_s,
            self.tasks,
            ms(self.p50_ms),
            ms(self.p99_ms),
            self.settings
        );
        if !self.cpu_us.is_empty() {
            let each: Vec<String> = self
                .cpu_us
                .iter()
                .map(|(who, us)| format!("{who} {us:.1}"))
                .collect();
            println!("         cpu us/task, whole run: {}", each.join(", "));
        }
    }
}

/// The sizes of both workloads, the same for every queue.
#[derive(Debug, Clone)]
pub struct Shape {
    pub drain_tasks: usize,
    pub concurrency: usize,
    pub producers: usize,
    pub window: usize,
    pub flow: Duration,
}

/// The settings the daemon's side runs with, as the peers name theirs.
fn settings(shape: &Shape) -> String {
    format!(
        "{} consumer connections, claim max {CLAIM_MAX}, next claim sent ahead, completions pipelined",
        shape.concurrency
    )
}

/// Pushes `shape.drain_tasks` in batches of 1,000 first, then drains them with
/// `shape.concurrency` consumers: tasks per second from the first claim to the last completion.
pub async fn drain(daemon: &Daemon, shape: &Shape) -> Measured {
    let producer = daemon.client("drain-producer").await;
    let queue = producer.queue("drain");
    let tasks: Vec<NewTask> = (0..1000).map(|n| NewTask::new(json!({"n": n}))).collect();
    for _ in 0..shape.drain_tasks.div_ceil(1000) {
        queue.push_many(&tasks).await.unwrap();
    }
    let total = shape.drain_tasks.div_ceil(1000) * 1000;
    let clients = daemon.clients("drainer", shape.concurrency).await;
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(consume(c, "drain", done.clone(), Stop::After(total))))
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let tasks_per_s = total as f64 / started.elapsed().as_secs_f64();
    Measured {
        system: "ikigai".into(),
        workload: "drain".into(),
        tasks: total as u64,
        tasks_per_s,
        p50_ms: None,
        p99_ms: None,
        settings: settings(shape),
        cpu_us: Vec::new(),
    }
}

/// CPU times `spent` over a run, per task of its `tasks`.
pub fn per_task(spent: Vec<(&str, Duration)>, tasks: u64) -> Vec<(String, f64)> {
    let per = |t: Duration| t.as_secs_f64() * 1e6 / tasks.max(1) as f64;
    spent
        .into_iter()
        .map(|(who, t)| (who.to_owned(), per(t)))
        .collect()
}

/// When consumers stop.
#[derive(Clone)]
pub enum Stop {
    /// Once this many tasks are done by all of them together.
    After(usize),
    /// Once the flag is set and a claim came back empty.
    When(Arc<AtomicBool>),
}

/// Claims up to [`CLAIM_MAX`] tasks at a time and completes each (pipelined), the next claim
/// sent before the completions of this one, as the peers fetch ahead; returns the push-to-start
/// latency of every task that carried its push time (`t`, in us) and when it started, in us.
pub async fn consume(
    client: Client,
    queue: &str,
    done: Arc<AtomicUsize>,
    stop: Stop,
) -> Vec<Started> {
    let mut started = Vec::new();
    let claim = json!({"queue": queue, "max": CLAIM_MAX, "wait_ms": 50});
    let mut next = client.submit("queue.claim", &claim).await.unwrap();
    loop {
        let tasks = next.reply::<Claimed>().await.unwrap().tasks;
        let finished = match &stop {
            Stop::After(total) => tasks.is_empty() && done.load(Ordering::Relaxed) >= *total,
            Stop::When(flag) => tasks.is_empty() && flag.load(Ordering::Relaxed),
        };
        if finished {
            return started;
        }
        next = client.submit("queue.claim", &claim).await.unwrap();
        let now = now_us();
        started.extend(tasks.iter().filter_map(|t| {
            let sent = t.payload["t"].as_u64()?;
            Some(Started {
                at: now,
                latency: now.saturating_sub(sent),
            })
        }));
        let mut completing = FuturesUnordered::new();
        for t in &tasks {
            let ack = client.submit("queue.complete", &json!({"id": t.id})).await;
            completing.push(ack.unwrap().value());
        }
        while let Some(r) = completing.next().await {
            r.unwrap();
        }
        done.fetch_add(tasks.len(), Ordering::Relaxed);
    }
}

#[derive(Deserialize)]
struct Claimed {
    tasks: Vec<Task>,
}

/// A task's start: when (us since the epoch) and how long after its push was sent.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub at: u64,
    pub latency: u64,
}

/// A flow run: its measurement and every task's start, for the sustained ratio.
pub struct Flow {
    pub measured: Measured,
    pub starts: Vec<Started>,
    /// When the producers began and stopped, in us since the epoch.
    pub began_us: u64,
    pub ended_us: u64,
}

/// Starts `shape.concurrency` consumers, then `shape.producers` producers each keeping
/// `shape.window` pushes in flight for `length`; the rate counts the tasks started while the
/// producers ran, the latencies every task pushed.
pub async fn flow(daemon: &Daemon, shape: &Shape, length: Duration, name: &str) -> Flow {
    let producing = Arc::new(AtomicBool::new(true));
    let stopped = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let consumers: Vec<_> = daemon
        .clients(&format!("{name}-worker"), shape.concurrency)
        .await
        .into_iter()
        .map(|c| {
            tokio::spawn(consume(
                c,
                "flow",
                done.clone(),
                Stop::When(stopped.clone()),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await; // the consumers are waiting
    let began_us = now_us();
    let producers: Vec<_> = daemon
        .clients(&format!("{name}-producer"), shape.producers)
        .await
        .into_iter()
        .map(|c| tokio::spawn(produce(c, shape.window, producing.clone())))
        .collect();
    tokio::time::sleep(length).await;
    producing.store(false, Ordering::Relaxed);
    let ended_us = now_us();
    for p in producers {
        p.await.unwrap();
    }
    stopped.store(true, Ordering::Relaxed);
    let mut starts = Vec::new();
    for c in consumers {
        starts.extend(c.await.unwrap());
    }
    let measured = flow_measured(shape, &starts, began_us, ended_us);
    Flow {
        measured,
        starts,
        began_us,
        ended_us,
    }
}

/// Pushes one task per call, `window` calls in flight, until `producing` is cleared.
async fn produce(client: Client, window: usize, producing: Arc<AtomicBool>) {
    let mut in_flight = FuturesUnordered::new();
    while producing.load(Ordering::Relaxed) {
        let args = json!({"queue": "flow", "payload": {"t": now_us()}});
        let push = client.submit("queue.push", &args).await.unwrap();
        in_flight.push(push.value());
        if in_flight.len() >= window {
            if let Some(pushed) = in_flight.next().await {
                pushed.unwrap();
            }
        }
    }
    while let Some(r) = in_flight.next().await {
        r.unwrap();
    }
}

fn flow_measured(shape: &Shape, starts: &[Started], began: u64, ended: u64) -> Measured {
    let within = starts.iter().filter(|s| s.at <= ended).count();
    let mut latencies: Vec<u64> = starts.iter().map(|s| s.latency).collect();
    let ms = |us: u64| Some(us as f64 / 1000.0);
    Measured {
        system: "ikigai".into(),
        workload: "flow".into(),
        tasks: within as u64,
        tasks_per_s: within as f64 / ((ended - began) as f64 / 1e6),
        p50_ms: ms(percentile(&mut latencies, 0.50)),
        p99_ms: ms(percentile(&mut latencies, 0.99)),
        settings: format!(
            "{}, {} producers x {} pushes in flight",
            settings(shape),
            shape.producers,
            shape.window
        ),
        cpu_us: Vec::new(),
    }
}

/// Tasks started in the first and in the last `window` of the producing period: the ratio of
/// the two is how well the speed lasts.
pub fn first_and_last(flow: &Flow, window: Duration) -> (usize, usize) {
    let width = window.as_micros() as u64;
    let in_range = |from: u64, to: u64| {
        flow.starts
            .iter()
            .filter(|s| s.at >= from && s.at < to)
            .count()
    };
    (
        in_range(flow.began_us, flow.began_us + width),
        in_range(flow.ended_us.saturating_sub(width), flow.ended_us),
    )
}

//! A seeded fuzz of the daemon over its socket (issue 19). Frames for every op of the route
//! table, with valid args, mistyped ones, and values that are deep, hold U+0000, have no JSON
//! form or are huge; byte-level mutations of valid frames (bit flips, truncation, length
//! prefixes that lie); over several agent and admin connections at once, pipelined, and
//! connections that never say `hello`. Every reply must be a well-formed frame with a known
//! error code and none `internal`; the daemon must log no panic and still serve at the end.
//!
//! `IKIGAI_FUZZ_FRAMES` sets how many frames are sent (default: a run sized for CI), and
//! `IKIGAI_FUZZ_SEED` the seed (default: from the clock). The choices a connection makes follow
//! from the seed alone; the ids it learns from replies (messages, tasks, transactions) are the
//! daemon's. The seed is named in every failure.

mod support;

use ikigai_protocol::{from_value, ErrorBody, ErrorCode, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;
use support::{Daemon, Raw};

/// Frames sent when `IKIGAI_FUZZ_FRAMES` is not set: some 20 seconds against a debug build
/// here (a release build takes some 500 a second).
const DEFAULT_FRAMES: u64 = 10_000;

/// Connections fuzzing at once.
const WORKERS: u64 = 6;

/// The agents the fuzz connects as (and admin).
const AGENTS: [&str; 3] = ["fz0", "fz1", "fz2"];

/// Agent names that deploys and the agents.* ops use: never one the fuzz connects as, whose
/// tokens a deploy would revoke.
const DEPLOYED: [&str; 2] = ["fzdeploy", "fznone"];

/// Transactions roll back soon, so that those the fuzz leaves open do not hold the pool.
const CONFIG: &str = "[daemon]\ntx_timeout_ms = 2000\n";

/// SplitMix64: small, and the same sequence for a seed everywhere, in every version.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn upto(&mut self, n: u64) -> usize {
        self.below(n + 1) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize].clone()
    }
}

fn s(v: &str) -> Value {
    Value::from(v)
}

fn nest(levels: usize) -> Value {
    (0..levels).fold(Value::from(1), |v, _| Value::Array(vec![v]))
}

fn encode(v: &Value) -> Vec<u8> {
    let mut body = Vec::new();
    rmpv::encode::write_value(&mut body, v).unwrap();
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

type Field = (&'static str, Value);

/// The args of one op: the fields it takes, each present when the op requires it and at random
/// when it is optional.
type Args = fn(&mut Gen) -> Vec<Field>;

/// One connection's generator of frames.
struct Gen {
    rng: Rng,
    /// UUIDs seen in this connection's replies (messages, tasks, transactions, subscriptions).
    seen: Vec<String>,
    /// The agent the connection speaks as.
    me: &'static str,
    next_id: u64,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            rng: Rng(seed),
            seen: Vec::new(),
            me: "admin",
            next_id: 1,
        }
    }

    /// A payload: mostly JSON, sometimes a value the daemon must refuse or one at its limits.
    fn payload(&mut self) -> Value {
        match self.rng.below(32) {
            0 => nest(60 + self.rng.upto(10)),
            1 => nest(100 + self.rng.upto(2000)),
            2 => s("nul\0inside"),
            3 => Value::Map(vec![(s("k\0"), Value::from(1))]),
            4 => Value::F64(f64::NAN),
            5 => Value::F32(f32::NEG_INFINITY),
            6 => Value::Binary(vec![1, 2, 3]),
            7 => Value::Ext(1, vec![0]),
            8 => Value::Map(vec![(Value::from(1), Value::from(2))]),
            9 => self.huge(),
            10 => Value::from(u64::MAX),
            11 => Value::from(i64::MIN),
            _ => self.json(3),
        }
    }

    fn json(&mut self, depth: u32) -> Value {
        let kinds = if depth == 0 { 5 } else { 8 };
        match self.rng.below(kinds) {
            0 => Value::Nil,
            1 => Value::from(self.rng.chance(50)),
            2 => Value::from(self.rng.next() as i64 >> self.rng.below(64)),
            3 => Value::F64(self.rng.next() as f64 / 7.0),
            4 => s(&self.word()),
            5 | 6 => Value::Array(
                (0..self.rng.upto(4))
                    .map(|_| self.json(depth - 1))
                    .collect(),
            ),
            _ => {
                let n = self.rng.upto(4);
                Value::Map(
                    (0..n)
                        .map(|_| (s(&self.word()), self.json(depth - 1)))
                        .collect(),
                )
            }
        }
    }

    fn word(&mut self) -> String {
        let words = [
            "a",
            "b",
            "hello world",
            "ünïcødé",
            "",
            "key1",
            "1",
            "🙂",
            "a.b.c",
        ];
        self.rng.pick(&words).to_owned()
    }

    /// Large, but well inside a frame: a long string, a long array, a wide map.
    fn huge(&mut self) -> Value {
        match self.rng.below(3) {
            0 => s(&"x".repeat(64 << 10 << self.rng.below(3))),
            1 => Value::Array(vec![Value::from(1); 50_000]),
            _ => Value::Map(
                (0..5000)
                    .map(|i| (s(&format!("k{i}")), Value::Nil))
                    .collect(),
            ),
        }
    }

    /// A value of any kind, to put where another kind is expected.
    fn any(&mut self) -> Value {
        match self.rng.below(12) {
            0 => Value::Nil,
            1 => Value::from(true),
            2 => Value::from(-1),
            3 => Value::from(u64::MAX),
            4 => Value::F64(1.5),
            5 => s("some string"),
            6 => Value::Array(vec![]),
            7 => Value::Map(vec![]),
            8 => Value::Binary(vec![0xff]),
            9 => s("\0"),
            10 => nest(70),
            _ => self.payload(),
        }
    }

    /// A name among few (so that ops meet each other's data), or a bad one.
    fn name_from(&mut self, names: &[&str]) -> Value {
        match self.rng.below(24) {
            0 => s(""),
            1 => s(&"n".repeat(300)),
            2 => s("nu\0l"),
            3 => Value::from(7),
            _ => s(self.rng.pick(names)),
        }
    }

    /// A mailbox or queue name: the connection's own, another agent's, a queue's, or a bad one.
    fn name(&mut self) -> Value {
        let own = self.me;
        self.name_from(&[own, own, AGENTS[0], AGENTS[1], "q0", "q1", "admin"])
    }

    fn agent_name(&mut self) -> Value {
        self.name_from(&[DEPLOYED[0], DEPLOYED[1], ".bad", "admin"])
    }

    fn key(&mut self) -> Value {
        self.name_from(&["k0", "k1", "k/2", "counter"])
    }

    fn topic(&mut self) -> Value {
        self.name_from(&["t0", "t.*", "t.>", ">", "a..b"])
    }

    /// A duration: small, at the limits, past them, or no duration at all.
    fn ms(&mut self) -> Value {
        let ms = [
            0,
            1,
            10,
            1000,
            30_000,
            3_600_001,
            1 << 40,
            1 << 63,
            u64::MAX,
        ];
        match self.rng.below(10) {
            0 => Value::from(-1),
            1 => s("10"),
            _ => Value::from(self.rng.pick(&ms)),
        }
    }

    /// A `wait_ms`: no wait, a short one, or one past the limit (never a long valid wait).
    fn wait(&mut self) -> Value {
        let ms = [0, 0, 1, 20, 300_001, u64::MAX];
        Value::from(self.rng.pick(&ms))
    }

    fn count(&mut self) -> Value {
        let n = [0, 1, 2, 10, 1000, 1001, 10_001, u64::MAX];
        match self.rng.below(10) {
            0 => Value::from(-1),
            _ => Value::from(self.rng.pick(&n)),
        }
    }

    fn int(&mut self) -> Value {
        let n = [
            0,
            1,
            -1,
            5,
            i32::MAX as i64,
            i32::MIN as i64,
            i64::MAX,
            i64::MIN,
        ];
        Value::from(self.rng.pick(&n))
    }

    /// An id: one seen in a reply, a fresh one, or not an id.
    fn uuid(&mut self) -> Value {
        match self.rng.below(10) {
            0..=4 if !self.seen.is_empty() => s(&self.rng.pick(&self.seen)),
            5 => s("not-a-uuid"),
            6 => s(&uuid::Uuid::from_u128(u128::from(self.rng.next()))
                .simple()
                .to_string()),
            7 => Value::from(3),
            _ => s(&uuid::Uuid::from_u128(u128::from(self.rng.next()) << 64).to_string()),
        }
    }

    fn time(&mut self) -> Value {
        let times = [
            "2025-03-01T12:00:00.123456Z",
            "2999-01-01T00:00:00Z",
            "yesterday",
            "",
        ];
        s(self.rng.pick(&times))
    }

    /// `Some((key, make(self)))` half the time.
    fn opt(&mut self, key: &'static str, make: fn(&mut Gen) -> Value) -> Option<Field> {
        self.rng.chance(50).then(|| (key, make(self)))
    }

    /// A `tx` now and then.
    fn tx(&mut self) -> Option<Field> {
        self.rng.chance(15).then(|| ("tx", self.uuid()))
    }

    /// The args of `make`, then perhaps one field dropped, mistyped or added, or no map at all.
    fn args(&mut self, make: Args) -> Value {
        let mut fields = make(self);
        let n = fields.len() as u64;
        match self.rng.below(20) {
            0 if n > 0 => drop(fields.remove(self.rng.below(n) as usize)),
            1 if n > 0 => fields[self.rng.below(n) as usize].1 = self.any(),
            2 => fields.push(("unknown", self.any())),
            3 => {
                return self
                    .rng
                    .pick(&[Value::Nil, Value::Array(vec![]), s("args")])
            }
            _ => {}
        }
        Value::Map(fields.into_iter().map(|(k, v)| (s(k), v)).collect())
    }

    /// A request frame for a random op (now and then one the daemon does not know).
    fn request(&mut self) -> Vec<u8> {
        let id = self.next_id;
        self.next_id += 1;
        let (op, args) = match self.rng.below(40) {
            0 => (
                self.rng.pick(&["nope", "", "ping\0", "mailbox.", "PING"]),
                Value::Nil,
            ),
            _ => {
                let (op, make) = self.rng.pick(OPS);
                (op, self.args(make))
            }
        };
        let fields = [("id", Value::from(id)), ("op", s(op)), ("args", args)];
        encode(&Value::Map(fields.map(|(k, v)| (s(k), v)).into()))
    }

    /// A frame whose envelope is wrong: a mistyped or missing id or op, not a map, not
    /// msgpack.
    fn odd_frame(&mut self) -> Vec<u8> {
        let body = match self.rng.below(6) {
            0 => Value::Map(vec![(s("id"), s("1")), (s("op"), s("ping"))]),
            1 => Value::Map(vec![(s("id"), Value::from(-5)), (s("op"), s("ping"))]),
            2 => Value::Map(vec![(s("id"), Value::from(9)), (s("op"), Value::from(1))]),
            3 => Value::Map(vec![(Value::from(1), Value::from(2)), (s("op"), s("ping"))]),
            4 => Value::Array(vec![Value::from(1)]),
            _ => return vec![0, 0, 0, 2, 0xc1, 0xc1],
        };
        encode(&body)
    }

    /// Breaks a frame: bit flips, a cut, or a length prefix that lies.
    fn mutate(&mut self, frame: &mut Vec<u8>) {
        let body = frame.len() as u64 - 4;
        let lie = |len: u64| (len as u32).to_be_bytes();
        match self.rng.below(5) {
            0 => {
                for _ in 0..=self.rng.below(4) {
                    let at = self.rng.below(frame.len() as u64) as usize;
                    frame[at] ^= 1 << self.rng.below(8);
                }
            }
            1 => frame.truncate(self.rng.below(frame.len() as u64) as usize),
            2 => frame[..4].copy_from_slice(&lie(body + 1 + self.rng.below(1000))),
            3 => frame[..4].copy_from_slice(&lie(self.rng.below(body))),
            _ => frame[..4].copy_from_slice(&lie(self.rng.pick(&[16 << 20 | 1, 1 << 31]))),
        }
    }

    /// Remembers the UUIDs a reply holds, for later requests to name.
    fn learn(&mut self, v: &Value) {
        match v {
            Value::String(s) => {
                if let Some(id) = s.as_str().filter(|s| uuid::Uuid::parse_str(s).is_ok()) {
                    if self.seen.len() == 64 {
                        self.seen.remove(0);
                    }
                    self.seen.push(id.to_owned());
                }
            }
            Value::Array(items) => items.iter().for_each(|v| self.learn(v)),
            Value::Map(entries) => entries.iter().for_each(|(_, v)| self.learn(v)),
            _ => {}
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A manifest, mostly one that deploys: a shell agent that exits at once (its supervisor then
/// backs off), or one the deploy must refuse.
fn deploy(g: &mut Gen) -> Vec<Field> {
    let command = g.rng.pick(&[
        Value::Array(vec![s("./run.sh")]),
        Value::Array(vec![s("/bin/sh")]),
        Value::Array(vec![s("../../x.sh")]),
        Value::Array(vec![]),
    ]);
    let manifest = Value::Map(vec![
        (s("name"), g.agent_name()),
        (s("version"), s("1")),
        (s("command"), command),
    ]);
    let file = Value::Map(vec![
        (
            s("path"),
            g.rng.pick(&[s("run.sh"), s("../escape"), s("/abs")]),
        ),
        (s("hex"), s(&hex(b"#!/bin/sh\nexit 0\n"))),
        (s("executable"), Value::from(true)),
    ]);
    let files = g.opt("files", |_| Value::Array(vec![]));
    let files = files.map(|(k, _)| (k, Value::Array(vec![file])));
    [Some(("manifest", manifest)), files]
        .into_iter()
        .flatten()
        .collect()
}

fn fields<const N: usize>(items: [Option<Field>; N]) -> Vec<Field> {
    items.into_iter().flatten().collect()
}

/// Every op of the daemon's route table, with the args it takes (see docs/protocol.md).
const OPS: &[(&str, Args)] = &[
    ("ping", |_| vec![]),
    ("daemon.status", |_| vec![]),
    ("hello", |g| {
        let agent = g
            .rng
            .pick(&[s(AGENTS[0]), s("admin"), s("nobody"), Value::from(1)]);
        let token = g.rng.pick(&[s(&"0".repeat(64)), s(""), s("\0")]);
        vec![
            ("protocol", g.rng.pick(&[Value::from(1), Value::from(2)])),
            ("agent", agent),
            ("token", token),
        ]
    }),
    ("mailbox.send", |g| {
        fields([
            Some(("mailbox", g.name())),
            Some(("payload", g.payload())),
            g.tx(),
        ])
    }),
    ("mailbox.receive", |g| {
        fields([
            Some(("mailbox", g.name())),
            g.opt("max", Gen::count),
            g.opt("wait_ms", Gen::wait),
            g.opt("visibility_ms", Gen::ms),
        ])
    }),
    ("mailbox.ack", |g| {
        let ids = (0..g.rng.upto(3)).map(|_| g.uuid()).collect();
        fields([
            Some(("mailbox", g.name())),
            Some(("ids", Value::Array(ids))),
            g.tx(),
        ])
    }),
    ("mailbox.peek", |g| {
        fields([Some(("mailbox", g.name())), g.opt("limit", Gen::count)])
    }),
    ("mailbox.stats", |g| fields([g.opt("mailbox", Gen::name)])),
    ("queue.push", |g| {
        let mut f = task(g);
        f.extend(fields([Some(("queue", g.name())), g.tx()]));
        f
    }),
    ("queue.push_many", |g| {
        let tasks = (0..g.rng.upto(3)).map(|_| task_value(g)).collect();
        fields([
            Some(("queue", g.name())),
            Some(("tasks", Value::Array(tasks))),
            g.tx(),
        ])
    }),
    ("queue.claim", |g| {
        fields([
            Some(("queue", g.name())),
            g.opt("max", Gen::count),
            g.opt("wait_ms", Gen::wait),
            g.opt("lease_ms", Gen::ms),
            g.tx(),
        ])
    }),
    ("queue.extend", |g| {
        fields([Some(("id", g.uuid())), Some(("lease_ms", g.ms())), g.tx()])
    }),
    ("queue.complete", |g| {
        fields([
            Some(("id", g.uuid())),
            g.opt("result", Gen::payload),
            g.tx(),
        ])
    }),
    ("queue.fail", |g| {
        fields([
            Some(("id", g.uuid())),
            Some(("error", s("failed"))),
            g.opt("retry_in_ms", Gen::ms),
            g.tx(),
        ])
    }),
    ("queue.release", |g| {
        fields([Some(("id", g.uuid())), g.tx()])
    }),
    ("queue.stats", |g| vec![("queue", g.name())]),
    ("queue.list", |g| {
        let state = |g: &mut Gen| g.name_from(&["ready", "claimed", "done", "dead", "bogus"]);
        fields([
            Some(("queue", g.name())),
            g.opt("state", state),
            g.opt("after", Gen::int),
            g.opt("limit", Gen::count),
        ])
    }),
    ("pubsub.publish", |g| {
        vec![("topic", g.topic()), ("message", g.payload())]
    }),
    ("pubsub.subscribe", |g| vec![("topic", g.topic())]),
    ("pubsub.unsubscribe", |g| vec![("subscription", g.uuid())]),
    ("storage.put", |g| {
        fields([
            Some(("key", g.key())),
            Some(("value", g.payload())),
            g.opt("if_version", Gen::int),
            g.opt("agent", Gen::name),
            g.tx(),
        ])
    }),
    ("storage.get", |g| {
        fields([Some(("key", g.key())), g.opt("agent", Gen::name)])
    }),
    ("storage.delete", |g| {
        fields([
            Some(("key", g.key())),
            g.opt("if_version", Gen::int),
            g.tx(),
        ])
    }),
    ("storage.list", |g| {
        fields([
            g.opt("prefix", Gen::key),
            g.opt("limit", Gen::count),
            g.opt("after", Gen::key),
            g.opt("agent", Gen::name),
        ])
    }),
    ("telemetry.emit", |g| {
        vec![("event_type", g.key()), ("payload", g.payload())]
    }),
    ("telemetry.query", |g| {
        fields([
            g.opt("agent", Gen::name),
            g.opt("event_type", Gen::key),
            g.opt("since", Gen::time),
            g.opt("until", Gen::time),
            g.opt("text", Gen::key),
            g.opt("limit", Gen::count),
        ])
    }),
    ("tx.begin", |_| vec![]),
    ("tx.commit", |g| vec![("tx", g.uuid())]),
    ("tx.rollback", |g| vec![("tx", g.uuid())]),
    ("cache.get", |g| {
        fields([
            Some(("key", g.key())),
            g.opt("shared", Gen::any),
            g.opt("agent", Gen::name),
        ])
    }),
    ("cache.get_many", |g| {
        let keys = (0..g.rng.upto(4)).map(|_| g.key()).collect();
        vec![("keys", Value::Array(keys))]
    }),
    ("cache.set", |g| {
        fields([
            Some(("key", g.key())),
            Some(("value", g.payload())),
            g.opt("ttl_ms", Gen::ms),
            g.opt("shared", |g| Value::from(g.rng.chance(50))),
            g.opt("agent", Gen::name),
            g.tx(),
        ])
    }),
    ("cache.delete", |g| vec![("key", g.key())]),
    ("cache.incr", |g| {
        fields([Some(("key", g.key())), g.opt("by", Gen::int)])
    }),
    ("llm.prompt", |g| {
        let message = Value::Map(vec![(s("role"), s("user")), (s("content"), g.payload())]);
        fields([
            Some(("model", g.key())),
            Some(("messages", Value::Array(vec![message]))),
            g.opt("thread", Gen::uuid),
            g.opt("max_tokens", Gen::count),
            g.opt("temperature", |g| Value::F64(g.rng.below(5) as f64 - 1.0)),
        ])
    }),
    ("llm.tool_result", |g| {
        vec![("call_id", g.key()), ("content", g.payload())]
    }),
    ("llm.usage", |g| fields([g.opt("since_ms", Gen::ms)])),
    ("threads.create", |g| fields([g.opt("context", Gen::key)])),
    ("assets.create", |g| {
        fields([
            Some(("label", g.key())),
            Some(("value", g.key())),
            Some(("limit", g.count())),
            g.opt("description", Gen::key),
        ])
    }),
    ("assets.update", |g| {
        fields([
            Some(("label", g.key())),
            g.opt("value", Gen::key),
            g.opt("limit", Gen::count),
        ])
    }),
    ("assets.get", |g| {
        fields([Some(("label", g.key())), g.opt("history", Gen::count)])
    }),
    ("assets.list", |_| vec![]),
    ("assets.delete", |g| vec![("label", g.key())]),
    ("context.mark", |g| {
        fields([Some(("label", g.key())), g.opt("thread", Gen::uuid)])
    }),
    ("context.rewind", |g| {
        fields([Some(("mark", g.key())), g.opt("thread", Gen::uuid)])
    }),
    ("context.exclude", |g| {
        fields([Some(("id", g.uuid())), g.opt("thread", Gen::uuid)])
    }),
    ("context.summarize", |g| {
        fields([
            g.opt("older_than", Gen::ms),
            g.opt("before", Gen::count),
            g.opt("thread", Gen::uuid),
        ])
    }),
    ("context.window", |g| {
        fields([
            g.opt("tokens", Gen::count),
            g.opt("strategy", Gen::key),
            g.opt("thread", Gen::uuid),
        ])
    }),
    ("conversation.list", |g| {
        fields([
            g.opt("limit", Gen::count),
            g.opt("before", Gen::count),
            g.opt("thread", Gen::uuid),
        ])
    }),
    ("conversation.delete", |g| {
        fields([Some(("id", g.count())), g.opt("thread", Gen::uuid)])
    }),
    ("conversation.search", |g| {
        fields([Some(("text", g.key())), g.opt("limit", Gen::count)])
    }),
    ("agents.token", |g| vec![("name", g.agent_name())]),
    ("agents.deploy", deploy),
    ("agents.list", |_| vec![]),
    ("agents.get", |g| vec![("name", g.agent_name())]),
    ("agents.start", |g| vec![("name", g.agent_name())]),
    ("agents.stop", |g| vec![("name", g.agent_name())]),
    ("agents.restart", |g| vec![("name", g.agent_name())]),
    ("agents.undeploy", |g| vec![("name", g.agent_name())]),
    ("agents.heartbeat", |_| vec![]),
    ("debug.panic_mailbox", |g| vec![("mailbox", g.name())]),
    ("debug.panic_agent", |g| vec![("name", g.agent_name())]),
];

/// A pushed task's own fields.
fn task(g: &mut Gen) -> Vec<Field> {
    fields([
        Some(("payload", g.payload())),
        g.opt("priority", Gen::int),
        g.opt("scheduled_for", Gen::time),
        g.opt("delay_ms", Gen::ms),
        g.opt("max_attempts", Gen::int),
        g.opt("dedup_key", Gen::key),
    ])
}

fn task_value(g: &mut Gen) -> Value {
    Value::Map(task(g).into_iter().map(|(k, v)| (s(k), v)).collect())
}

/// What a well-formed frame from the daemon is.
enum Reply {
    Response {
        id: u64,
        err: Option<ErrorBody>,
        body: Value,
    },
    Push,
}

/// Reads a frame from the daemon: one msgpack map, `{"id", "ok"}`, `{"id", "err"}` with a
/// known code, or `{"push", "data"}`; else what is wrong.
fn reply(frame: &[u8]) -> Result<Reply, String> {
    let mut cur = frame;
    let value = rmpv::decode::read_value(&mut cur).map_err(|e| format!("not msgpack: {e}"))?;
    if !cur.is_empty() {
        return Err("bytes after the map".into());
    }
    let Value::Map(entries) = &value else {
        return Err(format!("not a map: {value}"));
    };
    let keys: BTreeSet<&str> = entries.iter().filter_map(|(k, _)| k.as_str()).collect();
    let get = |name: &str| entries.iter().find(|(k, _)| k.as_str() == Some(name));
    if keys.len() != entries.len() {
        return Err(format!("repeated or non-string keys: {value}"));
    }
    let id = || get("id").and_then(|(_, v)| v.as_u64()).ok_or("no uint id");
    match Vec::from_iter(keys)[..] {
        ["data", "push"] if get("push").is_some_and(|(_, v)| v.is_str()) => Ok(Reply::Push),
        ["id", "ok"] => Ok(Reply::Response {
            id: id()?,
            err: None,
            body: value.clone(),
        }),
        ["err", "id"] => {
            let err = from_value::<ErrorBody>(get("err").unwrap().1.clone())
                .map_err(|e| format!("error body: {e}: {value}"))?;
            Ok(Reply::Response {
                id: id()?,
                err: Some(err),
                body: value.clone(),
            })
        }
        _ => Err(format!("not a reply: {value}")),
    }
}

/// What the connections saw.
#[derive(Default)]
struct Stats {
    frames: u64,
    replies: u64,
    pushes: u64,
    connections: u64,
    codes: BTreeMap<&'static str, u64>,
    internal: Vec<String>,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.frames += other.frames;
        self.replies += other.replies;
        self.pushes += other.pushes;
        self.connections += other.connections;
        for (code, n) in other.codes {
            *self.codes.entry(code).or_default() += n;
        }
        self.internal.extend(other.internal);
    }

    /// Counts a reply; `Some(id)` for a response.
    fn count(&mut self, frame: &[u8]) -> Result<Option<(u64, Value)>, String> {
        match reply(frame)? {
            Reply::Push => {
                self.pushes += 1;
                Ok(None)
            }
            Reply::Response { id, err, body } => {
                self.replies += 1;
                let code = err.as_ref().map_or("ok", |e| e.code.as_str());
                *self.codes.entry(code).or_default() += 1;
                if let Some(e) = err.filter(|e| e.code == ErrorCode::Internal) {
                    self.internal.push(e.message);
                }
                Ok(Some((id, body)))
            }
        }
    }
}

/// The identities the fuzz connects as, with their tokens.
type Tokens = Vec<(&'static str, String)>;

/// One connection's worth of fuzz, of a kind the generator picks.
async fn connection(
    d: &Daemon,
    g: &mut Gen,
    tokens: &Tokens,
    st: &mut Stats,
) -> Result<(), String> {
    st.connections += 1;
    let (who, token) = g.rng.pick(tokens);
    g.me = who;
    match g.rng.below(10) {
        0..=5 => session(Raw::hello_as(d, who, &token).await, g, st).await,
        6..=7 => hostile(Raw::hello_as(d, who, &token).await, g, st).await,
        _ => hostile(Raw::connect(d).await, g, st).await,
    }
}

/// An authenticated connection that pipelines batches of well-framed requests and reads every
/// reply: exactly one per request, matched by id.
async fn session(mut raw: Raw, g: &mut Gen, st: &mut Stats) -> Result<(), String> {
    st.frames += 1;
    for _ in 0..=g.rng.below(8) {
        let n = 1 + g.rng.below(64);
        let first = g.next_id;
        let batch: Vec<u8> = (0..n).flat_map(|_| g.request()).collect();
        let mut waiting: BTreeSet<u64> = (first..first + n).collect();
        raw.send(&batch).await;
        st.frames += n;
        while !waiting.is_empty() {
            let frame = raw.body().await.ok_or("closed with requests unanswered")?;
            if let Some((id, body)) = st.count(&frame)? {
                if !waiting.remove(&id) {
                    return Err(format!("a reply to no request waiting: {body}"));
                }
                g.learn(&body);
            }
        }
    }
    Ok(())
}

/// A connection that sends requests, odd frames and broken ones, closes its writing half and
/// reads whatever comes back until the daemon closes: each frame must be well-formed.
async fn hostile(mut raw: Raw, g: &mut Gen, st: &mut Stats) -> Result<(), String> {
    let n = 1 + g.rng.below(8);
    let mut bytes = Vec::new();
    for _ in 0..n {
        let mut frame = match g.rng.below(4) {
            0 => g.odd_frame(),
            _ => g.request(),
        };
        if g.rng.chance(40) {
            g.mutate(&mut frame);
        }
        bytes.extend(frame);
    }
    st.frames += n;
    // The daemon may close first (a bad frame): what it sent until then is still read.
    let _ = raw.send_last(&bytes).await;
    while let Some(frame) = raw.body().await {
        st.count(&frame)?;
    }
    Ok(())
}

/// A connection at a time until this worker sent its share of the frames.
async fn worker(d: &Daemon, seed: u64, tokens: &Tokens, frames: u64) -> Result<Stats, String> {
    let mut g = Gen::new(seed);
    let mut st = Stats::default();
    while st.frames < frames {
        connection(d, &mut g, tokens, &mut st).await?;
    }
    Ok(st)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().expect(name))
}

/// The ops `src/cmd/mod.rs` routes: the string patterns of its match arms.
fn routed_ops() -> BTreeSet<String> {
    let source = include_str!("../src/cmd/mod.rs");
    let arms = source.lines().filter_map(|l| l.trim().split_once(" =>"));
    arms.filter(|(pattern, _)| pattern.starts_with('"'))
        .flat_map(|(pattern, _)| pattern.split(" | ").map(|p| p.trim_matches('"').to_owned()))
        .collect()
}

/// The ops `docs/protocol.md` documents: the names in backquotes of its `### ` headings.
fn documented_ops() -> BTreeSet<String> {
    let doc = include_str!("../docs/protocol.md");
    let headings = doc.lines().filter_map(|l| l.strip_prefix("### "));
    headings
        .flat_map(|h| h.split('`').skip(1).step_by(2).map(str::to_owned))
        .collect()
}

#[test]
fn the_generator_knows_every_routed_and_documented_op() {
    let generated: BTreeSet<String> = OPS.iter().map(|(op, _)| op.to_string()).collect();
    assert_eq!(generated.len(), OPS.len(), "an op listed twice");
    let routed = routed_ops();
    assert!(routed.len() > 40, "the route table was read: {routed:?}");
    let missing: Vec<_> = routed.union(&documented_ops()).cloned().collect();
    let missing: Vec<_> = missing
        .into_iter()
        .filter(|op| !generated.contains(op))
        .collect();
    assert!(
        missing.is_empty(),
        "ops the fuzz does not send: {missing:?}"
    );
    let unknown: Vec<_> = generated.difference(&routed).collect();
    assert!(
        unknown.is_empty(),
        "ops the daemon does not route: {unknown:?}"
    );
}

#[tokio::test]
async fn a_socket_fuzz_gets_well_formed_replies_no_internal_error_and_no_panic() {
    let frames = env_u64("IKIGAI_FUZZ_FRAMES").unwrap_or(DEFAULT_FRAMES);
    let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let seed = env_u64("IKIGAI_FUZZ_SEED").unwrap_or_else(|| clock.unwrap().as_nanos() as u64);
    eprintln!("socket fuzz: IKIGAI_FUZZ_SEED={seed} IKIGAI_FUZZ_FRAMES={frames}");
    let d = Daemon::start_with(CONFIG).await;
    let mut tokens: Tokens = vec![("admin", d.admin_token())];
    for agent in AGENTS {
        tokens.push((agent, d.token(agent).await));
    }
    let started = Instant::now();
    let workers = (0..WORKERS).map(|w| worker(&d, seed ^ w << 56, &tokens, frames / WORKERS));
    let mut st = Stats::default();
    for result in futures::future::join_all(workers).await {
        st.merge(result.unwrap_or_else(|e| panic!("seed {seed}: {e}")));
    }
    let took = started.elapsed();
    eprintln!(
        "socket fuzz: seed {seed}: {} frames on {} connections in {took:.1?}: {} replies {:?}, \
         {} pushes",
        st.frames, st.connections, st.replies, st.codes, st.pushes
    );
    assert!(
        st.internal.is_empty(),
        "seed {seed}: internal replies: {:?}",
        st.internal
    );
    let log = d.log();
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked at")).collect();
    assert!(
        panics.is_empty(),
        "seed {seed}: the daemon panicked: {panics:#?}"
    );
    d.assert_serving().await;
}

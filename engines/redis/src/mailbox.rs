//! The mailbox service on Redis: one stream per mailbox holding exactly its unread messages,
//! read by one consumer group in which each daemon's consumer (named by its daemon id) holds
//! what it loaded. [`RedisMailboxes`] is the store, the journal and the change feed.
//!
//! Keys, under the configured prefix `P`:
//! * `P:mb:<mailbox>`: the stream; an entry's fields are `id` (the message's UUID), `sender`
//!   and `payload` (JSON text), its entry id gives the message's `seq` and `created_at`. Its
//!   consumer group is [`GROUP`]. An ack is `XACK` + `XDEL`, so the stream is the unread set.
//! * `P:mbids`: hash, message id → entry id of every unread message (an ack and an attempt
//!   count name a message by id alone); `P:mbattempts`: hash, message id → deliveries
//!   recorded; `P:mbread`: hash, mailbox → messages read; `P:mbnames`: set of the mailboxes sent
//!   to (for [`MailboxStore::counts`] of all of them).
//! * `P:mblease:<mailbox>`: the serving lease, the holder's daemon id with a `PX` expiry.
//! * `P:mbdead:<mailbox>`: a stream of the entries that did not decode, moved out of the way
//!   (the Postgres engine marks such rows read by `ikigai:undecodable`); they count as read.
//! * `P:mbfeed`: the channel of the change feed, carrying the Postgres engine's notification
//!   text (`sent`, `acked` or `released`, the mailbox, then the ids, one per line).
//!
//! `seq` is the entry id `ms-n` packed as `ms << 20 | n`, which orders as the entry ids do
//! (XADD makes them grow in each stream, so `seq` is commit order per mailbox, the FIFO order).
//! Its limits: `n` below 2^20 (a million entries of one stream within one millisecond, which a
//! clock stepped back can approach, as XADD then counts on within the last millisecond) and
//! `ms` below 2^43 (the year 2248); the journal refuses a send whose entry id would fall beyond
//! them, and an entry beyond them (written by something else) does not decode.
//!
//! Every group commit is one Lua script, which Redis runs atomically and which publishes the
//! feed's notifications itself, so a send is answered only after Redis applied it (and, as
//! with `appendonly no`, durable only as far as the server's persistence makes it). Redis does
//! not undo the writes of a script that fails half-way, so the script first checks everything
//! that could make a later command fail or a send's entry id no seq (key types, duplicate
//! message ids, the streams' last entry ids) and refuses the whole group before writing. Like
//! the Postgres trigger, it announces a send or an ack unless this daemon holds the mailbox's
//! lease with over a second to spare. The scripts name keys derived from the prefix rather
//! than passed as `KEYS`: one Redis server, not a Cluster.
//!
//! Loads read with `XRANGE`, not `XREADGROUP`: the actor asks for exactly the unread messages
//! after a `seq` (after a restart, or when it takes the lease, from the start), delivered
//! before or not, while `XREADGROUP >` returns only entries never delivered to the group and
//! `XREADGROUP 0` only one consumer's pending ones. The load then records what it read as held
//! by this daemon's consumer (`XCLAIM ... FORCE JUSTID`), and taking the lease moves to it
//! whatever the previous holder's consumer held (`XAUTOCLAIM` from idle 0); redelivery timing
//! stays with the actor, which knows the visibility deadlines. An entry that does not decode
//! (written by something else) is reported, moved to `P:mbdead:<mailbox>` and the load read
//! again, as the Postgres engine dead-letters and reloads.

use super::store_error;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use ikigai_actors::store::undecodable::report;
use ikigai_actors::store::{
    Feed, MailboxBatch, MailboxChange, MailboxCommitted, MailboxCounts, MailboxJournal,
    MailboxStore, StoreError,
};
use ikigai_actors::supervise::retry_delay;
use ikigai_actors::{NewMessage, StoredMessage};
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{FromRedisValue, RedisError, Script, ScriptInvocation};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;
use tracing::warn;
use uuid::Uuid;

/// The consumer group of every mailbox stream.
pub const GROUP: &str = "ikigai";

/// Bits of a `seq` holding the entry id's number within its millisecond.
const SEQ_BITS: u32 = 20;

/// Definitions every script starts with: `ARGV[1]` is the prefix, `ARGV[2]` this daemon's id.
const PRELUDE: &str = r#"
local P, me = ARGV[1], ARGV[2]
local ids, attempts, reads = P .. ':mbids', P .. ':mbattempts', P .. ':mbread'
local names, feed = P .. ':mbnames', P .. ':mbfeed'
local function stream(m) return P .. ':mb:' .. m end
local function lease(m) return P .. ':mblease:' .. m end
local function kind(key) return redis.call('TYPE', key)['ok'] end
local function valid_id(eid)
  return type(eid) == 'string' and string.match(eid, '^%d+%-%d+$') ~= nil
end
local function field(fields, name)
  for i = 1, #fields - 1, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
end
-- The entry `eid` of stream `key` if it holds the message `id`.
local function entry(key, eid, id)
  if not valid_id(eid) then return nil end
  local e = redis.call('XRANGE', key, eid, eid)[1]
  if e and field(e[2], 'id') == id then return e end
end
local function ensure_group(key)
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    if g[2] == GROUP then return end
  end
  redis.call('XGROUP', 'CREATE', key, GROUP, '0')
end
local function claim(key, eids)
  local args = {'XCLAIM', key, GROUP, me, '0'}
  for _, eid in ipairs(eids) do args[#args + 1] = eid end
  args[#args + 1] = 'FORCE'
  args[#args + 1] = 'JUSTID'
  redis.call(unpack(args))
end
-- Records `entries` of `key` as held by this daemon's consumer (and indexes entries another
-- writer added); returns each as {entry id, fields, attempts}.
local function deliver(key, entries)
  ensure_group(key)
  local out, batch = {}, {}
  for _, e in ipairs(entries) do
    local id, n = field(e[2], 'id'), 0
    if id then
      redis.call('HSETNX', ids, id, e[1])
      n = tonumber(redis.call('HGET', attempts, id)) or 0
    end
    out[#out + 1] = {e[1], e[2], n}
    batch[#batch + 1] = e[1]
    if #batch == 1000 then claim(key, batch); batch = {} end
  end
  if #batch > 0 then claim(key, batch) end
  return out
end
"#;

/// A group commit. `ARGV[3..5]`: how many sends, acks and attempt counts follow, as
/// (mailbox, id, sender, payload), (mailbox, id) and (id, attempts). Returns the sends' entry
/// ids in order and the ids acks changed from unread to read.
const COMMIT: &str = r#"
local ns, na, nt = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local a0 = 5 + 4 * ns
local t0 = a0 + 2 * na
local function send(i) local b = 5 + 4 * i; return ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4] end
local function ack(i) return ARGV[a0 + 2 * i + 1], ARGV[a0 + 2 * i + 2] end
local function mistyped(key, want)
  local k = kind(key)
  if k ~= 'none' and k ~= want then return key .. ' holds a ' .. k end
end
-- Whether `k` more entries of stream `key` get entry ids that are seqs (ms below 2^43, n
-- below 2^20): XADD counts on from the last id while the clock has not passed its ms.
local function room(key, k)
  if redis.call('EXISTS', key) == 0 then return true end
  local last = field(redis.call('XINFO', 'STREAM', key), 'last-generated-id') or ''
  local ms, n = string.match(last, '^(%d+)%-(%d+)$')
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  return ms == nil or tonumber(ms) < now or (tonumber(ms) < 2^43 and tonumber(n) + k < 2^20)
end
-- Why the group cannot be applied whole, found before anything is written.
local function refusal()
  local bad = mistyped(ids, 'hash') or mistyped(attempts, 'hash') or mistyped(reads, 'hash')
    or mistyped(names, 'set')
  if bad then return bad end
  local seen, checked, sends = {}, {}, {}
  for i = 0, ns + na - 1 do
    local m, id
    if i < ns then m, id = send(i) else m = ack(i - ns) end
    if id and (seen[id] or redis.call('HEXISTS', ids, id) == 1) then
      return 'message ' .. id .. ' exists'
    end
    if id then seen[id] = true; sends[m] = (sends[m] or 0) + 1 end
    if not checked[m] then
      bad = mistyped(stream(m), 'stream') or mistyped(lease(m), 'string')
      if bad then return bad end
      checked[m] = true
    end
  end
  for m, k in pairs(sends) do
    if not room(stream(m), k) then return stream(m) .. ' has no seq left for its entry ids' end
  end
end
local function add(by, order, m, id)
  if not by[m] then by[m] = {}; order[#order + 1] = m end
  table.insert(by[m], id)
end
local function announce(what, by, order)
  for _, m in ipairs(order) do
    local l = lease(m)
    if redis.call('GET', l) ~= me or redis.call('PTTL', l) < 1000 then
      redis.call('PUBLISH', feed, what .. '\n' .. m .. '\n' .. table.concat(by[m], '\n'))
    end
  end
end

local bad = refusal()
if bad then return redis.error_reply('group refused: ' .. bad) end
local sent, sent_by, sent_order = {}, {}, {}
for i = 0, ns - 1 do
  local m, id, sender, payload = send(i)
  local key = stream(m)
  if not sent_by[m] then
    if redis.call('EXISTS', key) == 0 then
      redis.call('XGROUP', 'CREATE', key, GROUP, '0', 'MKSTREAM')
    end
    redis.call('SADD', names, m)
  end
  local eid = redis.call('XADD', key, '*', 'id', id, 'sender', sender, 'payload', payload)
  redis.call('HSET', ids, id, eid)
  sent[#sent + 1] = eid
  add(sent_by, sent_order, m, id)
end
local acked, acked_by, acked_order = {}, {}, {}
for i = 0, na - 1 do
  local m, id = ack(i)
  local key, eid = stream(m), redis.call('HGET', ids, id)
  if entry(key, eid, id) then
    redis.call('XACK', key, GROUP, eid)
    redis.call('XDEL', key, eid)
    redis.call('HDEL', ids, id)
    redis.call('HDEL', attempts, id)
    redis.call('HINCRBY', reads, m, 1)
    acked[#acked + 1] = id
    add(acked_by, acked_order, m, id)
  end
end
for i = 0, nt - 1 do
  local id, n = ARGV[t0 + 2 * i + 1], tonumber(ARGV[t0 + 2 * i + 2])
  if redis.call('HEXISTS', ids, id) == 1
    and n > (tonumber(redis.call('HGET', attempts, id)) or 0) then
    redis.call('HSET', attempts, id, n)
  end
end
announce('sent', sent_by, sent_order)
announce('acked', acked_by, acked_order)
return {sent, acked}
"#;

/// Up to `ARGV[5]` unread entries of mailbox `ARGV[3]` from the `XRANGE` start `ARGV[4]`.
const LOAD: &str = r#"
local key = stream(ARGV[3])
if kind(key) ~= 'stream' then return {} end
return deliver(key, redis.call('XRANGE', key, ARGV[4], '+', 'COUNT', ARGV[5]))
"#;

/// The unread entries of mailbox `ARGV[3]` among the message ids `ARGV[4..]`.
const LOAD_IDS: &str = r#"
local key = stream(ARGV[3])
if kind(key) ~= 'stream' then return {} end
local found, seen = {}, {}
for i = 4, #ARGV do
  local e = not seen[ARGV[i]] and entry(key, redis.call('HGET', ids, ARGV[i]), ARGV[i])
  seen[ARGV[i]] = true
  if e then found[#found + 1] = e end
end
return deliver(key, found)
"#;

/// Moves the entries `ARGV[4..]` of mailbox `ARGV[3]` to its dead-letter stream; returns how
/// many it moved.
const BURY: &str = r#"
local m = ARGV[3]
local key, dead, buried = stream(m), P .. ':mbdead:' .. m, 0
for i = 4, #ARGV do
  local e = valid_id(ARGV[i]) and redis.call('XRANGE', key, ARGV[i], ARGV[i])[1]
  if e then
    redis.call('XADD', dead, '*', 'entry', e[1], 'fields', cjson.encode(e[2]))
    redis.call('XACK', key, GROUP, e[1])
    redis.call('XDEL', key, e[1])
    local id = field(e[2], 'id')
    if id and redis.call('HGET', ids, id) == e[1] then
      redis.call('HDEL', ids, id)
      redis.call('HDEL', attempts, id)
    end
    redis.call('HINCRBY', reads, m, 1)
    buried = buried + 1
  end
end
return buried
"#;

/// Takes the lease of mailbox `ARGV[3]` for `ARGV[4]` ms if it is free or already this
/// daemon's, then moves every pending entry of the mailbox to this daemon's consumer.
const ACQUIRE: &str = r#"
local m = ARGV[3]
local l = lease(m)
if not redis.call('SET', l, me, 'NX', 'PX', ARGV[4]) then
  if redis.call('GET', l) ~= me then return 0 end
  redis.call('PEXPIRE', l, ARGV[4])
end
local key = stream(m)
if kind(key) == 'stream' then
  ensure_group(key)
  local cursor = '0-0'
  repeat
    cursor = redis.call('XAUTOCLAIM', key, GROUP, me, 0, cursor, 'COUNT', 1000, 'JUSTID')[1]
  until cursor == '0-0'
end
return 1
"#;

/// Extends this daemon's lease of mailbox `ARGV[3]` to `ARGV[4]` ms from now.
const RENEW: &str = r#"
local l = lease(ARGV[3])
if redis.call('GET', l) ~= me then return 0 end
redis.call('PEXPIRE', l, ARGV[4])
return 1
"#;

/// Gives up this daemon's lease of mailbox `ARGV[3]` and announces it.
const RELEASE: &str = r#"
local l = lease(ARGV[3])
if redis.call('GET', l) == me then
  redis.call('DEL', l)
  redis.call('PUBLISH', feed, 'released\n' .. ARGV[3])
end
return 0
"#;

/// {mailbox, unread, read, first entry id or nil} of mailbox `ARGV[3]`, or of every mailbox.
const COUNTS: &str = r#"
local list = ARGV[3] and {ARGV[3]} or redis.call('SMEMBERS', names)
local out = {}
for _, m in ipairs(list) do
  local key, unread, first = stream(m), 0, false
  if kind(key) == 'stream' then
    unread = redis.call('XLEN', key)
    local e = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1]
    if e then first = e[1] end
  end
  local read = tonumber(redis.call('HGET', reads, m)) or 0
  if unread + read > 0 then out[#out + 1] = {m, unread, read, first} end
end
return out
"#;

/// A script: the prelude, then `body`.
fn script(body: &str) -> Script {
    Script::new(&format!("local GROUP = '{GROUP}'\n{PRELUDE}\n{body}"))
}

static COMMIT_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(COMMIT));
static LOAD_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(LOAD));
static LOAD_IDS_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(LOAD_IDS));
static BURY_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(BURY));
static ACQUIRE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(ACQUIRE));
static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(RENEW));
static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(RELEASE));
static COUNTS_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(COUNTS));

/// A stream entry as the load scripts return it: entry id, fields and values, attempts.
type Entry = (String, Vec<Vec<u8>>, i64);

/// Why a stream entry is not a message.
#[derive(Debug, Error)]
enum EntryError {
    #[error("entry id {0} is not a seq (ms below 2^43, n below 2^20)")]
    Seq(String),
    #[error("field {0} is missing")]
    Missing(&'static str),
    #[error("field {0} is not UTF-8")]
    Text(&'static str),
    #[error("id: {0}")]
    Id(#[from] uuid::Error),
    #[error("payload: {0}")]
    Payload(#[from] serde_json::Error),
}

/// The mailbox service's store, journal and change feed on one Redis server.
#[derive(Clone)]
pub struct RedisMailboxes {
    conn: ConnectionManager,
    /// Opens the feed's own pub/sub connection.
    client: redis::Client,
    prefix: String,
    /// This daemon's id: the holder named in the leases it takes, its consumer in the groups.
    daemon: String,
}

impl RedisMailboxes {
    pub fn new(
        conn: ConnectionManager,
        client: redis::Client,
        prefix: String,
        daemon: String,
    ) -> Self {
        RedisMailboxes {
            conn,
            client,
            prefix,
            daemon,
        }
    }

    /// An invocation of `script` with the prefix and the daemon id as its first arguments.
    fn call(&self, script: &'static Script) -> ScriptInvocation<'static> {
        let mut call = script.prepare_invoke();
        call.arg(&self.prefix).arg(&self.daemon);
        call
    }

    async fn run<T: FromRedisValue>(&self, call: &ScriptInvocation<'_>) -> Result<T, StoreError> {
        call.invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)
    }

    /// Runs a lease script for `mailbox` and `lease`; true when it took or kept the lease.
    async fn lease(
        &self,
        script: &'static Script,
        mailbox: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut call = self.call(script);
        call.arg(mailbox).arg(ms);
        Ok(self.run::<i64>(&call).await? == 1)
    }

    /// Runs a load of `mailbox` until every entry it returns decodes: those that do not are
    /// reported and dead-lettered, so the next run no longer returns them and a page stays full.
    async fn load(
        &self,
        mailbox: &str,
        call: ScriptInvocation<'_>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        loop {
            let entries: Vec<Entry> = self.run(&call).await?;
            let (mut good, bad) = split(mailbox, &entries);
            good.sort_by_key(|m| m.seq);
            if bad.is_empty() {
                return Ok(good);
            }
            let buried = self.bury(mailbox, &bad).await?;
            let stream = format!("{}:mb:{mailbox}", self.prefix);
            for (entry, error) in &bad {
                report(&stream, entry, error, "dead-lettered");
            }
            if buried == 0 {
                return Ok(good);
            }
        }
    }

    /// Moves the entries `bad` of `mailbox` to its dead-letter stream; how many it moved.
    async fn bury(&self, mailbox: &str, bad: &[(&str, EntryError)]) -> Result<i64, StoreError> {
        let mut call = self.call(&BURY_SCRIPT);
        call.arg(mailbox);
        for (entry, _) in bad {
            call.arg(*entry);
        }
        self.run(&call).await
    }
}

impl RedisMailboxes {
    /// The change feed: the notifications on `P:mbfeed`, received by a task of the current
    /// runtime on a pub/sub connection of its own, which it opens again with backoff when it
    /// fails and then reports [`MailboxChange::Missed`]. The task ends with the receiver.
    pub fn feed(&self) -> Feed<MailboxChange> {
        let (changes, feed) = mpsc::unbounded_channel();
        let channel = format!("{}:mbfeed", self.prefix);
        tokio::spawn(follow(self.client.clone(), channel, changes));
        feed
    }
}

/// Where the feed's changes go.
type Changes = mpsc::UnboundedSender<MailboxChange>;

/// How the feed's connection ended.
enum Ended {
    /// The receiver is gone.
    Closed,
    /// The connection failed, after subscribing or before.
    Lost { subscribed: bool, error: String },
}

/// Follows `channel` until the receiver of `changes` is gone.
async fn follow(client: redis::Client, channel: String, changes: Changes) {
    let mut failures = 0u32;
    loop {
        let ended = tokio::select! {
            () = changes.closed() => Ended::Closed,
            ended = listen(&client, &channel, &changes, failures > 0) => ended,
        };
        let Ended::Lost { subscribed, error } = ended else {
            return;
        };
        failures = if subscribed { 1 } else { failures + 1 };
        let delay = retry_delay(failures);
        warn!(
            channel,
            error,
            retry_in_ms = delay.as_millis() as u64,
            "mailbox feed connection lost"
        );
        tokio::select! {
            () = changes.closed() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Subscribes to `channel` (reporting `missed` changes once subscribed) and forwards its
/// notifications until the connection or the receiver goes away.
async fn listen(client: &redis::Client, channel: &str, changes: &Changes, missed: bool) -> Ended {
    let lost = |subscribed, error: &dyn std::fmt::Display| Ended::Lost {
        subscribed,
        error: error.to_string(),
    };
    let mut pubsub = match subscribe(client, channel).await {
        Ok(pubsub) => pubsub,
        Err(e) => return lost(false, &e),
    };
    if missed && changes.send(MailboxChange::Missed).is_err() {
        return Ended::Closed;
    }
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        let sent = change(msg.get_payload_bytes()).map(|c| changes.send(c));
        if matches!(sent, Some(Err(_))) {
            return Ended::Closed;
        }
    }
    lost(true, &"the connection closed")
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> Result<redis::aio::PubSub, RedisError> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// A notification as a change: `sent`, `acked` or `released`, the mailbox, then the ids.
/// A notification of the feed channel (the text form of `ikigai_actors::store::changes`).
fn change(payload: &[u8]) -> Option<MailboxChange> {
    let Ok(text) = std::str::from_utf8(payload) else {
        warn!("mailbox notification is not UTF-8");
        return None;
    };
    ikigai_actors::store::changes::mailbox(text)
}

#[async_trait]
impl MailboxJournal for RedisMailboxes {
    async fn commit(&self, batch: MailboxBatch) -> Result<MailboxCommitted, StoreError> {
        commit_on(&mut self.conn.clone(), &self.prefix, &self.daemon, &batch).await
    }
}

/// Applies `batch` on `conn`: one script, so one round trip once Redis has the script.
async fn commit_on(
    conn: &mut impl ConnectionLike,
    prefix: &str,
    daemon: &str,
    batch: &MailboxBatch,
) -> Result<MailboxCommitted, StoreError> {
    if batch.is_empty() {
        return Ok(MailboxCommitted::default());
    }
    let mut call = COMMIT_SCRIPT.prepare_invoke();
    call.arg(prefix).arg(daemon);
    call.arg(batch.sends.len())
        .arg(batch.acks.len())
        .arg(batch.attempts.len());
    for m in &batch.sends {
        let payload = serde_json::to_string(&*m.payload)
            .map_err(|e| StoreError::Rejected(format!("payload of {}: {e}", m.id)))?;
        call.arg(&m.mailbox)
            .arg(m.id.to_string())
            .arg(&m.sender)
            .arg(payload);
    }
    for a in &batch.acks {
        call.arg(&a.mailbox).arg(a.id.to_string());
    }
    for w in &batch.attempts {
        call.arg(w.id.to_string()).arg(w.attempts);
    }
    let (sent, acked): (Vec<String>, Vec<String>) =
        call.invoke_async(conn).await.map_err(store_error)?;
    Ok(MailboxCommitted {
        sent: committed(&batch.sends, &sent)?,
        acked: acked.iter().filter_map(|id| id.parse().ok()).collect(),
    })
}

/// The stored form of `sends`, committed as the entries `entries` (in the same order).
fn committed(sends: &[NewMessage], entries: &[String]) -> Result<Vec<StoredMessage>, StoreError> {
    if sends.len() != entries.len() {
        let got = entries.len();
        return Err(StoreError::Rejected(format!(
            "{} sends committed as {got} entries",
            sends.len()
        )));
    }
    sends
        .iter()
        .zip(entries)
        .map(|(m, entry)| {
            let (seq, created_at) =
                seq_of(entry).map_err(|e| StoreError::Undecodable(e.to_string()))?;
            Ok(m.stored(seq, created_at))
        })
        .collect()
}

#[async_trait]
impl MailboxStore for RedisMailboxes {
    async fn load_unread(
        &self,
        mailbox: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut call = self.call(&LOAD_SCRIPT);
        call.arg(mailbox).arg(after(after_seq)).arg(limit);
        self.load(mailbox, call).await
    }

    async fn load_ids(
        &self,
        mailbox: &str,
        ids: &[Uuid],
    ) -> Result<Vec<StoredMessage>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = self.call(&LOAD_IDS_SCRIPT);
        call.arg(mailbox);
        for id in ids {
            call.arg(id.to_string());
        }
        self.load(mailbox, call).await
    }

    async fn acquire(&self, mailbox: &str, lease: Duration) -> Result<bool, StoreError> {
        self.lease(&ACQUIRE_SCRIPT, mailbox, lease).await
    }

    async fn renew(&self, mailbox: &str, lease: Duration) -> Result<bool, StoreError> {
        self.lease(&RENEW_SCRIPT, mailbox, lease).await
    }

    async fn release(&self, mailbox: &str) -> Result<(), StoreError> {
        let mut call = self.call(&RELEASE_SCRIPT);
        call.arg(mailbox);
        self.run::<i64>(&call).await.map(drop)
    }

    async fn counts(&self, mailbox: Option<&str>) -> Result<Vec<MailboxCounts>, StoreError> {
        let mut call = self.call(&COUNTS_SCRIPT);
        if let Some(mailbox) = mailbox {
            call.arg(mailbox);
        }
        let rows: Vec<(String, u64, u64, Option<String>)> = self.run(&call).await?;
        let mut counts: Vec<MailboxCounts> = rows
            .into_iter()
            .map(|(mailbox, unread, read, first)| MailboxCounts {
                mailbox,
                unread,
                read,
                oldest_unread: first.and_then(|e| seq_of(&e).ok()).map(|(_, at)| at),
            })
            .collect();
        counts.sort_by(|a, b| a.mailbox.cmp(&b.mailbox));
        Ok(counts)
    }
}

/// Splits `entries` of `mailbox` into the messages they hold and the entry ids of those that
/// do not decode, with why.
fn split<'a>(
    mailbox: &str,
    entries: &'a [Entry],
) -> (Vec<StoredMessage>, Vec<(&'a str, EntryError)>) {
    let mut good = Vec::with_capacity(entries.len());
    let mut bad = Vec::new();
    for entry in entries {
        match decode(mailbox, entry) {
            Ok(m) => good.push(m),
            Err(e) => bad.push((entry.0.as_str(), e)),
        }
    }
    (good, bad)
}

fn decode(mailbox: &str, (entry, fields, attempts): &Entry) -> Result<StoredMessage, EntryError> {
    let (seq, created_at) = seq_of(entry)?;
    let text = |name: &'static str| {
        let value = field(fields, name).ok_or(EntryError::Missing(name))?;
        std::str::from_utf8(value).map_err(|_| EntryError::Text(name))
    };
    Ok(StoredMessage {
        id: text("id")?.parse()?,
        seq,
        mailbox: mailbox.to_owned(),
        sender: text("sender")?.to_owned(),
        payload: Arc::new(serde_json::from_str(text("payload")?)?),
        created_at,
        attempts: u32::try_from((*attempts).max(0)).unwrap_or(u32::MAX),
    })
}

/// The value of `name` among an entry's fields and values.
fn field<'a>(fields: &'a [Vec<u8>], name: &str) -> Option<&'a [u8]> {
    fields.chunks_exact(2).find_map(|kv| match kv {
        [k, v] if k == name.as_bytes() => Some(v.as_slice()),
        _ => None,
    })
}

/// The `seq` and the time of the stream entry id `entry` (`ms-n`): `ms << 20 | n`.
fn seq_of(entry: &str) -> Result<(i64, DateTime<Utc>), EntryError> {
    let bad = || EntryError::Seq(entry.to_owned());
    let (ms, n) = entry.split_once('-').ok_or_else(bad)?;
    let ms: i64 = ms.parse().map_err(|_| bad())?;
    let n: i64 = n.parse().map_err(|_| bad())?;
    if !(0..1 << (63 - SEQ_BITS)).contains(&ms) || !(0..1 << SEQ_BITS).contains(&n) {
        return Err(bad());
    }
    let at = DateTime::from_timestamp_millis(ms).ok_or_else(bad)?;
    Ok((ms << SEQ_BITS | n, at))
}

/// The `XRANGE` start just after `seq`: the entry id it packs, exclusive.
fn after(seq: i64) -> String {
    if seq <= 0 {
        return "-".to_owned();
    }
    format!("({}-{}", seq >> SEQ_BITS, seq & ((1 << SEQ_BITS) - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ikigai_actors::store::{AckWrite, AttemptsWrite};
    use redis::aio::MultiplexedConnection;
    use redis::{Cmd, Pipeline, RedisFuture, Value};
    use serde_json::json;
    use std::collections::HashSet;

    type Outcome = Result<(), Box<dyn std::error::Error>>;

    /// A prefix of its own on the local Redis; its keys are deleted when it is dropped.
    struct Scratch {
        client: redis::Client,
        prefix: String,
    }

    impl Scratch {
        fn new() -> Result<Self, RedisError> {
            Ok(Scratch {
                client: redis::Client::open("redis://127.0.0.1:6379")?,
                prefix: format!("test-mailbox-{}", Uuid::new_v4().simple()),
            })
        }

        async fn daemon(&self, daemon: &str) -> Result<RedisMailboxes, RedisError> {
            let conn = ConnectionManager::new(self.client.clone()).await?;
            let (client, prefix) = (self.client.clone(), self.prefix.clone());
            Ok(RedisMailboxes::new(conn, client, prefix, daemon.into()))
        }

        async fn conn(&self) -> Result<MultiplexedConnection, RedisError> {
            self.client.get_multiplexed_async_connection().await
        }

        fn stream(&self, mailbox: &str) -> String {
            format!("{}:mb:{mailbox}", self.prefix)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let Ok(mut conn) = self.client.get_connection() else {
                return;
            };
            let pattern = format!("{}:*", self.prefix);
            if let Ok(keys) = redis::cmd("KEYS")
                .arg(pattern)
                .query::<Vec<String>>(&mut conn)
            {
                if !keys.is_empty() {
                    let _ = redis::cmd("DEL").arg(keys).query::<i64>(&mut conn);
                }
            }
        }
    }

    fn message(mailbox: &str, n: usize) -> NewMessage {
        NewMessage::new(mailbox.into(), "alice".into(), json!({ "n": n }))
    }

    async fn send(
        mb: &RedisMailboxes,
        mailbox: &str,
        count: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let sends = (0..count).map(|n| message(mailbox, n)).collect();
        let batch = MailboxBatch {
            sends,
            ..MailboxBatch::default()
        };
        Ok(mb.commit(batch).await?.sent)
    }

    async fn ack(
        mb: &RedisMailboxes,
        mailbox: &str,
        ids: &[Uuid],
    ) -> Result<HashSet<Uuid>, StoreError> {
        let acks = ids.iter().map(|&id| AckWrite {
            id,
            mailbox: mailbox.into(),
            reader: "bob".into(),
            attempts: 1,
        });
        let batch = MailboxBatch {
            acks: acks.collect(),
            ..MailboxBatch::default()
        };
        Ok(mb.commit(batch).await?.acked)
    }

    async fn attempts(mb: &RedisMailboxes, id: Uuid, attempts: u32) -> Result<(), StoreError> {
        let batch = MailboxBatch {
            attempts: vec![AttemptsWrite { id, attempts }],
            ..MailboxBatch::default()
        };
        mb.commit(batch).await.map(drop)
    }

    fn ids(messages: &[StoredMessage]) -> Vec<Uuid> {
        messages.iter().map(|m| m.id).collect()
    }

    /// How many entries of `stream` the consumer `daemon` holds.
    async fn pending(scratch: &Scratch, stream: &str, daemon: &str) -> Result<usize, RedisError> {
        let held: Vec<Value> = redis::cmd("XPENDING")
            .arg(stream)
            .arg(GROUP)
            .arg("-")
            .arg("+")
            .arg(10_000)
            .arg(daemon)
            .query_async(&mut scratch.conn().await?)
            .await?;
        Ok(held.len())
    }

    #[test]
    fn seqs_keep_the_order_of_entry_ids() -> Outcome {
        let entries = ["0-1", "1-0", "1-1", "1-1048575", "2-0", "1733568000000-7"];
        let seqs: Vec<i64> = entries
            .iter()
            .map(|e| seq_of(e).map(|(seq, _)| seq))
            .collect::<Result<_, _>>()?;
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(after(seqs[5]), "(1733568000000-7");
        assert_eq!(after(0), "-");
        let (_, at) = seq_of("1733568000000-7")?;
        assert_eq!(at.timestamp_millis(), 1_733_568_000_000);
        for beyond in ["1-1048576", "8796093022208-0", "x-1", "12"] {
            assert!(seq_of(beyond).is_err(), "{beyond}");
        }
        Ok(())
    }

    #[test]
    fn notifications_become_changes() {
        let id = Uuid::now_v7();
        let sent = MailboxChange::Sent {
            mailbox: "box".into(),
            ids: Some(vec![id]),
        };
        assert_eq!(change(format!("sent\nbox\n{id}").as_bytes()), Some(sent));
        let acked = MailboxChange::Acked {
            mailbox: "box".into(),
            ids: vec![id],
        };
        assert_eq!(change(format!("acked\nbox\n{id}").as_bytes()), Some(acked));
        let released = MailboxChange::Released {
            mailbox: "box".into(),
        };
        assert_eq!(change(b"released\nbox"), Some(released));
        assert_eq!(change(b"acked\nbox\nnot-a-uuid"), None);
        assert_eq!(change(b"renamed\nbox"), None);
        assert_eq!(change(b"\xff\xfe"), None);
    }

    #[tokio::test]
    async fn sends_load_in_fifo_order_and_acks_remove_them() -> Outcome {
        let scratch = Scratch::new()?;
        let mb = scratch.daemon("d1").await?;
        let mut sent = send(&mb, "box", 3).await?;
        sent.extend(send(&mb, "box", 2).await?);
        assert!(sent.windows(2).all(|w| w[0].seq < w[1].seq));
        let loaded = mb.load_unread("box", 0, 100).await?;
        assert_eq!(loaded, sent);
        assert!((Utc::now() - loaded[0].created_at).num_seconds().abs() < 5);
        let acked = ack(&mb, "box", &ids(&sent[..2])).await?;
        assert_eq!(acked, ids(&sent[..2]).into_iter().collect());
        assert_eq!(mb.load_unread("box", 0, 100).await?, sent[2..]);
        Ok(())
    }

    #[tokio::test]
    async fn an_ack_is_reported_only_when_it_changed_the_message() -> Outcome {
        let scratch = Scratch::new()?;
        let mb = scratch.daemon("d1").await?;
        let sent = send(&mb, "box", 1).await?;
        assert!(ack(&mb, "other", &ids(&sent)).await?.is_empty());
        assert!(ack(&mb, "box", &[Uuid::now_v7()]).await?.is_empty());
        assert_eq!(ack(&mb, "box", &ids(&sent)).await?.len(), 1);
        assert!(ack(&mb, "box", &ids(&sent)).await?.is_empty());
        assert!(mb.load_unread("box", 0, 10).await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn attempts_are_recorded_and_loaded() -> Outcome {
        let scratch = Scratch::new()?;
        let mb = scratch.daemon("d1").await?;
        let sent = send(&mb, "box", 2).await?;
        attempts(&mb, sent[0].id, 3).await?;
        attempts(&mb, sent[0].id, 2).await?;
        let loaded = mb.load_unread("box", 0, 10).await?;
        let counted: Vec<u32> = loaded.iter().map(|m| m.attempts).collect();
        assert_eq!(counted, [3, 0]);
        ack(&mb, "box", &[sent[0].id]).await?;
        attempts(&mb, sent[0].id, 5).await?;
        let kept: bool = redis::cmd("HEXISTS")
            .arg(format!("{}:mbattempts", scratch.prefix))
            .arg(sent[0].id.to_string())
            .query_async(&mut scratch.conn().await?)
            .await?;
        assert!(!kept, "an acked message keeps no attempt count");
        Ok(())
    }

    #[tokio::test]
    async fn load_ids_returns_the_unread_among_them_in_order() -> Outcome {
        let scratch = Scratch::new()?;
        let mb = scratch.daemon("d1").await?;
        let sent = send(&mb, "box", 3).await?;
        let asked = [sent[2].id, sent[0].id, Uuid::now_v7(), sent[0].id];
        let found = mb.load_ids("box", &asked).await?;
        assert_eq!(found, [sent[0].clone(), sent[2].clone()]);
        assert!(mb.load_ids("other", &asked).await?.is_empty());
        ack(&mb, "box", &[sent[0].id]).await?;
        assert_eq!(ids(&mb.load_ids("box", &asked).await?), [sent[2].id]);
        Ok(())
    }

    #[tokio::test]
    async fn load_unread_pages_after_a_seq() -> Outcome {
        let scratch = Scratch::new()?;
        let mb = scratch.daemon("d1").await?;
        let sent = send(&mb, "box", 5).await?;
        let first = mb.load_unread("box", 0, 2).await?;
        let second = mb.load_unread("box", first[1].seq, 2).await?;
        let rest = mb.load_unread("box", second[1].seq, 10).await?;
        assert_eq!([first, second, rest].concat(), sent);
        assert!(mb.load_unread("box", sent[4].seq, 10).await?.is_empty());
        assert!(mb.load_unread("box", 0, 0).await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn counts_per_mailbox_and_of_all() -> Outcome {
        let scratch = Scratch::new()?;
        let mb = scratch.daemon("d1").await?;
        let a = send(&mb, "a", 3).await?;
        send(&mb, "b", 1).await?;
        ack(&mb, "a", &[a[0].id]).await?;
        let counted = mb.counts(Some("a")).await?;
        let expected = MailboxCounts {
            mailbox: "a".into(),
            unread: 2,
            read: 1,
            oldest_unread: Some(a[1].created_at),
        };
        assert_eq!(counted, [expected]);
        let all = mb.counts(None).await?;
        let names: Vec<&str> = all.iter().map(|c| c.mailbox.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(mb.counts(Some("never")).await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn one_daemon_holds_a_lease_at_a_time() -> Outcome {
        let scratch = Scratch::new()?;
        let (a, b) = (scratch.daemon("d1").await?, scratch.daemon("d2").await?);
        let long = Duration::from_secs(10);
        assert!(a.acquire("box", long).await?);
        assert!(!b.acquire("box", long).await?);
        assert!(!b.renew("box", long).await?);
        assert!(a.renew("box", long).await?);
        assert!(a.acquire("box", long).await?, "the holder takes it again");
        b.release("box").await?;
        assert!(!b.acquire("box", long).await?, "only the holder releases");
        a.release("box").await?;
        assert!(b.acquire("box", Duration::from_millis(100)).await?);
        assert!(!a.acquire("box", long).await?);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(a.acquire("box", long).await?, "an expired lease is free");
        assert!(!b.renew("box", long).await?);
        Ok(())
    }

    #[tokio::test]
    async fn taking_the_lease_takes_over_what_the_previous_holder_held() -> Outcome {
        let scratch = Scratch::new()?;
        let (a, b) = (scratch.daemon("d1").await?, scratch.daemon("d2").await?);
        let stream = scratch.stream("box");
        let sent = send(&a, "box", 3).await?;
        assert!(a.acquire("box", Duration::from_millis(100)).await?);
        assert_eq!(a.load_unread("box", 0, 10).await?, sent);
        assert_eq!(pending(&scratch, &stream, "d1").await?, 3);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(b.acquire("box", Duration::from_secs(10)).await?);
        assert_eq!(pending(&scratch, &stream, "d1").await?, 0);
        assert_eq!(pending(&scratch, &stream, "d2").await?, 3);
        assert_eq!(b.load_unread("box", 0, 10).await?, sent);
        ack(&b, "box", &ids(&sent)).await?;
        assert_eq!(pending(&scratch, &stream, "d2").await?, 0);
        Ok(())
    }

    /// The feed's next change, within 5 s.
    async fn next(feed: &mut Feed<MailboxChange>) -> Result<MailboxChange, &'static str> {
        let wait = tokio::time::timeout(Duration::from_secs(5), feed.recv());
        wait.await.ok().flatten().ok_or("no change arrived")
    }

    /// Waits until a feed listens on the scratch prefix's channel.
    async fn subscribed(scratch: &Scratch) -> Result<(), RedisError> {
        let channel = format!("{}:mbfeed", scratch.prefix);
        let mut conn = scratch.conn().await?;
        let mut numsub = redis::cmd("PUBSUB");
        numsub.arg("NUMSUB").arg(&channel);
        while numsub.query_async::<(String, i64)>(&mut conn).await?.1 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// A Redis user of a test's own (whose connections it can kill), deleted when dropped.
    struct User {
        client: redis::Client,
        name: String,
    }

    impl User {
        async fn create(scratch: &Scratch) -> Result<Self, RedisError> {
            let name = format!("{}-user", scratch.prefix);
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg(&name)
                .arg(&["on", "nopass", "~*", "&*", "+@all"])
                .query_async::<()>(&mut scratch.conn().await?)
                .await?;
            let client = scratch.client.clone();
            Ok(User { client, name })
        }
    }

    impl Drop for User {
        fn drop(&mut self) {
            if let Ok(mut conn) = self.client.get_connection() {
                let deleted = redis::cmd("ACL")
                    .arg("DELUSER")
                    .arg(&self.name)
                    .query(&mut conn);
                let _: Result<i64, _> = deleted;
            }
        }
    }

    #[tokio::test]
    async fn a_lost_feed_connection_comes_back_and_reports_missed() -> Outcome {
        let scratch = Scratch::new()?;
        let user = User::create(&scratch).await?;
        let client = redis::Client::open(format!("redis://{}:x@127.0.0.1:6379", user.name))?;
        let conn = ConnectionManager::new(client.clone()).await?;
        let b = RedisMailboxes::new(conn, client, scratch.prefix.clone(), "d2".into());
        let mut feed = b.feed();
        subscribed(&scratch).await?;
        redis::cmd("CLIENT")
            .arg(&["KILL", "USER", user.name.as_str()])
            .query_async::<i64>(&mut scratch.conn().await?)
            .await?;
        assert_eq!(next(&mut feed).await?, MailboxChange::Missed);
        subscribed(&scratch).await?;
        let theirs = send(&scratch.daemon("d1").await?, "box", 1).await?;
        let sent = MailboxChange::Sent {
            mailbox: "box".into(),
            ids: Some(ids(&theirs)),
        };
        assert_eq!(next(&mut feed).await?, sent);
        Ok(())
    }

    #[tokio::test]
    async fn the_feed_reports_what_others_wrote_and_nothing_missed() -> Outcome {
        let scratch = Scratch::new()?;
        let (a, b) = (scratch.daemon("d1").await?, scratch.daemon("d2").await?);
        let mut feed = b.feed();
        subscribed(&scratch).await?;
        let theirs = send(&a, "box", 1).await?;
        let sent = MailboxChange::Sent {
            mailbox: "box".into(),
            ids: Some(ids(&theirs)),
        };
        assert_eq!(next(&mut feed).await?, sent);
        assert!(b.acquire("held", Duration::from_secs(10)).await?);
        send(&b, "held", 1).await?; // b serves "held" itself: not announced
        let theirs = send(&a, "held", 1).await?;
        let sent = MailboxChange::Sent {
            mailbox: "held".into(),
            ids: Some(ids(&theirs)),
        };
        assert_eq!(next(&mut feed).await?, sent);
        ack(&a, "held", &ids(&theirs)).await?;
        let acked = MailboxChange::Acked {
            mailbox: "held".into(),
            ids: ids(&theirs),
        };
        assert_eq!(next(&mut feed).await?, acked);
        b.release("held").await?;
        let released = MailboxChange::Released {
            mailbox: "held".into(),
        };
        assert_eq!(next(&mut feed).await?, released);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(feed.try_recv().is_err(), "nothing else, no Missed");
        Ok(())
    }

    #[tokio::test]
    async fn entries_that_do_not_decode_are_dead_lettered() -> Outcome {
        let scratch = Scratch::new()?;
        let mb = scratch.daemon("d1").await?;
        let (stream, mut conn) = (scratch.stream("box"), scratch.conn().await?);
        let xadd = |id: &str, fields: &[(&str, String)]| {
            let mut cmd = redis::cmd("XADD");
            cmd.arg(&stream).arg(id);
            for (k, v) in fields {
                cmd.arg(*k).arg(v);
            }
            cmd
        };
        let (id, junk) = (Uuid::now_v7().to_string(), "1".to_owned());
        let bad_payload = [
            ("id", id),
            ("sender", junk.clone()),
            ("payload", "{no".into()),
        ];
        xadd("*", &[("junk", junk)])
            .query_async::<String>(&mut conn)
            .await?;
        xadd("*", &bad_payload)
            .query_async::<String>(&mut conn)
            .await?;
        let sent = send(&mb, "box", 1).await?;
        let good = ("payload", "{}".to_owned());
        let fields = [
            ("id", Uuid::now_v7().to_string()),
            ("sender", "x".into()),
            good,
        ];
        xadd("9999999999999-1", &fields)
            .query_async::<String>(&mut conn)
            .await?;
        let beyond = send(&mb, "box", 1).await;
        let no_seq = matches!(&beyond, Err(StoreError::Rejected(e)) if e.contains("no seq left"));
        assert!(no_seq, "{beyond:?}");
        assert_eq!(mb.load_unread("box", 0, 10).await?, sent);
        assert_eq!(mb.load_unread("box", 0, 10).await?, sent);
        let dead = format!("{}:mbdead:box", scratch.prefix);
        let len = |key: &str| redis::cmd("XLEN").arg(key).clone();
        assert_eq!(len(&stream).query_async::<i64>(&mut conn).await?, 1);
        assert_eq!(len(&dead).query_async::<i64>(&mut conn).await?, 3);
        assert_eq!(mb.counts(Some("box")).await?[0].read, 3);
        Ok(())
    }

    #[tokio::test]
    async fn a_group_that_cannot_apply_whole_writes_nothing() -> Outcome {
        let scratch = Scratch::new()?;
        let mb = scratch.daemon("d1").await?;
        let mut conn = scratch.conn().await?;
        let reads = format!("{}:mbread", scratch.prefix);
        redis::cmd("SET")
            .arg(&reads)
            .arg("x")
            .query_async::<()>(&mut conn)
            .await?;
        let refused = send(&mb, "box", 2).await;
        assert!(
            matches!(refused, Err(StoreError::Rejected(_))),
            "{refused:?}"
        );
        assert!(mb.load_unread("box", 0, 10).await?.is_empty());
        Ok(())
    }

    /// A connection that counts its round trips.
    struct Counting {
        inner: MultiplexedConnection,
        trips: usize,
    }

    impl ConnectionLike for Counting {
        fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
            self.trips += 1;
            self.inner.req_packed_command(cmd)
        }

        fn req_packed_commands<'a>(
            &'a mut self,
            cmd: &'a Pipeline,
            offset: usize,
            count: usize,
        ) -> RedisFuture<'a, Vec<Value>> {
            self.trips += 1;
            self.inner.req_packed_commands(cmd, offset, count)
        }

        fn get_db(&self) -> i64 {
            self.inner.get_db()
        }
    }

    #[tokio::test]
    async fn a_group_of_a_thousand_sends_is_one_round_trip() -> Outcome {
        let scratch = Scratch::new()?;
        let mut conn = Counting {
            inner: scratch.conn().await?,
            trips: 0,
        };
        COMMIT_SCRIPT.prepare_invoke().load_async(&mut conn).await?;
        conn.trips = 0;
        let sends: Vec<NewMessage> = (0..1000).map(|n| message("box", n)).collect();
        let batch = MailboxBatch {
            sends: sends.clone(),
            ..MailboxBatch::default()
        };
        let committed = commit_on(&mut conn, &scratch.prefix, "d1", &batch).await?;
        assert_eq!(conn.trips, 1);
        let sent = committed.sent;
        assert_eq!(ids(&sent), sends.iter().map(|m| m.id).collect::<Vec<_>>());
        assert!(sent.windows(2).all(|w| w[0].seq < w[1].seq));
        let mb = scratch.daemon("d1").await?;
        assert_eq!(mb.load_unread("box", 0, 2000).await?, sent);
        Ok(())
    }
}

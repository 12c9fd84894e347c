//! `mailbox.send`, `mailbox.receive`, `mailbox.ack`, `mailbox.peek` and `mailbox.stats`.
//!
//! The mailbox named like an agent belongs to that agent: only its owner receives and acks
//! (admin may also peek and read stats); any authenticated session may send.

use super::tx::parse;
use super::{ask, check_max, check_ms, check_name, check_wait, gone, parked};
use crate::actions;
use crate::error::Error;
use crate::services::Services;
use crate::session::Session;
use chrono::SecondsFormat;
use ikigai_actors::mailbox::{Ack, MailboxError, Peek, Receive, Stats};
use ikigai_actors::store::{AckWrite, MailboxBatch, MailboxCommitted};
use ikigai_actors::StoredMessage;
use ikigai_protocol::Json;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// Most ids one `mailbox.ack` may carry.
const MAX_ACK_IDS: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendArgs {
    mailbox: String,
    payload: Json,
    tx: Option<String>,
}

#[derive(Serialize)]
pub struct Sent {
    id: String,
}

pub async fn send(args: SendArgs, s: &Services, session: &Session) -> Result<Sent, Error> {
    let msg = actions::new_message(&session.agent, args.mailbox, args.payload.0)?;
    let stored = match args.tx {
        None => actions::send(s, msg).await?,
        Some(tx) => {
            let batch = MailboxBatch {
                sends: vec![msg],
                ..MailboxBatch::default()
            };
            let stored = |done: &MailboxCommitted| done.sent.first().cloned().ok_or_else(gone);
            session.txs.mailbox(s, parse(&tx)?, batch, stored).await?
        }
    };
    Ok(Sent {
        id: stored.id.to_string(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiveArgs {
    mailbox: String,
    max: Option<usize>,
    wait_ms: Option<u64>,
    visibility_ms: Option<u64>,
}

#[derive(Serialize)]
pub struct Messages {
    messages: Vec<WireMessage>,
}

pub async fn receive(
    args: ReceiveArgs,
    s: &Services,
    session: &Session,
) -> Result<Messages, Error> {
    check_owner(&args.mailbox, session, "receive from")?;
    let limits = &s.config.mailboxes;
    let max = check_max(args.max, limits.max_receive)?;
    let wait = check_wait(args.wait_ms, limits.max_wait)?;
    let visibility = match args.visibility_ms {
        Some(ms) => check_ms("visibility_ms", ms, 1, Duration::MAX)?,
        None => limits.visibility,
    };
    session.received_from(&args.mailbox);
    let addr = s.mailboxes.get(&args.mailbox);
    let rx = ask(addr, |reply| Receive {
        session: session.id,
        max,
        visibility,
        wait: !wait.is_zero(),
        reply,
    })
    .await?;
    let received = parked(rx, Some(wait), s, session)
        .await
        .ok_or_else(|| MailboxError::Restarted(args.mailbox.clone()))??;
    Ok(Messages {
        messages: received.iter().map(WireMessage::from).collect(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckArgs {
    mailbox: String,
    ids: Vec<String>,
    tx: Option<String>,
}

#[derive(Serialize)]
pub struct Acked {
    acked: u64,
}

pub async fn ack(args: AckArgs, s: &Services, session: &Session) -> Result<Acked, Error> {
    check_owner(&args.mailbox, session, "acknowledge in")?;
    if args.ids.len() > MAX_ACK_IDS {
        return Err(Error::BadRequest(format!(
            "at most {MAX_ACK_IDS} ids per ack"
        )));
    }
    let ids = args
        .ids
        .iter()
        .map(|id| {
            Uuid::parse_str(id).map_err(|_| Error::BadRequest(format!("{id:?} is not a UUID")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Ok(Acked { acked: 0 });
    }
    if let Some(tx) = &args.tx {
        let acks = ids
            .iter()
            .map(|&id| AckWrite {
                id,
                mailbox: args.mailbox.clone(),
                reader: session.agent.clone(),
                attempts: 0,
            })
            .collect();
        let batch = MailboxBatch {
            acks,
            ..MailboxBatch::default()
        };
        let acked = |done: &MailboxCommitted| {
            let acked = done.acked.len() as u64;
            Ok(Acked { acked })
        };
        return session.txs.mailbox(s, parse(tx)?, batch, acked).await;
    }
    let rx = ask(s.mailboxes.get(&args.mailbox), |reply| Ack {
        reader: session.agent.clone(),
        ids,
        reply,
    })
    .await?;
    let acked = rx
        .await
        .map_err(|_| MailboxError::Restarted(args.mailbox.clone()))??;
    Ok(Acked { acked })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeekArgs {
    mailbox: String,
    limit: Option<usize>,
}

pub async fn peek(args: PeekArgs, s: &Services, session: &Session) -> Result<Messages, Error> {
    if session.is_admin() {
        check_name("mailbox", &args.mailbox)?;
    } else {
        check_owner(&args.mailbox, session, "peek into")?;
    }
    let limit = args.limit.unwrap_or(10).min(s.config.mailboxes.max_receive);
    let served_here = match s.mailboxes.running(&args.mailbox) {
        Some(addr) => addr.send(Peek { limit }).await.map_err(|_| gone())?.ok(),
        None => None,
    };
    let msgs = match served_here {
        Some(msgs) => msgs,
        None => s.mailbox_store.load_unread(&args.mailbox, 0, limit).await?,
    };
    Ok(Messages {
        messages: msgs.iter().map(WireMessage::from).collect(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsArgs {
    mailbox: Option<String>,
}

#[derive(Serialize)]
pub struct MailboxStats {
    mailboxes: Vec<MailboxRow>,
}

#[derive(Serialize)]
struct MailboxRow {
    mailbox: String,
    unread: u64,
    read: u64,
    oldest_unread_at: Option<String>,
    ready: usize,
    in_flight: usize,
    waiting: usize,
}

pub async fn stats(
    args: StatsArgs,
    s: &Services,
    session: &Session,
) -> Result<MailboxStats, Error> {
    let mailbox = match (args.mailbox, session.is_admin()) {
        (m, true) => m,
        (Some(m), false) => {
            check_owner(&m, session, "read the stats of")?;
            Some(m)
        }
        (None, false) => Some(session.agent.clone()),
    };
    let counts = s.mailbox_store.counts(mailbox.as_deref()).await?;
    let mut rows = Vec::with_capacity(counts.len());
    for c in counts {
        let live = match s.mailboxes.running(&c.mailbox) {
            Some(addr) => addr.send(Stats).await.unwrap_or_default(),
            None => Default::default(),
        };
        rows.push(MailboxRow {
            mailbox: c.mailbox,
            unread: c.unread,
            read: c.read,
            oldest_unread_at: c
                .oldest_unread
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true)),
            ready: live.ready,
            in_flight: live.in_flight,
            waiting: live.waiting,
        });
    }
    Ok(MailboxStats { mailboxes: rows })
}

/// A message as it travels: UUID and timestamp as strings.
#[derive(Serialize)]
struct WireMessage {
    id: String,
    mailbox: String,
    sender: String,
    payload: std::sync::Arc<serde_json::Value>,
    created_at: String,
    attempts: u32,
}

impl From<&StoredMessage> for WireMessage {
    fn from(m: &StoredMessage) -> Self {
        WireMessage {
            id: m.id.to_string(),
            mailbox: m.mailbox.clone(),
            sender: m.sender.clone(),
            payload: m.payload.clone(),
            created_at: m.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            attempts: m.attempts,
        }
    }
}

fn check_owner(mailbox: &str, session: &Session, what: &str) -> Result<(), Error> {
    check_name("mailbox", mailbox)?;
    if mailbox != session.agent {
        return Err(Error::PermissionDenied(format!(
            "mailbox {mailbox:?} belongs to agent {mailbox:?}; {:?} may not {what} it",
            session.agent
        )));
    }
    Ok(())
}

//! The memory and context ops (protocol section 18) on the LLM service: which thread an op
//! names (the default thread when none), changes to a thread's context through its actor, reads
//! of its history with each message's state, full-text search, and `context.summarize`.

use super::assets::Assets;
use super::context::{exchanges, Entry, State};
use super::prompt::Ctx;
use super::summary::Summarized;
use super::thread::{Change, Changed};
use super::{Llm, LlmError};
use crate::postgres::context as store;
use crate::services::Services;
use crate::session::Session;
use chrono::Utc;
use std::time::Duration;
use uuid::Uuid;

/// What `context.summarize` covers.
pub enum Range {
    /// Exchanges that ended longer ago than this.
    OlderThan(Duration),
    /// Exchanges that end before this message.
    Before(u32),
}

impl Llm {
    pub fn assets(&self) -> &Assets {
        &self.assets
    }

    /// The thread an op names: an id (checked by the thread's actor), `"default"` or none (the
    /// agent's default thread, created on first use).
    pub async fn thread_of(&self, agent: &str, thread: Option<&str>) -> Result<Uuid, LlmError> {
        match thread {
            None | Some("default") => self.default_thread(agent).await,
            Some(id) => Uuid::parse_str(id)
                .map_err(|_| LlmError::BadRequest(format!("{id:?} is not a thread id"))),
        }
    }

    async fn default_thread(&self, agent: &str) -> Result<Uuid, LlmError> {
        if let Some(id) = self.defaults.borrow().get(agent) {
            return Ok(*id);
        }
        let id = store::default_thread(&self.pool, agent).await?;
        self.defaults.borrow_mut().insert(agent.to_owned(), id);
        Ok(id)
    }

    pub async fn edit(
        &self,
        agent: &str,
        thread: Uuid,
        change: Change,
    ) -> Result<Changed, LlmError> {
        self.threads.edit(thread, agent, change).await
    }

    /// The `limit` messages before `before` (default: the newest), oldest first, with their
    /// states.
    pub async fn history(
        &self,
        agent: &str,
        thread: Uuid,
        before: Option<u32>,
        limit: u32,
    ) -> Result<Vec<(Entry, State)>, LlmError> {
        let look = self.threads.look(thread, agent).await?;
        let before = before.unwrap_or(look.next_seq);
        let page = store::page(&self.pool, thread, before, limit).await?;
        let state = |e: &Entry| look.filter.state(e.seq, e.exchange, e.erased);
        Ok(page
            .into_iter()
            .map(|e| (state(&e), e))
            .map(|(s, e)| (e, s))
            .collect())
    }

    /// Full-text search over the agent's history, best first.
    pub async fn search(
        &self,
        agent: &str,
        thread: Option<Uuid>,
        text: &str,
        limit: u32,
    ) -> Result<Vec<(Uuid, Entry)>, LlmError> {
        Ok(store::search(&self.pool, agent, thread, text, limit).await?)
    }

    /// `context.summarize`: the in-context exchanges of `range`, with the summary in force,
    /// become one summary written by `[llm] summary_model` (else the caller's default model).
    pub async fn summarize(
        &self,
        s: &Services,
        session: &Session,
        thread: Uuid,
        range: Range,
    ) -> Result<Summarized, LlmError> {
        let agent = &session.agent;
        let look = self.threads.look(thread, agent).await?;
        let from = look.filter.covers;
        let (mut entries, cut) = match range {
            Range::OlderThan(age) => {
                let since = Utc::now() - chrono::Duration::from_std(age).unwrap_or_default();
                let found = store::first_after(&self.pool, thread, from, since).await?;
                let cut = found.unwrap_or(look.next_seq);
                (store::range(&self.pool, thread, from, cut).await?, cut)
            }
            Range::Before(seq) => self.ended_before(thread, from, seq, look.next_seq).await?,
        };
        entries.retain(|e| look.filter.keeps(e));
        if entries.is_empty() {
            return Ok(Summarized::default());
        }
        let model = self.default_model(agent).await?;
        let p = self.summary_prompt(model, thread);
        let plan = self.plan(&p, agent).await?;
        let ctx = Ctx {
            p: &p,
            plan: &plan,
            s,
            session,
            events: None,
            thread: Some(thread),
        };
        self.summarize_entries(&ctx, thread, look.summary, &entries, cut)
            .await
    }

    /// The history from `from` of the exchanges that end before message `seq`, and where they
    /// end.
    async fn ended_before(
        &self,
        thread: Uuid,
        from: u32,
        seq: u32,
        next_seq: u32,
    ) -> Result<(Vec<Entry>, u32), LlmError> {
        if seq >= next_seq {
            return Ok((
                store::range(&self.pool, thread, from, next_seq).await?,
                next_seq,
            ));
        }
        let mut entries = store::range(&self.pool, thread, from, seq + 1).await?;
        let last = exchanges(&entries).pop();
        let cut = match last {
            Some(r) => {
                let cut = entries[r.start].seq;
                entries.truncate(r.start);
                cut
            }
            None => from,
        };
        Ok((entries, cut))
    }
}

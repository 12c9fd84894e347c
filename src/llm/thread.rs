//! Threads: conversations whose history the daemon keeps. A thread is loaded from Postgres on
//! its first use in this daemon's life (so it survives restarts) and kept in memory; its prompts
//! run one at a time (`turn`), and each turn appends the request and everything the model and
//! the tools said, in one statement, so a tool call is never stored without its result.

use super::provider::{Message, Role};
use super::LlmError;
use crate::postgres;
use deadpool_postgres::Pool;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

/// One thread in memory.
pub struct Thread {
    pub id: Uuid,
    context: Option<String>,
    history: RefCell<Vec<Message>>,
    turn: Mutex<()>,
}

impl Thread {
    /// Waits for the thread's previous prompt to finish; hold the guard for the whole turn.
    pub async fn turn(&self) -> MutexGuard<'_, ()> {
        self.turn.lock().await
    }

    /// What the model sees before the new messages: the context, then the stored history.
    pub fn conversation(&self) -> Vec<Message> {
        let context = self.context.iter().map(|c| Message {
            role: Role::System,
            content: c.clone(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            is_error: false,
        });
        context
            .chain(self.history.borrow().iter().cloned())
            .collect()
    }

    /// Appends one turn's messages, durably, then in memory.
    pub async fn append(&self, pool: &Pool, messages: &[Message]) -> Result<(), LlmError> {
        let from = self.history.borrow().len();
        let values: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| serde_json::to_value(m).unwrap_or_default())
            .collect();
        postgres::llm::append_thread(pool, self.id, from, &values).await?;
        self.history.borrow_mut().extend_from_slice(messages);
        Ok(())
    }
}

/// The threads this daemon has touched.
pub struct Threads {
    pool: Pool,
    open: RefCell<HashMap<Uuid, (String, Rc<Thread>)>>,
}

impl Threads {
    pub fn new(pool: Pool) -> Threads {
        Threads {
            pool,
            open: RefCell::default(),
        }
    }

    pub async fn create(&self, agent: &str, context: Option<String>) -> Result<Uuid, LlmError> {
        let id = Uuid::new_v4();
        postgres::llm::create_thread(&self.pool, id, agent, context.as_deref()).await?;
        let thread = Thread {
            id,
            context,
            history: RefCell::default(),
            turn: Mutex::new(()),
        };
        let entry = (agent.to_owned(), Rc::new(thread));
        self.open.borrow_mut().insert(id, entry);
        Ok(id)
    }

    /// The thread `id` of `agent`, replayed from Postgres if this daemon has not seen it yet.
    pub async fn open(&self, id: Uuid, agent: &str) -> Result<Rc<Thread>, LlmError> {
        let known = self.open.borrow().get(&id).cloned();
        let (owner, thread) = match known {
            Some(entry) => entry,
            None => self.load(id).await?,
        };
        if owner != agent {
            return Err(LlmError::NotFound(format!("no thread {id}")));
        }
        Ok(thread)
    }

    async fn load(&self, id: Uuid) -> Result<(String, Rc<Thread>), LlmError> {
        let Some((owner, context, rows)) = postgres::llm::load_thread(&self.pool, id).await? else {
            return Err(LlmError::NotFound(format!("no thread {id}")));
        };
        let history = rows
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<Vec<Message>, _>>()
            .map_err(|e| LlmError::Internal(format!("thread {id} history: {e}")))?;
        let thread = Rc::new(Thread {
            id,
            context,
            history: RefCell::new(history),
            turn: Mutex::new(()),
        });
        let mut open = self.open.borrow_mut();
        let entry = open.entry(id).or_insert((owner, thread));
        Ok(entry.clone())
    }
}

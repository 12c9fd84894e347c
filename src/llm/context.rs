//! The context of a thread as a view over its history (protocol section 18). History is
//! append-only; what is out of the context (rewound ranges, excluded exchanges, the part a
//! summary replaces) is metadata, replayed from `llm_context_event` as [`Event`]s. A [`View`]
//! holds that metadata and the newest in-context entries (the tail), bounded by the window, so
//! that an idle thread of any length costs the same memory and a turn costs the same time.
//! Everything here is plain data: the thread actor owns a `View` and persists what changes it.

use super::provider::Message;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use uuid::Uuid;

/// One stored message of a thread.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its position in the history, from 0 (the message id of `conversation.*`).
    pub seq: u32,
    /// The exchange (prompt) that stored it; `None` for messages stored before exchanges existed.
    pub exchange: Option<Uuid>,
    pub message: Arc<Message>,
    /// The window's estimate of its size.
    pub tokens: u32,
    /// Its size as OpenAI's tokenizer counts it, once counted: the view counts its tail when a
    /// snapshot is taken and the tokenizer is built ([`View::count_with`]).
    pub bpe: Option<u32>,
    pub at: DateTime<Utc>,
    pub erased: bool,
}

/// The window's token estimate of a message: one token per three bytes of its JSON (and its
/// separator), the unit `max_tokens_per_request` counts in.
pub fn tokens(m: &Message) -> u32 {
    let bytes = serde_json::to_vec(m).map_or(0, |v| v.len());
    (bytes as u32 + 1).div_ceil(3)
}

impl Entry {
    /// A new entry of a history: `message` at `seq` in `exchange`, stored now.
    pub fn new(seq: u32, exchange: Option<Uuid>, message: Message) -> Entry {
        Entry {
            seq,
            exchange,
            tokens: tokens(&message),
            bpe: None,
            message: Arc::new(message),
            at: Utc::now(),
            erased: false,
        }
    }
}

/// Whether `b` starts a new exchange after `a`.
pub fn new_exchange(a: &Entry, b: &Entry) -> bool {
    match (a.exchange, b.exchange) {
        (None, None) => {
            b.message.role == super::provider::Role::User && a.message.role != b.message.role
        }
        (x, y) => x != y,
    }
}

/// A summary in force: messages before `covers` are replaced by `text`.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub n: i64,
    pub covers: u32,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Mark {
    pub id: Uuid,
    pub label: String,
    pub position: u32,
    /// The summary in force when the mark was made.
    pub summary: Option<i64>,
}

/// A change to the view, as stored (`n` is its row in `llm_context_event`).
#[derive(Debug, Clone)]
pub enum Event {
    Mark(Mark),
    /// Messages `from..until` leave the context; `summary` is in force after it.
    Rewind {
        from: u32,
        until: u32,
        summary: Option<Summary>,
    },
    Exclude(Uuid),
    /// The message's content was erased; `message` is what remains.
    Delete {
        seq: u32,
        message: Arc<Message>,
    },
    Summary(Summary),
}

/// Why a message is or is not in the context (`conversation.list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Context,
    Summarized,
    Rewound,
    Excluded,
    Deleted,
}

/// What is out of the context; a copy answers `conversation.list` and range reads.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Merged, sorted ranges `from..until`.
    rewound: Vec<(u32, u32)>,
    excluded: HashSet<Uuid>,
    /// Messages before this are replaced by the summary.
    pub covers: u32,
}

impl Filter {
    pub fn state(&self, seq: u32, exchange: Option<Uuid>, erased: bool) -> State {
        if erased {
            State::Deleted
        } else if exchange.is_some_and(|x| self.excluded.contains(&x)) {
            State::Excluded
        } else if self.is_rewound(seq) {
            State::Rewound
        } else if seq < self.covers {
            State::Summarized
        } else {
            State::Context
        }
    }

    /// In the view (a deleted message keeps its place, erased).
    pub fn keeps(&self, e: &Entry) -> bool {
        matches!(self.state(e.seq, e.exchange, false), State::Context)
    }

    fn is_rewound(&self, seq: u32) -> bool {
        let i = self.rewound.partition_point(|r| r.1 <= seq);
        self.rewound.get(i).is_some_and(|r| r.0 <= seq)
    }

    fn rewind(&mut self, from: u32, until: u32) {
        if from >= until {
            return;
        }
        self.rewound.push((from, until));
        self.rewound.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(self.rewound.len());
        for r in self.rewound.drain(..) {
            match merged.last_mut() {
                Some(last) if r.0 <= last.1 => last.1 = last.1.max(r.1),
                _ => merged.push(r),
            }
        }
        self.rewound = merged;
    }
}

/// The thread's context: metadata plus the newest in-context entries.
#[derive(Debug, Default)]
pub struct View {
    /// The history's length (the next message's seq).
    pub next_seq: u32,
    pub filter: Filter,
    pub summary: Option<Summary>,
    pub marks: Vec<Mark>,
    /// In-context entries, oldest first; at most `keep` tokens of whole exchanges.
    tail: VecDeque<Entry>,
    tail_tokens: u64,
    /// Older in-context entries exist that the tail does not hold.
    pub evicted: bool,
    /// Tokens of entries the tail keeps.
    pub keep: u64,
}

impl View {
    /// An empty view of a history of `next_seq` messages, keeping `keep` tokens in memory.
    pub fn new(next_seq: u32, keep: u64) -> View {
        View {
            next_seq,
            keep,
            ..View::default()
        }
    }

    pub fn tail(&self) -> impl DoubleEndedIterator<Item = &Entry> + ExactSizeIterator {
        self.tail.iter()
    }

    /// Replaces the tail by `entries` (in-context, oldest first, as read from storage);
    /// `evicted`: whether older in-context entries were left out.
    pub fn set_tail(&mut self, entries: Vec<Entry>, evicted: bool) {
        self.tail_tokens = entries.iter().map(|e| u64::from(e.tokens)).sum();
        self.tail = entries.into();
        self.evicted = evicted;
    }

    /// Counts the tail's entries with `bpe` where they are not counted yet.
    pub fn count_with(&mut self, bpe: &tiktoken_rs::CoreBPE) {
        for e in self.tail.iter_mut().filter(|e| e.bpe.is_none()) {
            e.bpe = Some(super::tokenizer::count(bpe, &e.message));
        }
    }

    /// Appends one exchange's messages, then drops the oldest exchanges beyond `keep`.
    pub fn append(&mut self, entries: Vec<Entry>) {
        for e in entries {
            self.next_seq = self.next_seq.max(e.seq + 1);
            self.tail_tokens += u64::from(e.tokens);
            self.tail.push_back(e);
        }
        self.trim();
    }

    fn trim(&mut self) {
        while self.tail_tokens > self.keep && self.tail.len() > 1 {
            let exchange = self.oldest_exchange_len();
            if exchange == self.tail.len() {
                return;
            }
            for e in self.tail.drain(..exchange) {
                self.tail_tokens -= u64::from(e.tokens);
            }
            self.evicted = true;
        }
    }

    fn oldest_exchange_len(&self) -> usize {
        let mut n = 1;
        while n < self.tail.len() && !new_exchange(&self.tail[n - 1], &self.tail[n]) {
            n += 1;
        }
        n
    }

    /// Applies a stored change. Returns whether the tail lost entries that storage could
    /// replace with older ones (then the caller reloads the tail).
    pub fn apply(&mut self, event: Event) -> bool {
        let before = self.tail.len();
        match event {
            Event::Mark(mark) => self.marks.push(mark),
            Event::Rewind {
                from,
                until,
                summary,
            } => {
                self.filter.rewind(from, until);
                self.set_summary(summary);
            }
            Event::Exclude(exchange) => {
                self.filter.excluded.insert(exchange);
            }
            Event::Delete { seq, message } => {
                if let Some(e) = self.tail.iter_mut().find(|e| e.seq == seq) {
                    self.tail_tokens -= u64::from(e.tokens);
                    e.tokens = tokens(&message);
                    e.bpe = None;
                    e.message = message;
                    e.erased = true;
                    self.tail_tokens += u64::from(e.tokens);
                }
            }
            Event::Summary(summary) => self.set_summary(Some(summary)),
        }
        let filter = &self.filter;
        let mut dropped = 0;
        self.tail.retain(|e| {
            let keep = filter.keeps(e);
            dropped += u64::from(!keep) * u64::from(e.tokens);
            keep
        });
        self.tail_tokens -= dropped;
        self.evicted && self.tail.len() < before
    }

    fn set_summary(&mut self, summary: Option<Summary>) {
        self.filter.covers = summary.as_ref().map_or(0, |s| s.covers);
        self.summary = summary;
    }

    /// The mark with this id, or the newest with this label.
    pub fn mark(&self, id_or_label: &str) -> Option<&Mark> {
        let id = Uuid::parse_str(id_or_label).ok();
        self.marks
            .iter()
            .rev()
            .find(|m| Some(m.id) == id || m.label == id_or_label)
    }

    /// The summary in force after a rewind to `mark`: the current one if it covers nothing
    /// after the mark, else the one in force at the mark.
    pub fn summary_after_rewind(&self, mark: &Mark) -> Option<i64> {
        match &self.summary {
            Some(s) if s.covers <= mark.position => Some(s.n),
            _ => mark.summary,
        }
    }

    /// The newest `n` exchanges of the tail, newest first.
    pub fn previous_exchanges(&self, n: usize) -> Vec<Uuid> {
        let mut seen = Vec::new();
        for e in self.tail.iter().rev() {
            if let Some(x) = e.exchange.filter(|x| !seen.contains(x)) {
                if seen.len() == n {
                    break;
                }
                seen.push(x);
            }
        }
        seen
    }

    /// Whether the tail holds messages of `exchange`, and how many.
    pub fn exchange_len(&self, exchange: Uuid) -> usize {
        self.tail
            .iter()
            .filter(|e| e.exchange == Some(exchange))
            .count()
    }
}

/// The exchanges of `entries` (oldest first), as ranges of indices.
pub fn exchanges(entries: &[Entry]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=entries.len() {
        if i == entries.len() || new_exchange(&entries[i - 1], &entries[i]) {
            if start < i {
                out.push(start..i);
            }
            start = i;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::provider::{Role, ToolCall};

    fn msg(role: Role, content: &str) -> Message {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            is_error: false,
        }
    }

    /// An exchange of a user message, a tool call, its result and an answer.
    fn exchange(seq: u32) -> Vec<Entry> {
        let x = Some(Uuid::new_v4());
        let mut call = msg(Role::Assistant, "");
        call.tool_calls.push(ToolCall {
            id: format!("c{seq}"),
            name: "t".into(),
            arguments: serde_json::json!({}),
        });
        let messages = [
            msg(Role::User, "question"),
            call,
            Message::tool_result(&format!("c{seq}"), "result".into(), false),
            msg(Role::Assistant, "answer"),
        ];
        messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| Entry::new(seq + i as u32, x, m))
            .collect()
    }

    #[test]
    fn the_tail_keeps_whole_exchanges_within_keep() {
        let each: u64 = exchange(0).iter().map(|e| u64::from(e.tokens)).sum();
        let mut view = View::new(0, each * 5 / 2);
        for i in 0..10 {
            view.append(exchange(i * 4));
        }
        assert!(view.evicted);
        assert_eq!(view.tail().len(), 8, "the two newest whole exchanges");
        assert_eq!(view.next_seq, 40);
        assert_eq!(view.tail().next().unwrap().message.role, Role::User);
    }

    #[test]
    fn a_rewind_takes_out_what_followed_the_mark_and_restores_its_summary() {
        let mut view = View {
            keep: u64::MAX,
            ..View::default()
        };
        view.append(exchange(0));
        view.apply(Event::Summary(Summary {
            n: 1,
            covers: 4,
            text: "s1".into(),
        }));
        let mark = Mark {
            id: Uuid::new_v4(),
            label: "m".into(),
            position: 4,
            summary: Some(1),
        };
        view.apply(Event::Mark(mark.clone()));
        view.append(exchange(4));
        view.append(exchange(8));
        assert_eq!(view.tail().len(), 8);
        assert_eq!(view.summary_after_rewind(&mark), Some(1));
        view.apply(Event::Rewind {
            from: 4,
            until: 12,
            summary: view.summary.clone(),
        });
        assert_eq!(view.tail().len(), 0);
        assert_eq!(view.filter.state(5, None, false), State::Rewound);
        assert_eq!(view.filter.state(1, None, false), State::Summarized);
        assert_eq!(view.filter.state(12, None, false), State::Context);
        assert_eq!(view.mark("m").unwrap().id, mark.id);
        assert_eq!(view.mark(&mark.id.to_string()).unwrap().label, "m");
    }

    #[test]
    fn a_later_summary_past_the_mark_gives_way_to_the_marks_own() {
        let mut view = View::default();
        let mark = Mark {
            id: Uuid::new_v4(),
            label: "m".into(),
            position: 4,
            summary: None,
        };
        view.apply(Event::Mark(mark.clone()));
        view.apply(Event::Summary(Summary {
            n: 2,
            covers: 8,
            text: "s".into(),
        }));
        assert_eq!(view.summary_after_rewind(&mark), None);
    }

    #[test]
    fn exclusion_and_deletion_keep_exchanges_whole() {
        let mut view = View {
            keep: u64::MAX,
            ..View::default()
        };
        let first = exchange(0);
        let id = first[0].exchange.unwrap();
        view.append(first);
        view.append(exchange(4));
        assert_eq!(view.previous_exchanges(1).len(), 1);
        assert_ne!(view.previous_exchanges(1)[0], id);
        view.apply(Event::Exclude(id));
        assert_eq!(view.tail().len(), 4);
        assert_eq!(view.filter.state(0, Some(id), false), State::Excluded);
        let erased = Arc::new(msg(Role::User, "[deleted]"));
        view.apply(Event::Delete {
            seq: 4,
            message: erased,
        });
        assert_eq!(view.tail().len(), 4);
        assert!(view.tail().next().unwrap().erased);
    }

    #[test]
    fn rewound_ranges_merge() {
        let mut f = Filter::default();
        f.rewind(10, 20);
        f.rewind(15, 30);
        f.rewind(40, 41);
        assert_eq!(f.rewound, vec![(10, 30), (40, 41)]);
        assert!(f.is_rewound(29) && !f.is_rewound(30) && f.is_rewound(40));
    }

    #[test]
    fn exchanges_split_where_the_prompt_changes() {
        let mut entries = exchange(0);
        entries.extend(exchange(4));
        assert_eq!(exchanges(&entries), vec![0..4, 4..8]);
    }
}

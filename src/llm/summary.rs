//! Summaries: a model rewrites the oldest exchanges of a thread's context (and the summary
//! before them) as one summary that replaces them in the context, for `context.summarize` and
//! the window's `summarize` strategy. Each summary is a provider call logged and counted like a
//! prompt (`metadata.purpose = "summarize"`). A range too large for the summarising model is
//! done in chunks, oldest first, each stored as it is written; a failed or empty answer stores
//! nothing, so a summary can never wipe the context.

use super::context::{exchanges, Entry, Summary};
use super::prompt::{Ctx, Prompt};
use super::provider::{ChatRequest, Message, Role, Usage};
use super::thread::{Change, Changed};
use super::{Llm, LlmError};
use serde_json::json;
use uuid::Uuid;

const INSTRUCTIONS: &str = "You keep the running summary of a conversation between an agent \
and an assistant, so that the conversation can go on without the messages you summarise. \
Write one summary that replaces the previous summary (if any) and the messages below. Keep \
every fact, decision, name, number, identifier, result, open question and pending task; drop \
greetings and repetition. Use short paragraphs or bullet points. Answer with the summary only.";

/// What summarising did.
#[derive(Default)]
pub struct Summarized {
    /// Messages replaced.
    pub messages: usize,
    pub summary: Option<Summary>,
    /// The last provider call's interaction.
    pub interaction: Option<Uuid>,
    pub usage: Usage,
    pub cost: f64,
}

impl Llm {
    /// Summarises `entries` (in-context, oldest first, whole exchanges) of thread `thread` on
    /// top of `base`; the new summary covers every message before `covers`.
    pub(super) async fn summarize_entries(
        &self,
        ctx: &Ctx<'_>,
        thread: Uuid,
        mut base: Option<Summary>,
        entries: &[Entry],
        covers: u32,
    ) -> Result<Summarized, LlmError> {
        let mut done = Summarized::default();
        let budget = self.summary_budget(ctx);
        let mut start = 0;
        while start < entries.len() {
            let end = chunk_end(entries, start, budget, base.as_ref());
            let chunk_covers = entries.get(end).map_or(covers, |e| e.seq);
            let (text, id, usage, cost) =
                self.write(ctx, base.as_ref(), &entries[start..end]).await?;
            let change = Change::Summary {
                base: base.as_ref().map(|s| s.n),
                covers: chunk_covers,
                text,
                interaction: id,
            };
            let Changed::Summarized(summary) = self
                .threads
                .edit(thread, &ctx.session.agent, change)
                .await?
            else {
                return Err(LlmError::Internal(
                    "a summary edit answered otherwise".into(),
                ));
            };
            done.messages += end - start;
            done.interaction = Some(id);
            done.usage.add(&usage);
            done.cost += cost;
            base = Some(summary.clone());
            done.summary = Some(summary);
            start = end;
        }
        Ok(done)
    }

    /// Estimated tokens a summarising call may send.
    fn summary_budget(&self, ctx: &Ctx<'_>) -> u64 {
        let window = self.config.context_of(&ctx.p.model);
        let mut budget = window.saturating_sub(self.config.summary_max_tokens);
        if let Some(limit) = ctx.plan.perms.max_tokens_per_request {
            budget = budget.min(limit.saturating_sub(self.config.summary_max_tokens));
        }
        budget
    }

    /// One summarising call.
    async fn write(
        &self,
        ctx: &Ctx<'_>,
        base: Option<&Summary>,
        entries: &[Entry],
    ) -> Result<(String, Uuid, Usage, f64), LlmError> {
        let req = ChatRequest {
            model: String::new(),
            messages: request(base, entries),
            tools: Vec::new(),
            max_tokens: self.config.summary_max_tokens,
            temperature: Some(0.0),
        };
        let answer = self.step(ctx, &req).await?;
        let text = answer.response.content.trim().to_owned();
        if text.is_empty() {
            return Err(LlmError::Unavailable(
                "the summarising model answered with an empty summary; nothing was changed".into(),
            ));
        }
        Ok((text, answer.id, answer.response.usage, answer.cost))
    }

    /// The prompt a summary is written under: the summary model, no tools, tagged.
    pub(super) fn summary_prompt(&self, model: String, thread: Uuid) -> Prompt {
        Prompt {
            model: self.config.summary_model.clone().unwrap_or(model),
            messages: Vec::new(),
            thread: Some(thread),
            reject_if_busy: false,
            platform_tools: Vec::new(),
            custom_tools: Vec::new(),
            max_tokens: Some(self.config.summary_max_tokens),
            temperature: Some(0.0),
            metadata: json!({"purpose": "summarize", "thread": thread.to_string()}),
            stream: false,
        }
    }
}

/// Where the chunk starting at `start` ends: whole exchanges while they fit `budget` (at least
/// one exchange).
fn chunk_end(entries: &[Entry], start: usize, budget: u64, base: Option<&Summary>) -> usize {
    let fixed = (INSTRUCTIONS.len() + base.map_or(0, |s| s.text.len())) as u64 / 3 + 64;
    let mut used = fixed;
    let mut end = start;
    for range in exchanges(&entries[start..]) {
        let range = range.start + start..range.end + start;
        let size: u64 = entries[range.clone()]
            .iter()
            .map(|e| transcript_len(e) / 3 + 2)
            .sum();
        if end > start && used + size > budget {
            break;
        }
        used += size;
        end = range.end;
    }
    end
}

fn transcript_len(e: &Entry) -> u64 {
    line(&e.message).len() as u64
}

/// The summarising request: instructions, then the previous summary and the messages as text
/// (tool calls written out, so the request holds no tool call to pair).
fn request(base: Option<&Summary>, entries: &[Entry]) -> Vec<Message> {
    let mut text = String::new();
    if let Some(s) = base {
        text += &format!("<previous_summary>\n{}\n</previous_summary>\n\n", s.text);
    }
    text += "<messages>\n";
    for e in entries {
        text += &line(&e.message);
        text.push('\n');
    }
    text += "</messages>";
    let message = |role, content: String| Message {
        role,
        content,
        tool_calls: Vec::new(),
        tool_call_id: None,
        is_error: false,
    };
    vec![
        message(Role::System, INSTRUCTIONS.to_owned()),
        message(Role::User, text),
    ]
}

/// One message as a transcript line.
fn line(m: &Message) -> String {
    let mut out = match m.role {
        Role::System => format!("[system] {}", m.content),
        Role::User => format!("[user] {}", m.content),
        Role::Assistant => format!("[assistant] {}", m.content),
        Role::Tool => format!(
            "[tool result{}] {}",
            if m.is_error { ", an error" } else { "" },
            m.content
        ),
    };
    for call in &m.tool_calls {
        out += &format!(" [calls {} with {}]", call.name, call.arguments);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::provider::ToolCall;

    #[test]
    fn the_request_writes_tool_calls_out_and_carries_the_previous_summary() {
        let mut call = Message::tool_result("c1", "42".into(), false);
        call.role = Role::Assistant;
        call.content = String::new();
        call.tool_call_id = None;
        call.tool_calls = vec![ToolCall {
            id: "c1".into(),
            name: "lookup".into(),
            arguments: json!({"q": "x"}),
        }];
        let entry = |seq, m: Message| Entry::new(seq, None, m);
        let entries = [
            entry(0, call),
            entry(1, Message::tool_result("c1", "42".into(), false)),
        ];
        let base = Summary {
            n: 1,
            covers: 0,
            text: "earlier".into(),
        };
        let req = request(Some(&base), &entries);
        assert!(req
            .iter()
            .all(|m| m.tool_calls.is_empty() && m.tool_call_id.is_none()));
        let text = &req[1].content;
        assert!(text.contains("<previous_summary>\nearlier"), "{text}");
        assert!(text.contains("[calls lookup with {\"q\":\"x\"}]"), "{text}");
        assert!(text.contains("[tool result] 42"), "{text}");
    }
}

//! `llm.prompt`: check the caller's permissions, reserve its quota, call the alias's targets,
//! run the tools the model asks for (platform tools here, custom tools through the agent) and
//! call again, until the model answers or `max_steps` is reached. Every provider call and every
//! refusal is logged as one interaction.

use super::config::Target;
use super::context::{Entry, Summary};
use super::log::Interaction;
use super::provider::{
    ChatRequest, ChatResponse, Message, Role, StopReason, ToolCall, ToolSpec, Usage,
};
use super::quota::{self, Reserved};
use super::tokenizer::{self, Meter};
use super::window::{self, Strategy, Window};
use super::{tools, Llm, LlmError, RouteError, ToolResult};
use crate::manifest::LlmPermissions;
use crate::services::Services;
use crate::session::Session;
use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Value};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;
use uuid::Uuid;

/// What a prompt tells its agent while it runs, in order; `cmd` turns them into pushes.
pub enum PromptEvent {
    /// Streamed text (only for a prompt with `stream`).
    Delta(String),
    /// A custom tool call the agent answers with `llm.tool_result`.
    ToolCall(ToolCall),
}

pub type Events = mpsc::UnboundedSender<PromptEvent>;

/// One `llm.prompt`, checked for shape (not yet for permission).
pub struct Prompt {
    pub model: String,
    pub messages: Vec<Message>,
    pub thread: Option<Uuid>,
    /// `if_busy: "reject"`: fail with `conflict` instead of waiting for the thread.
    pub reject_if_busy: bool,
    pub platform_tools: Vec<String>,
    pub custom_tools: Vec<ToolSpec>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub metadata: Value,
    pub stream: bool,
}

#[derive(Serialize)]
pub struct PromptReply {
    /// The interaction row of the last provider call.
    id: String,
    content: String,
    tool_calls: Vec<ToolCall>,
    /// Summed over every step.
    usage: Usage,
    cost_usd: f64,
    model: String,
    provider: String,
    provider_model: String,
    stop_reason: StopReason,
    steps: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread: Option<String>,
}

/// What the checks allow for this prompt.
pub(super) struct Plan {
    pub(super) perms: LlmPermissions,
    targets: Vec<Target>,
    tools: Vec<ToolSpec>,
    max_tokens: u64,
}

/// One answered provider call.
pub(super) struct Answer {
    pub(super) id: Uuid,
    pub(super) response: ChatResponse,
    target: Target,
    pub(super) cost: f64,
}

/// A prompt's thread: what its turn started from, as the window trims it and summaries
/// replace its oldest part.
struct OnThread {
    id: Uuid,
    context: Option<String>,
    assets: Option<String>,
    summary: Option<Summary>,
    /// In-context entries, oldest first.
    history: Vec<Entry>,
    window: Window,
}

impl OnThread {
    /// The system part: the thread's context line, the stored assets, the summary.
    fn system(&self) -> Option<Message> {
        let summary = self
            .summary
            .as_ref()
            .map(|s| format!("<summary>\n{}\n</summary>", s.text));
        let parts: Vec<String> = [self.context.clone(), self.assets.clone(), summary]
            .into_iter()
            .flatten()
            .collect();
        (!parts.is_empty()).then(|| Message {
            role: Role::System,
            content: parts.join("\n\n"),
            tool_calls: Vec::new(),
            tool_call_id: None,
            is_error: false,
        })
    }
}

impl Llm {
    pub async fn prompt(
        &self,
        p: Prompt,
        s: &Services,
        session: &Session,
        events: Option<&Events>,
    ) -> Result<PromptReply, LlmError> {
        let agent = &session.agent;
        let plan = match self.plan(&p, agent).await {
            Ok(plan) => plan,
            Err(e) => return Err(self.refuse(&p, agent, e)),
        };
        let turn = match p.thread {
            Some(id) => Some(self.threads.begin(id, agent, p.reject_if_busy).await?),
            None => None,
        };
        let mut on = match (&turn, p.thread) {
            (Some(turn), Some(id)) => {
                let snapshot = turn.snapshot.clone();
                Some(OnThread {
                    id,
                    context: snapshot.context,
                    assets: self.assets.block(agent).await?,
                    summary: snapshot.summary,
                    history: snapshot.entries,
                    window: snapshot.window,
                })
            }
            _ => None,
        };
        let mut conversation = p.messages.clone();
        let ctx = Ctx {
            p: &p,
            plan: &plan,
            s,
            session,
            events,
            thread: p.thread,
        };
        let (answers, stop_reason) = self.run(&ctx, on.as_mut(), &mut conversation).await?;
        if let (Some(turn), Some(last)) = (turn, answers.last()) {
            turn.finish(conversation, last.id).await?;
        }
        Ok(reply(&p, answers, stop_reason))
    }

    /// The tool loop; returns every answer, the last one being the reply.
    async fn run(
        &self,
        ctx: &Ctx<'_>,
        mut on: Option<&mut OnThread>,
        conversation: &mut Vec<Message>,
    ) -> Result<(Vec<Answer>, StopReason), LlmError> {
        let mut answers = Vec::new();
        for step in 1..=self.config.max_steps {
            let messages = match on.as_deref_mut() {
                Some(t) => self.fit(ctx, t, conversation).await?,
                None => conversation.clone(),
            };
            let req = ChatRequest {
                model: String::new(),
                messages,
                tools: ctx.plan.tools.clone(),
                max_tokens: ctx.plan.max_tokens,
                temperature: ctx.p.temperature,
            };
            let answer = self.step(ctx, &req).await?;
            conversation.push(Message::assistant(&answer.response));
            let calls = answer.response.tool_calls.clone();
            let stop = answer.response.stop_reason;
            answers.push(answer);
            if calls.is_empty() {
                return Ok((answers, stop));
            }
            let last = step == self.config.max_steps;
            for call in &calls {
                let (content, is_error) = match last {
                    true => ("not run: the tool loop reached max_steps".to_owned(), true),
                    false => self.use_tool(ctx, call).await?,
                };
                conversation.push(Message::tool_result(&call.id, content, is_error));
            }
        }
        Ok((answers, StopReason::MaxSteps))
    }

    /// The request of the next call on a thread, fitted into its window; with the summarize
    /// strategy, what does not fit is summarised first (on failure, truncated).
    async fn fit(
        &self,
        ctx: &Ctx<'_>,
        t: &mut OnThread,
        current: &[Message],
    ) -> Result<Vec<Message>, LlmError> {
        let budget = self.budget(ctx, t.window);
        let meter = self.meter(ctx);
        let extra = serde_json::to_vec(&ctx.plan.tools).map_or(0, |v| v.len() as u64) / 3;
        let fit = |t: &OnThread| {
            window::fit(
                t.system().as_ref(),
                &t.history,
                current,
                extra,
                budget,
                meter,
            )
        };
        let fitted = fit(t)?;
        if fitted.left_out == 0 || t.window.strategy == Strategy::Truncate {
            return Ok(fitted.messages);
        }
        let room = budget.tokens.saturating_sub(fitted.fixed);
        let cut = window::summary_cut(&t.history, room, meter);
        if cut == 0 {
            return Ok(fitted.messages);
        }
        match self.summarize_in_prompt(ctx, t, cut).await {
            Ok(()) => Ok(fit(t)?.messages),
            Err(e) => {
                warn!(thread = %t.id, error = %e, "summarising the context failed; truncating");
                Ok(fitted.messages)
            }
        }
    }

    /// Summarises what precedes the thread's `cut`th entry for the window, from storage (so
    /// that in-context history the actor no longer holds in memory is summarised too).
    async fn summarize_in_prompt(
        &self,
        ctx: &Ctx<'_>,
        t: &mut OnThread,
        cut: usize,
    ) -> Result<(), LlmError> {
        let seq = t.history[cut].seq;
        let range = super::memory::Range::Before(seq);
        let done = self.summarize(ctx.s, ctx.session, t.id, range).await?;
        t.history.retain(|e| e.seq >= seq);
        t.summary = done.summary.or(t.summary.take());
        Ok(())
    }

    /// What a call may send: the window (the thread's, else the model's size) less
    /// `max_tokens`, and `max_tokens_per_request` less `max_tokens` in the estimate's unit.
    fn budget(&self, ctx: &Ctx<'_>, w: Window) -> window::Budget {
        let size = w
            .tokens
            .map_or_else(|| self.config.context_of(&ctx.p.model), u64::from);
        let max_tokens = ctx.plan.max_tokens;
        let limit = ctx.plan.perms.max_tokens_per_request;
        window::Budget {
            tokens: size.saturating_sub(max_tokens),
            estimate: limit.map_or(u64::MAX, |l| l.saturating_sub(max_tokens)),
        }
    }

    /// How the first target counts tokens: its own tokenizer, else the estimate scaled by
    /// what it reported before.
    fn meter(&self, ctx: &Ctx<'_>) -> Meter {
        let Some(target) = ctx.plan.targets.first() else {
            return Meter::Estimate(1.0);
        };
        let openai = self
            .config
            .providers
            .get(&target.provider)
            .is_some_and(|p| p.kind == super::provider::Kind::OpenAi);
        let bpe = openai
            .then(|| tokenizer::for_openai_model(&target.model))
            .flatten();
        bpe.map_or_else(
            || Meter::Estimate(self.calibration.ratio(&target.label())),
            Meter::Bpe,
        )
    }

    /// Checks the prompt against the configuration and the agent's manifest.
    pub(super) async fn plan(&self, p: &Prompt, agent: &str) -> Result<Plan, LlmError> {
        let Some(targets) = self.config.models.get(&p.model).cloned() else {
            return Err(self.unknown_model(&p.model));
        };
        let grant = self.grant(agent).await?;
        let Some(perms) = grant.llm else {
            let m = format!("{agent:?} has no permissions.llm in its manifest: no LLM access");
            return Err(LlmError::PermissionDenied(m));
        };
        if !perms.models.contains(&p.model) {
            let m = format!(
                "{agent:?} may not use model {:?} (allowed: {:?})",
                p.model, perms.models
            );
            return Err(LlmError::PermissionDenied(m));
        }
        let mut tools = Vec::new();
        for name in &p.platform_tools {
            let spec = tools::spec(name)
                .ok_or_else(|| LlmError::BadRequest(format!("unknown platform tool {name:?}")))?;
            let allowed = perms.platform_tools.contains(name)
                && (name != "deploy_agent" || grant.deploy_agent);
            if !allowed {
                let m = format!("{agent:?} may not use the platform tool {name:?}");
                return Err(LlmError::PermissionDenied(m));
            }
            tools.push(spec);
        }
        if !p.custom_tools.is_empty() && !perms.allow_custom_tools {
            let m = format!("{agent:?} may not offer custom tools (allow_custom_tools is false)");
            return Err(LlmError::PermissionDenied(m));
        }
        for custom in &p.custom_tools {
            if tools.iter().any(|t| t.name == custom.name) {
                let m = format!("custom tool {:?} has a platform tool's name", custom.name);
                return Err(LlmError::BadRequest(m));
            }
        }
        tools.extend(p.custom_tools.iter().cloned());
        let max_tokens = p.max_tokens.unwrap_or(self.config.default_max_tokens);
        Ok(Plan {
            perms,
            targets,
            tools,
            max_tokens,
        })
    }

    fn unknown_model(&self, alias: &str) -> LlmError {
        if self.config.models.is_empty() {
            return LlmError::NotConfigured(
                "no LLM models are configured: add [llm.provider.*] and [llm.model.*] sections to ikigai.conf".into(),
            );
        }
        let known: Vec<&String> = self.config.models.keys().collect();
        LlmError::BadRequest(format!(
            "unknown model alias {alias:?} (configured: {known:?})"
        ))
    }

    /// One provider call: per-request limit, hourly reservation, routing, logging.
    pub(super) async fn step(&self, ctx: &Ctx<'_>, req: &ChatRequest) -> Result<Answer, LlmError> {
        let (p, agent) = (ctx.p, &ctx.session.agent);
        let estimate = quota::estimate(req);
        let worst = estimate + req.max_tokens;
        if let Some(limit) = ctx.plan.perms.max_tokens_per_request.filter(|l| worst > *l) {
            let m = format!(
                "the request may use {worst} tokens (prompt estimate + max_tokens), more than \
                 max_tokens_per_request ({limit})"
            );
            return Err(self.refuse(p, agent, LlmError::PermissionDenied(m)));
        }
        let limit = ctx.plan.perms.max_tokens_per_hour;
        let reservation = match self.quotas.reserve(agent, worst, limit).await? {
            Reserved::Granted(r) => r,
            Reserved::Refused {
                used,
                held,
                retry_after_ms,
            } => {
                let message = format!(
                    "max_tokens_per_hour: {used} tokens used in the last hour and {held} reserved \
                     by calls in flight; this request may need {worst}"
                );
                let e = LlmError::QuotaExceeded {
                    message,
                    retry_after_ms,
                };
                return Err(self.refuse(p, agent, e));
            }
        };
        let started = Instant::now();
        let streamed = ctx.events.filter(|_| p.stream);
        let push = |d: &str| {
            streamed.iter().for_each(|e| {
                let _ = e.send(PromptEvent::Delta(d.to_owned()));
            })
        };
        let deltas = streamed
            .is_some()
            .then_some(&push as super::provider::Deltas);
        let result = self.router.call(&ctx.plan.targets, req, deltas).await;
        let mut row = self.row(p, agent, Some(request_json(req)), None);
        row.reservation = reservation;
        row.latency_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(mut routed) => {
                match routed.response.usage == Usage::default() {
                    true => routed.response.usage = quota::estimate_usage(req, &routed.response),
                    false => self.calibration.learn(
                        &routed.target.label(),
                        estimate,
                        routed.response.usage.input_tokens,
                    ),
                }
                let cost = routed.target.price.cost(&routed.response.usage);
                row.provider = Some(routed.target.provider.clone());
                row.provider_model = Some(routed.target.model.clone());
                row.response = serde_json::to_value(&routed.response).ok();
                (row.usage, row.cost_usd, row.attempts) =
                    (routed.response.usage, cost, routed.attempts);
                let id = row.id;
                self.log.write(row);
                Ok(Answer {
                    id,
                    response: routed.response,
                    target: routed.target,
                    cost,
                })
            }
            Err(failed) => {
                if let (RouteError::Cut { .. }, Some(t)) = (&failed.error, &failed.target) {
                    // The provider read the prompt before the stream broke: count its estimate.
                    row.usage.input_tokens = estimate;
                    row.cost_usd = t.price.cost(&row.usage);
                }
                row.provider = failed.target.as_ref().map(|t| t.provider.clone());
                row.provider_model = failed.target.map(|t| t.model);
                (row.attempts, row.error) = (failed.attempts, Some(failed.error.to_string()));
                self.log.write(row);
                Err(LlmError::Provider(failed.error))
            }
        }
    }

    /// Runs one tool call; returns what to tell the model.
    async fn use_tool(&self, ctx: &Ctx<'_>, call: &ToolCall) -> Result<(String, bool), LlmError> {
        if ctx.p.platform_tools.contains(&call.name) {
            let args = call.arguments.clone();
            return Ok(
                match tools::run(&call.name, args, ctx.s, ctx.session, ctx.thread).await {
                    Ok(v) => (v.to_string(), false),
                    Err(message) => (message, true),
                },
            );
        }
        if ctx.p.custom_tools.iter().any(|t| t.name == call.name) {
            let r = self.custom_tool(ctx, call).await?;
            return Ok((r.content, r.is_error));
        }
        Ok((format!("there is no tool named {:?}", call.name), true))
    }

    /// Tells the agent of a custom tool call and waits for its `llm.tool_result`.
    async fn custom_tool(&self, ctx: &Ctx<'_>, call: &ToolCall) -> Result<ToolResult, LlmError> {
        let events = ctx.events.ok_or_else(|| {
            LlmError::Internal("this connection cannot receive tool calls".into())
        })?;
        let key = (ctx.session.agent.clone(), call.id.clone());
        let (tx, rx) = oneshot::channel();
        self.waiting.borrow_mut().insert(key.clone(), tx);
        let _ = events.send(PromptEvent::ToolCall(call.clone()));
        let mut closed = ctx.session.closed();
        let timeout = self.config.tool_timeout;
        let result = tokio::select! {
            r = rx => r.ok(),
            _ = tokio::time::sleep(timeout) => None,
            _ = closed.wait() => None,
        };
        self.waiting.borrow_mut().remove(&key);
        result.ok_or_else(|| {
            LlmError::ToolTimeout(format!(
                "no llm.tool_result for tool call {:?} ({}) within {} ms",
                call.id,
                call.name,
                timeout.as_millis()
            ))
        })
    }

    /// Logs a refused prompt (permission or quota) and returns the refusal.
    fn refuse(&self, p: &Prompt, agent: &str, e: LlmError) -> LlmError {
        if matches!(
            e,
            LlmError::PermissionDenied(_) | LlmError::QuotaExceeded { .. }
        ) {
            let request = json!({"messages": p.messages, "max_tokens": p.max_tokens});
            self.log
                .write(self.row(p, agent, Some(request), Some(e.to_string())));
        }
        e
    }

    fn row(
        &self,
        p: &Prompt,
        agent: &str,
        request: Option<Value>,
        error: Option<String>,
    ) -> Interaction {
        Interaction {
            id: Uuid::now_v7(),
            agent: agent.to_owned(),
            thread: p.thread,
            model: p.model.clone(),
            provider: None,
            provider_model: None,
            request: request.unwrap_or(Value::Null),
            response: None,
            usage: Usage::default(),
            cost_usd: 0.0,
            latency_ms: 0,
            attempts: Vec::new(),
            error,
            metadata: p.metadata.clone(),
            created_at: Utc::now(),
            reservation: None,
        }
    }
}

/// What every step of one prompt shares.
#[derive(Clone, Copy)]
pub(super) struct Ctx<'a> {
    pub(super) p: &'a Prompt,
    pub(super) plan: &'a Plan,
    pub(super) s: &'a Services,
    pub(super) session: &'a Session,
    /// Where the agent hears of deltas and custom tool calls (none: it cannot).
    pub(super) events: Option<&'a Events>,
    /// The thread the prompt runs on (for the context tools).
    pub(super) thread: Option<Uuid>,
}

/// The request as logged: the normalised messages and options (never a provider body, which
/// could carry credentials).
fn request_json(req: &ChatRequest) -> Value {
    let tools: Vec<&str> = req.tools.iter().map(|t| t.name.as_str()).collect();
    json!({"messages": req.messages, "tools": tools, "max_tokens": req.max_tokens,
        "temperature": req.temperature})
}

fn reply(p: &Prompt, answers: Vec<Answer>, stop_reason: StopReason) -> PromptReply {
    let mut usage = Usage::default();
    answers.iter().for_each(|a| usage.add(&a.response.usage));
    let cost: f64 = answers.iter().map(|a| a.cost).sum();
    let steps = answers.len();
    let last = answers
        .into_iter()
        .last()
        .expect("the loop answers at least once");
    PromptReply {
        id: last.id.to_string(),
        content: last.response.content,
        tool_calls: last.response.tool_calls,
        usage,
        cost_usd: (cost * 1e6).round() / 1e6,
        model: p.model.clone(),
        provider: last.target.provider,
        provider_model: last.target.model,
        stop_reason,
        steps,
        thread: p.thread.map(|t| t.to_string()),
    }
}

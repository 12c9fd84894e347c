//! `debug.*`: fault injection for chaos tests, admin only and off unless
//! `[debug] fault_injection = true`.

use super::{require_admin, Empty};
use crate::error::Error;
use crate::services::Services;
use crate::session::Session;
use ikigai_actors::mailbox::InjectPanic;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanicArgs {
    mailbox: String,
}

/// Makes the mailbox actor's logic panic; it restarts with its state rebuilt from storage.
pub fn panic_mailbox(args: PanicArgs, s: &Services, session: &Session) -> Result<Empty, Error> {
    allowed(s, session)?;
    super::check_name("mailbox", &args.mailbox)?;
    s.mailboxes.get(&args.mailbox).do_send(InjectPanic);
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanicAgentArgs {
    name: String,
}

/// Makes a running agent actor's logic panic; it restarts, reloads its entry and adopts the
/// agent's process.
pub fn panic_agent(args: PanicAgentArgs, s: &Services, session: &Session) -> Result<Empty, Error> {
    allowed(s, session)?;
    if !s.agents.inject_panic(&args.name) {
        return Err(Error::NotFound(format!(
            "no agent actor {:?} runs",
            args.name
        )));
    }
    Ok(Empty {})
}

fn allowed(s: &Services, session: &Session) -> Result<(), Error> {
    require_admin(session, "inject faults")?;
    if !s.config.fault_injection {
        return Err(Error::PermissionDenied(
            "fault injection is disabled ([debug] fault_injection = false)".into(),
        ));
    }
    Ok(())
}

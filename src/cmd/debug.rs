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
    require_admin(session, "inject faults")?;
    if !s.config.fault_injection {
        return Err(Error::PermissionDenied(
            "fault injection is disabled ([debug] fault_injection = false)".into(),
        ));
    }
    super::check_name("mailbox", &args.mailbox)?;
    s.mailboxes.get(&args.mailbox).do_send(InjectPanic);
    Ok(Empty {})
}

//! `agents.token {name}`: issue (or return) the token of an agent identity. Admin only.

use super::require_admin;
use crate::error::Error;
use crate::identity::{check_agent_name, IdentityError, ADMIN};
use crate::services::Services;
use crate::session::Session;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenArgs {
    name: String,
}

#[derive(Serialize)]
pub struct Token {
    agent: String,
    token: String,
}

pub async fn token(args: TokenArgs, s: &Services, session: &Session) -> Result<Token, Error> {
    require_admin(session, "issue agent tokens")?;
    check_agent_name(&args.name).map_err(Error::BadRequest)?;
    if args.name == ADMIN {
        return Err(Error::BadRequest(
            "admin's token lives in .ikigai/admin.token".into(),
        ));
    }
    let token = s
        .identities
        .token_for(&args.name)
        .await
        .map_err(|e| match e {
            IdentityError::Store(e) => Error::Store(e),
            IdentityError::File(e) => Error::Internal(e.to_string()),
        })?;
    Ok(Token {
        agent: args.name,
        token,
    })
}

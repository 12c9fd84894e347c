//! Agent identities: issuing tokens, proving them in `hello`, and the operator's `admin` token.
//!
//! A token is 32 random bytes in hex. Postgres keeps only its SHA-256 hash; the plain token
//! exists in the environment or files of whoever holds it: `.ikigai/admin.token` for the
//! operator, `.ikigai/tokens/<agent>.token` for identities issued with `ikigai agent token`
//! (both mode 0600), and only the environment of its process for a deployed agent
//! ([`Identities::rotate`]).

use crate::postgres::identity as db;
use crate::root::{write_secret, Root};
use deadpool_postgres::Pool;
use ikigai_actors::store::StoreError;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::Path;

/// The operator identity used by the CLI.
pub const ADMIN: &str = "admin";

/// Issues and checks tokens.
#[derive(Clone)]
pub struct Identities {
    pool: Pool,
    root: Root,
}

/// Why an identity operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    File(#[from] crate::root::RootError),
}

impl Identities {
    pub fn new(pool: Pool, root: Root) -> Self {
        Identities { pool, root }
    }

    /// Makes sure `.ikigai/admin.token` exists and is known to the database.
    pub async fn ensure_admin(&self) -> Result<(), IdentityError> {
        self.file_token(ADMIN, &self.root.admin_token())
            .await
            .map(drop)
    }

    /// The token of `agent` kept under `.ikigai/tokens/`, issued now if absent or revoked.
    pub async fn token_for(&self, agent: &str) -> Result<String, IdentityError> {
        let path = self.root.tokens().join(format!("{agent}.token"));
        self.file_token(agent, &path).await
    }

    /// A fresh token for `agent`, which becomes its only valid one (every earlier token is
    /// revoked). Deployed agents get theirs this way: the plain token is returned to be handed
    /// to the agent's process and is written nowhere.
    pub async fn rotate(&self, agent: &str) -> Result<String, StoreError> {
        let token = generate();
        db::replace_tokens(&self.pool, agent, Some(&hash(&token))).await?;
        Ok(token)
    }

    /// Revokes every token of `agent`.
    pub async fn revoke(&self, agent: &str) -> Result<(), StoreError> {
        db::replace_tokens(&self.pool, agent, None).await
    }

    /// True when `token` proves `agent`.
    pub async fn verify(&self, agent: &str, token: &str) -> Result<bool, StoreError> {
        Ok(db::agent_of(&self.pool, &hash(token)).await?.as_deref() == Some(agent))
    }

    async fn file_token(&self, agent: &str, path: &Path) -> Result<String, IdentityError> {
        if let Ok(existing) = std::fs::read_to_string(path) {
            let existing = existing.trim().to_owned();
            match db::agent_of(&self.pool, &hash(&existing)).await? {
                Some(owner) if owner == agent => return Ok(existing),
                // A fresh database: the file is the operator's proof for this root.
                None if agent == ADMIN && !existing.is_empty() => {
                    db::insert_token(&self.pool, agent, &hash(&existing)).await?;
                    return Ok(existing);
                }
                _ => {}
            }
        }
        let token = generate();
        db::insert_token(&self.pool, agent, &hash(&token)).await?;
        write_secret(path, &format!("{token}\n"))?;
        Ok(token)
    }
}

/// Checks an agent name: 1 to 64 characters of `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
pub fn check_agent_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if name.is_empty() || name.len() > 64 || !ok_chars || name.starts_with(['.', '-']) {
        return Err(format!(
            "invalid agent name {name:?}: use 1 to 64 characters of A-Z a-z 0-9 _ . - not starting with . or -"
        ));
    }
    Ok(())
}

fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names_are_path_safe() {
        assert!(check_agent_name("reviewer-2.b_x").is_ok());
        for bad in ["", ".hidden", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_agent_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        assert_ne!(generate(), generate());
        assert_eq!(generate().len(), 64);
        assert_eq!(hash("a"), hash("a"));
        assert_ne!(hash("a"), hash("b"));
    }
}

//! The ten scopes an API key can hold. Nothing implies anything else.

use std::fmt;
use std::str::FromStr;
use strum::{Display, EnumString, IntoStaticStr};

/// One permission, written `resource:action` (`agents:read`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, IntoStaticStr, Display, EnumString)]
#[strum(parse_err_ty = UnknownScope, parse_err_fn = unknown_scope)]
pub enum Scope {
    /// List and view agents.
    #[strum(serialize = "agents:read")]
    AgentsRead,
    /// Create, update and delete agents.
    #[strum(serialize = "agents:write")]
    AgentsWrite,
    /// Read conversations and messages.
    #[strum(serialize = "chat:read")]
    ChatRead,
    /// Send messages and create conversations.
    #[strum(serialize = "chat:write")]
    ChatWrite,
    /// Read knowledge base documents.
    #[strum(serialize = "knowledge:read")]
    KnowledgeRead,
    /// Add, update and delete knowledge base documents.
    #[strum(serialize = "knowledge:write")]
    KnowledgeWrite,
    /// View integrations.
    #[strum(serialize = "integrations:read")]
    IntegrationsRead,
    /// Manage integrations.
    #[strum(serialize = "integrations:write")]
    IntegrationsWrite,
    /// View webhooks.
    #[strum(serialize = "webhooks:read")]
    WebhooksRead,
    /// Manage webhooks.
    #[strum(serialize = "webhooks:write")]
    WebhooksWrite,
}

impl Scope {
    /// All ten scopes, in their documented order.
    pub const ALL: [Scope; 10] = [
        Scope::AgentsRead,
        Scope::AgentsWrite,
        Scope::ChatRead,
        Scope::ChatWrite,
        Scope::KnowledgeRead,
        Scope::KnowledgeWrite,
        Scope::IntegrationsRead,
        Scope::IntegrationsWrite,
        Scope::WebhooksRead,
        Scope::WebhooksWrite,
    ];

    /// The scope as written in the API (`agents:read`).
    pub fn as_str(&self) -> &'static str {
        self.into()
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A string that is not one of the ten scopes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?}")]
pub struct UnknownScope(pub String);

fn unknown_scope(name: &str) -> UnknownScope {
    UnknownScope(name.to_owned())
}

/// A set of scopes, as cheap to copy and test as an integer.
///
/// ```
/// use convosphere_domain::{Scope, ScopeSet};
/// let granted: ScopeSet = "agents:read chat:write".parse().unwrap();
/// assert!(granted.contains(Scope::ChatWrite));
/// assert!(!granted.contains(Scope::ChatRead)); // nothing implies anything else
/// assert_eq!(granted.to_string(), "agents:read chat:write");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ScopeSet(u16);

impl ScopeSet {
    /// No scope at all.
    pub const EMPTY: ScopeSet = ScopeSet(0);

    /// Every scope (what a user access token holds).
    pub fn all() -> Self {
        Scope::ALL.into_iter().collect()
    }

    /// Whether `scope` is in the set.
    pub fn contains(&self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether every scope of `other` is in the set.
    pub fn contains_all(&self, other: ScopeSet) -> bool {
        self.0 & other.0 == other.0
    }

    /// The first scope of `required` that the set lacks.
    pub fn first_missing(&self, required: ScopeSet) -> Option<Scope> {
        required.iter().find(|scope| !self.contains(*scope))
    }

    /// Adds a scope.
    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }

    /// Whether the set holds nothing.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The scopes, in their documented order.
    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        Scope::ALL.into_iter().filter(|scope| self.contains(*scope))
    }

    /// The scopes as strings.
    pub fn to_strings(&self) -> Vec<String> {
        self.iter().map(|scope| scope.as_str().to_owned()).collect()
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut set = ScopeSet::EMPTY;
        for scope in iter {
            set.insert(scope);
        }
        set
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(|s| s.as_str())).finish()
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for scope in self.iter() {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(scope.as_str())?;
            first = false;
        }
        Ok(())
    }
}

/// Parses a space-separated list (the form stored and sent in headers).
impl FromStr for ScopeSet {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split_whitespace().map(str::parse::<Scope>).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scope_round_trips() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
        }
        assert_eq!(ScopeSet::all().iter().count(), 10);
    }

    #[test]
    fn no_scope_implies_another() {
        let write: ScopeSet = "agents:write".parse().unwrap();
        assert!(!write.contains(Scope::AgentsRead));
        assert_eq!(write.first_missing(ScopeSet::all()), Some(Scope::AgentsRead));
    }

    #[test]
    fn unknown_scopes_are_refused() {
        assert!("agents:admin".parse::<Scope>().is_err());
        assert!("agents:read bogus".parse::<ScopeSet>().is_err());
        assert!("AGENTS:READ".parse::<Scope>().is_err());
    }
}

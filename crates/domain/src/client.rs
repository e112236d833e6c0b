//! Client systems and their scopes: which city system may call which RPC (docs/security.md,
//! "Who calls, and with what").

use std::fmt;

use crate::{Error, Result};

/// What a client system's key allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Acts for customers (`x-customer-id`): identity, contractor and permission management.
    Portal,
    /// Asks questions: checks, accessible applications, the change feed.
    Check,
    /// Links permits and applications to accounts.
    Records,
    /// Staff operations, the legacy import, any account's audit trail.
    Staff,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Portal, Scope::Check, Scope::Records, Scope::Staff];

    /// The scope's name, as keys are created with and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Portal => "portal",
            Scope::Check => "check",
            Scope::Records => "records",
            Scope::Staff => "staff",
        }
    }

    /// The scope named `name`.
    pub fn parse(field: &str, name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == name.trim())
            .ok_or_else(|| Error::invalid(field, "must be one of portal, check, records, staff"))
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// Every scope: the bootstrap key's.
    pub fn all() -> Self {
        Self::ALL_BITS
    }

    const ALL_BITS: Scopes = Scopes(0b1111);

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether any of `wanted` is held.
    pub fn any_of(self, wanted: &[Scope]) -> bool {
        wanted.iter().any(|scope| self.contains(*scope))
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes held, in a fixed order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .into_iter()
            .filter(move |scope| self.contains(*scope))
    }

    /// The stored form: names joined by commas, `portal,check`.
    pub fn to_stored(self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(",")
    }

    /// Reads the stored form back; `None` for a name no scope has.
    pub fn from_stored(stored: &str) -> Option<Self> {
        stored
            .split(',')
            .filter(|name| !name.is_empty())
            .map(|name| Scope::parse("scopes", name).ok())
            .collect::<Option<Vec<_>>>()
            .map(|scopes| scopes.into_iter().collect())
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(scopes: I) -> Self {
        Scopes(scopes.into_iter().fold(0, |bits, scope| bits | scope.bit()))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_stored())
    }
}

/// A client system's name, such as `portal` or `payments`: 1 to 64 letters, digits, `-` and
/// `_`, recorded in the audit trail as the client behind each change.
pub fn parse_client_name(field: &str, name: &str) -> Result<String> {
    let name = name.trim();
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(Error::invalid(
            field,
            "must be 1 to 64 letters, digits, - or _, such as payments or staff-console",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_read_back_from_their_stored_form() {
        for bits in 0..16u8 {
            let scopes: Scopes = Scope::ALL
                .into_iter()
                .filter(|scope| bits & scope.bit() != 0)
                .collect();
            assert_eq!(Scopes::from_stored(&scopes.to_stored()), Some(scopes));
        }
        assert_eq!(Scopes::from_stored("portal,admin"), None);
        assert_eq!(Scopes::all().to_stored(), "portal,check,records,staff");
    }

    #[test]
    fn a_set_holds_what_it_was_made_of() {
        let scopes: Scopes = [Scope::Check, Scope::Records].into_iter().collect();
        assert!(scopes.contains(Scope::Check));
        assert!(!scopes.contains(Scope::Portal));
        assert!(scopes.any_of(&[Scope::Portal, Scope::Records]));
        assert!(!scopes.any_of(&[Scope::Portal, Scope::Staff]));
    }

    #[test]
    fn scope_and_client_names_are_checked() {
        assert_eq!(Scope::parse("scope", " staff ").unwrap(), Scope::Staff);
        assert!(Scope::parse("scope", "admin").is_err());
        assert_eq!(parse_client_name("name", "payments").unwrap(), "payments");
        assert!(parse_client_name("name", "").is_err());
        assert!(parse_client_name("name", "pay ments").is_err());
        assert!(parse_client_name("name", &"x".repeat(65)).is_err());
    }
}

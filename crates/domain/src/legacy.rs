//! Records of the previous permit system ("MAP"), as the legacy import reads them.

use crate::error::Violations;
use crate::{Result, text};

/// Longest legacy identifier accepted.
const LEGACY_ID_MAX: usize = 64;

/// A legacy identifier named in `field`: trimmed, 1 to 64 characters on one line.
pub fn parse_legacy_id(field: &str, value: &str) -> Result<String> {
    text::required(field, value, LEGACY_ID_MAX)
        .map_err(|violation| crate::Error::Invalid(vec![violation]))
}

/// A validated legacy customer record: the person who applied in the previous system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyCustomer {
    pub legacy_customer_id: String,
    pub display_name: String,
    pub email: String,
}

impl LegacyCustomer {
    /// Validates every field, naming each one that is not acceptable.
    pub fn parse(legacy_customer_id: &str, display_name: &str, email: &str) -> Result<Self> {
        let mut violations = Violations::default();
        let legacy_customer_id = violations.check(text::required(
            "legacy_customer_id",
            legacy_customer_id,
            LEGACY_ID_MAX,
        ));
        let display_name = violations.check(text::required("name", display_name, 200));
        let email = violations.check(text::email("email", email));
        let (Some(legacy_customer_id), Some(display_name), Some(email)) =
            (legacy_customer_id, display_name, email)
        else {
            return Err(violations.into_error());
        };
        Ok(Self {
            legacy_customer_id,
            display_name,
            email,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_record_is_trimmed_and_every_bad_field_is_named() {
        let record = LegacyCustomer::parse(" C-1 ", " Ana Lima ", "ana@example.ca").unwrap();
        assert_eq!(record.legacy_customer_id, "C-1");
        assert_eq!(record.display_name, "Ana Lima");
        let err = LegacyCustomer::parse("", "", "no-at-sign").unwrap_err();
        let crate::Error::Invalid(violations) = err else {
            panic!("not a validation error");
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["legacy_customer_id", "name", "email"]);
        assert!(parse_legacy_id("id", &"9".repeat(65)).is_err());
    }
}

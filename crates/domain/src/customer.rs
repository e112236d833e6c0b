//! Customer accounts: one per person, keyed by the subject of the city's sign-in.

use crate::error::Violations;
use crate::{Result, text};

/// A validated request to register a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCustomer {
    /// The subject of the city's sign-in, such as an OIDC `sub`.
    pub external_subject: String,
    pub display_name: String,
    pub email: String,
}

impl NewCustomer {
    /// Validates every field, naming each one that is not acceptable.
    pub fn parse(external_subject: &str, display_name: &str, email: &str) -> Result<Self> {
        let mut violations = Violations::default();
        let external_subject =
            violations.check(text::required("external_subject", external_subject, 255));
        let display_name = violations.check(text::required("display_name", display_name, 200));
        let email = violations.check(text::email("email", email));
        let (Some(external_subject), Some(display_name), Some(email)) =
            (external_subject, display_name, email)
        else {
            return Err(violations.into_error());
        };
        Ok(Self {
            external_subject,
            display_name,
            email,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn a_customer_with_every_field_is_accepted_trimmed() {
        let customer = NewCustomer::parse(" sub-1 ", " Ana Lima ", "ana@example.ca").unwrap();
        assert_eq!(customer.external_subject, "sub-1");
        assert_eq!(customer.display_name, "Ana Lima");
    }

    #[test]
    fn every_bad_field_of_a_customer_is_named() {
        let Err(Error::Invalid(violations)) = NewCustomer::parse("", " ", "nope") else {
            panic!("accepted a customer with no fields");
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["external_subject", "display_name", "email"]);
    }
}

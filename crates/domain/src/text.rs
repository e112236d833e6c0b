//! Field-level parsing shared by the account types.

use crate::FieldViolation;

/// A trimmed, non-blank single-line text of at most `max` characters.
pub(crate) fn required(field: &str, value: &str, max: usize) -> Result<String, FieldViolation> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(FieldViolation::new(
            field,
            "is required and must not be blank",
        ));
    }
    if trimmed.chars().count() > max {
        return Err(FieldViolation::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(FieldViolation::new(
            field,
            "must not contain control characters such as line breaks",
        ));
    }
    Ok(trimmed.to_owned())
}

/// An email address of the common `local@domain.tld` form, lower-cased in its domain part.
pub(crate) fn email(field: &str, value: &str) -> Result<String, FieldViolation> {
    let value = required(field, value, 254)?;
    let invalid =
        |why: &str| FieldViolation::new(field, format!("is not a valid email address: {why}"));
    let (local, domain) = value
        .rsplit_once('@')
        .ok_or_else(|| invalid("it has no @"))?;
    if local.is_empty() || local.len() > 64 {
        return Err(invalid("the part before @ must have 1 to 64 characters"));
    }
    if local.contains('@') || value.chars().any(char::is_whitespace) {
        return Err(invalid("it must have one @ and no spaces"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(invalid("the part before @ has a misplaced dot"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(invalid("the domain must contain a dot, as in example.ca"));
    }
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if !labels.iter().all(label_ok) {
        return Err(invalid(
            "the domain may hold only letters, digits, hyphens and dots",
        ));
    }
    Ok(format!("{local}@{}", domain.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_text_is_trimmed() {
        assert_eq!(required("f", "  Acme  ", 10).unwrap(), "Acme");
    }

    #[test]
    fn blank_text_is_refused_naming_the_field() {
        let err = required("business_name", " \t ", 10).unwrap_err();
        assert_eq!(err.field, "business_name");
    }

    #[test]
    fn text_longer_than_the_limit_is_refused() {
        assert!(required("f", &"x".repeat(11), 10).is_err());
        assert!(required("f", &"é".repeat(10), 10).is_ok());
    }

    #[test]
    fn text_with_a_line_break_is_refused() {
        assert!(required("f", "Acme\nBuilders", 100).is_err());
    }

    #[test]
    fn plausible_email_addresses_are_accepted_with_a_lower_case_domain() {
        assert_eq!(
            email("e", "Jo.Smith+permits@Example.CA").unwrap(),
            "Jo.Smith+permits@example.ca"
        );
        assert!(email("e", "a@b.co").is_ok());
    }

    #[test]
    fn malformed_email_addresses_are_refused() {
        for bad in [
            "",
            "plain",
            "@example.ca",
            "jo@",
            "jo@example",
            "jo@@example.ca",
            "jo smith@example.ca",
            "jo@exa_mple.ca",
            "jo@-example.ca",
            ".jo@example.ca",
            "jo..smith@example.ca",
            "jo@example..ca",
        ] {
            assert!(email("e", bad).is_err(), "{bad:?} was accepted");
        }
    }
}

//! Applications and permits: the permit systems' own numbers, such as `24-123456 BLD`.

use crate::{Error, Result};

/// Longest application number accepted.
const MAX_LEN: usize = 64;

/// Parses an application or permit number named in `field`: trimmed, 1 to 64 characters of
/// letters, digits, spaces and `-` `/` `.` `_` `#`.
pub fn parse_application_id(field: &str, value: &str) -> Result<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if value.chars().count() > MAX_LEN {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_LEN} characters"),
        ));
    }
    if !value
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '/' | '.' | '_' | '#'))
    {
        return Err(Error::invalid(
            field,
            "may hold only letters, digits, spaces and - / . _ #, as in 24-123456 BLD",
        ));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permit_number_is_accepted_trimmed() {
        assert_eq!(
            parse_application_id("a", " 24-123456 BLD ").unwrap(),
            "24-123456 BLD"
        );
    }

    #[test]
    fn a_blank_long_or_odd_application_number_is_refused() {
        for bad in ["", "   ", "24-123456\nBLD", "<script>", &"9".repeat(65)] {
            assert!(
                parse_application_id("application_id", bad).is_err(),
                "{bad:?}"
            );
        }
    }
}

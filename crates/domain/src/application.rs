//! Applications and permits: the permit systems' own numbers, such as `24-123456 BLD`.

use crate::{Error, Result};

/// Longest application number accepted.
const MAX_LEN: usize = 64;

/// Parses an application or permit number named in `field`, into the one form Mandate compares
/// and stores: trimmed, runs of spaces collapsed to one, in upper case (`24-123456  bld` is
/// `24-123456 BLD`); 1 to 64 characters of letters, digits, spaces and `-` `/` `.` `_` `#`.
pub fn parse_application_id(field: &str, value: &str) -> Result<String> {
    let value = canonical(value);
    let value = value.as_str();
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

/// `value` trimmed, with runs of spaces collapsed and letters in upper case.
fn canonical(value: &str) -> String {
    value
        .trim()
        .split(' ')
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
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
    fn one_permit_number_written_several_ways_is_one_number() {
        for written in [
            "24-123456 BLD",
            "24-123456 bld",
            "  24-123456   Bld ",
            "24-123456 BLD\u{20}",
        ] {
            assert_eq!(
                parse_application_id("a", written).unwrap(),
                "24-123456 BLD",
                "{written:?}"
            );
        }
        assert_ne!(
            parse_application_id("a", "24-123456BLD").unwrap(),
            "24-123456 BLD",
            "a space between words is kept"
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

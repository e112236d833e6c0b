//! Page sizes and cursors of the list RPCs.

use crate::{Error, Result};

/// Page size when the caller asks for none.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// Largest page served; larger requests are served this many (AIP-158).
pub const MAX_PAGE_SIZE: u64 = 500;

/// A validated request for one page of a list ordered by identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// How many items to return at most.
    pub size: u64,
    /// Return the items after this identifier; `None` for the first page.
    pub after: Option<String>,
}

impl PageRequest {
    /// Parses `page_size` and `page_token` of a list whose cursor is an identifier.
    pub fn parse(page_size: i32, page_token: &str) -> Result<Self> {
        Self::parse_with(page_size, page_token, is_identifier)
    }

    /// Parses `page_size` and `page_token` of a list whose cursors pass `is_cursor`.
    pub fn parse_with(
        page_size: i32,
        page_token: &str,
        is_cursor: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        let size = match u64::try_from(page_size) {
            Err(_) => return Err(Error::invalid("page_size", "must not be negative")),
            Ok(0) => DEFAULT_PAGE_SIZE,
            Ok(n) => n.min(MAX_PAGE_SIZE),
        };
        let after = match page_token {
            "" => None,
            token if is_cursor(token) => Some(token.to_owned()),
            _ => {
                return Err(Error::invalid(
                    "page_token",
                    "is not a token this list returned; pass next_page_token unchanged",
                ));
            }
        };
        Ok(Self { size, after })
    }
}

/// An identifier a request names in `field`: required, and of the form Mandate hands out, in
/// lower case (as Mandate writes them) or upper case (as some systems write UUIDs).
pub fn parse_id(field: &str, value: &str) -> Result<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    let value = value.to_ascii_lowercase();
    if is_identifier(&value) {
        Ok(value)
    } else {
        Err(Error::invalid(
            field,
            "is not an id Mandate hands out (a UUID such as \
             0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b)",
        ))
    }
}

/// Whether `text` has the form of a Mandate identifier: a hyphenated UUID in lower case, as
/// Mandate writes them.
pub fn is_identifier(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_page_size_means_the_default_and_a_huge_one_is_capped() {
        assert_eq!(PageRequest::parse(0, "").unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(PageRequest::parse(10_000, "").unwrap().size, MAX_PAGE_SIZE);
        assert_eq!(PageRequest::parse(7, "").unwrap().size, 7);
    }

    #[test]
    fn a_negative_page_size_is_refused() {
        assert_eq!(
            PageRequest::parse(-1, "").unwrap_err(),
            Error::invalid("page_size", "must not be negative")
        );
    }

    #[test]
    fn an_id_is_required_and_must_look_like_one() {
        assert_eq!(
            parse_id("customer_id", " ").unwrap_err(),
            Error::invalid("customer_id", "is required")
        );
        assert!(parse_id("customer_id", "42").is_err());
        assert_eq!(
            parse_id("customer_id", "0196A1B2-3C4D-7E8F-9A0B-1C2D3E4F5A6B").unwrap(),
            "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b"
        );
        let id = "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b";
        assert_eq!(parse_id("customer_id", id).unwrap(), id);
    }

    #[test]
    fn a_page_token_must_be_one_the_list_returned() {
        let token = "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b";
        assert_eq!(
            PageRequest::parse(0, token).unwrap().after.as_deref(),
            Some(token)
        );
        assert!(PageRequest::parse(0, "page-2").is_err());
    }
}

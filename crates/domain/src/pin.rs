//! Contractor PINs: short, human-friendly, and self-checking.
//!
//! A PIN is nine random Crockford base32 characters (45 bits) and a Luhn mod 32 check character,
//! shown as `XXXX-XXXX-XX`. The check character catches every single mistyped character and most
//! swaps of neighbours, so a typo is reported as a typo rather than as an unknown PIN.
//! Input is normalised the Crockford way: case, spaces and hyphens do not matter, and the
//! look-alike letters O, I and L are read as 0, 1 and 1.

use std::fmt;

use crate::{Error, Result};

/// The 32 symbols of Crockford's base32: digits and letters without I, L, O and U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Random symbols in a PIN.
const DATA_LEN: usize = 9;
/// Symbols in a PIN, the check character included.
pub const PIN_LEN: usize = DATA_LEN + 1;

/// A well-formed PIN. Its `Debug` form hides the value, so a PIN cannot leak into a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(String);

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

impl Pin {
    /// Makes a PIN from 64 random bits (of which it uses 45); the caller supplies them from a CSPRNG.
    pub fn from_random(random: u64) -> Self {
        let mut symbols: Vec<u8> = (0..DATA_LEN)
            .map(|i| ((random >> (5 * i)) & 0x1f) as u8)
            .collect();
        symbols.push(check_symbol(&symbols));
        Self(
            symbols
                .iter()
                .map(|&s| ALPHABET[usize::from(s)] as char)
                .collect(),
        )
    }

    /// Parses a PIN as a person typed it. `field` names the request field in the error.
    pub fn parse(field: &str, input: &str) -> Result<Self> {
        let mut normalised = String::with_capacity(PIN_LEN);
        for c in input.chars() {
            match c.to_ascii_uppercase() {
                ' ' | '-' | '\t' => {}
                'O' => normalised.push('0'),
                'I' | 'L' => normalised.push('1'),
                c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => normalised.push(c),
                other => {
                    return Err(Error::invalid(
                        field,
                        format!(
                            "contains {other:?}, which is not a PIN character (PINs use digits and letters except U)"
                        ),
                    ));
                }
            }
        }
        if normalised.is_empty() {
            return Err(Error::invalid(field, "is required"));
        }
        if normalised.len() != PIN_LEN {
            return Err(Error::invalid(
                field,
                format!(
                    "must have {PIN_LEN} characters in the form XXXX-XXXX-XX, not {}",
                    normalised.len()
                ),
            ));
        }
        let symbols: Vec<u8> = normalised.bytes().map(symbol_value).collect();
        if !check_passes(&symbols) {
            return Err(Error::invalid(
                field,
                "is mistyped: its check character does not match; please re-enter it",
            ));
        }
        Ok(Self(normalised))
    }

    /// The canonical form that is hashed and encrypted: ten symbols, no separators.
    pub fn expose_canonical(&self) -> &str {
        &self.0
    }

    /// The form shown to people: `XXXX-XXXX-XX`.
    pub fn expose_formatted(&self) -> String {
        format!("{}-{}-{}", &self.0[..4], &self.0[4..8], &self.0[8..])
    }
}

fn symbol_value(c: u8) -> u8 {
    ALPHABET.iter().position(|&a| a == c).map_or(0, |p| p as u8)
}

/// Luhn mod N: doubles every second symbol from the right, folds digits in base 32.
fn luhn_sum(symbols: &[u8], double_first_from_right: bool) -> u32 {
    let mut double = double_first_from_right;
    symbols
        .iter()
        .rev()
        .map(|&s| {
            let addend = u32::from(s) * if double { 2 } else { 1 };
            double = !double;
            addend / 32 + addend % 32
        })
        .sum()
}

fn check_symbol(data: &[u8]) -> u8 {
    ((32 - luhn_sum(data, true) % 32) % 32) as u8
}

fn check_passes(symbols: &[u8]) -> bool {
    luhn_sum(symbols, false).is_multiple_of(32)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_generated_pin_is_shown_as_three_groups() {
        let pin = Pin::from_random(0x1234_5678_9abc);
        let shown = pin.expose_formatted();
        assert_eq!(shown.len(), 12);
        assert_eq!(&shown[4..5], "-");
        assert_eq!(&shown[9..10], "-");
    }

    #[test]
    fn a_pin_typed_in_lower_case_with_spaces_and_look_alikes_is_understood() {
        let pin = Pin::from_random(0);
        assert_eq!(pin.expose_canonical(), "0000000000");
        assert_eq!(Pin::parse("pin", "oooo ooOO-0o").unwrap(), pin);
    }

    #[test]
    fn i_and_l_are_read_as_one() {
        let pin = Pin::from_random(0b00001);
        let canonical = pin.expose_canonical().to_owned();
        assert!(canonical.starts_with('1'));
        let typed = format!("l{}", &canonical[1..]);
        assert_eq!(Pin::parse("pin", &typed).unwrap(), pin);
        let typed = format!("I{}", &canonical[1..]);
        assert_eq!(Pin::parse("pin", &typed).unwrap(), pin);
    }

    #[test]
    fn a_pin_with_a_u_is_refused_as_not_a_pin_character() {
        let err = Pin::parse("pin", "U000-0000-00").unwrap_err();
        assert!(err.to_string().contains("not a PIN character"), "{err}");
    }

    #[test]
    fn a_pin_of_the_wrong_length_says_how_long_a_pin_is() {
        let err = Pin::parse("pin", "1234-5678").unwrap_err();
        assert!(err.to_string().contains("must have 10 characters"), "{err}");
    }

    #[test]
    fn an_empty_pin_is_required() {
        let err = Pin::parse("pin", " - ").unwrap_err();
        assert_eq!(err, Error::invalid("pin", "is required"));
    }

    #[test]
    fn the_debug_form_of_a_pin_hides_it() {
        let pin = Pin::from_random(42);
        assert!(!format!("{pin:?}").contains(pin.expose_canonical()));
    }

    proptest! {
        #[test]
        fn generated_pins_round_trip_through_their_shown_form(random: u64) {
            let pin = Pin::from_random(random);
            prop_assert_eq!(Pin::parse("pin", &pin.expose_formatted()).unwrap(), pin.clone());
            prop_assert_eq!(Pin::parse("pin", &pin.expose_canonical().to_lowercase()).unwrap(), pin);
        }

        #[test]
        fn any_single_mistyped_character_is_caught_by_the_check_character(
            random: u64,
            position in 0..PIN_LEN,
            replacement in 0..32usize,
        ) {
            let pin = Pin::from_random(random);
            let mut typed: Vec<u8> = pin.expose_canonical().bytes().collect();
            prop_assume!(typed[position] != ALPHABET[replacement]);
            typed[position] = ALPHABET[replacement];
            let typed = String::from_utf8(typed).unwrap();
            let err = Pin::parse("pin", &typed).unwrap_err();
            prop_assert!(err.to_string().contains("mistyped"), "{}", err);
        }

        #[test]
        fn pins_carry_45_random_bits(a: u64, b: u64) {
            let mask = (1u64 << 45) - 1;
            prop_assert_eq!(Pin::from_random(a) == Pin::from_random(b), a & mask == b & mask);
        }
    }
}

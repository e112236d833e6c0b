//! Professional/contractor accounts: their mandatory details and how they change.
//!
//! guide: "Complete all fields in the Details, Contact Information and Mailing Address sections".

use crate::error::Violations;
use crate::{Error, FieldViolation, Result, text};

/// Longest business, contact, street and city names accepted.
const NAME_MAX: usize = 200;

/// Details as a caller sent them, before validation. `None` stands for an absent message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawDetails {
    pub business_name: String,
    pub contact: Option<RawContact>,
    pub mailing_address: Option<RawAddress>,
}

/// A contact as a caller sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawContact {
    pub name: String,
    pub phone: String,
    pub email: String,
}

/// A mailing address as a caller sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawAddress {
    pub street: String,
    pub city: String,
    pub province: String,
    pub postal_code: String,
    pub country: String,
}

/// The validated details of a professional/contractor account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractorDetails {
    pub business_name: String,
    pub contact: Contact,
    pub mailing_address: MailingAddress,
}

/// The validated contact person of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub name: String,
    pub phone: String,
    pub email: String,
}

/// A validated mailing address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailingAddress {
    pub street: String,
    pub city: String,
    /// For Canada, the two-letter code of a province or territory.
    pub province: String,
    /// For Canada, `A1A 1A1`.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
}

/// The paths `UpdateContractor`'s `update_mask` may name.
pub const UPDATABLE_PATHS: [&str; 11] = [
    "business_name",
    "contact",
    "contact.name",
    "contact.phone",
    "contact.email",
    "mailing_address",
    "mailing_address.street",
    "mailing_address.city",
    "mailing_address.province",
    "mailing_address.postal_code",
    "mailing_address.country",
];

const CANADIAN_PROVINCES: [&str; 13] = [
    "AB", "BC", "MB", "NB", "NL", "NS", "NT", "NU", "ON", "PE", "QC", "SK", "YT",
];

impl ContractorDetails {
    /// Validates registration details, naming every field that is not acceptable.
    pub fn parse(raw: &RawDetails) -> Result<Self> {
        let mut violations = Violations::default();
        let business_name = violations.check(text::required(
            "business_name",
            &raw.business_name,
            NAME_MAX,
        ));
        let contact = match &raw.contact {
            Some(contact) => violations.nested("contact", Contact::parse(contact)),
            None => {
                violations.push(FieldViolation::new("contact", "is required"));
                None
            }
        };
        let mailing_address = match &raw.mailing_address {
            Some(address) => violations.nested("mailing_address", MailingAddress::parse(address)),
            None => {
                violations.push(FieldViolation::new("mailing_address", "is required"));
                None
            }
        };
        let (Some(business_name), Some(contact), Some(mailing_address)) =
            (business_name, contact, mailing_address)
        else {
            return Err(violations.into_error());
        };
        Ok(Self {
            business_name,
            contact,
            mailing_address,
        })
    }

    /// The details after changing the fields `mask` names to their values in `raw`.
    ///
    /// `*` names every field. Violations are named as in `UpdateContractorRequest`:
    /// `update_mask`, or the field under `contractor`.
    pub fn update(&self, raw: &RawDetails, mask: &[String]) -> Result<Self> {
        if mask.is_empty() {
            return Err(Error::invalid(
                "update_mask",
                format!(
                    "is required: name the fields to change, among {}",
                    UPDATABLE_PATHS.join(", ")
                ),
            ));
        }
        let mut merged = self.to_raw();
        for path in mask {
            let path = path.trim();
            let all = path == "*";
            let contact = raw.contact.clone().unwrap_or_default();
            let address = raw.mailing_address.clone().unwrap_or_default();
            let mut known = all;
            if all || path == "business_name" {
                merged.business_name.clone_from(&raw.business_name);
                known = true;
            }
            if let Some(target) = merged.contact.as_mut() {
                for (name, field, value) in [
                    ("name", &mut target.name, &contact.name),
                    ("phone", &mut target.phone, &contact.phone),
                    ("email", &mut target.email, &contact.email),
                ] {
                    if all || path == "contact" || path == format!("contact.{name}") {
                        field.clone_from(value);
                        known = true;
                    }
                }
            }
            if let Some(target) = merged.mailing_address.as_mut() {
                for (name, field, value) in [
                    ("street", &mut target.street, &address.street),
                    ("city", &mut target.city, &address.city),
                    ("province", &mut target.province, &address.province),
                    ("postal_code", &mut target.postal_code, &address.postal_code),
                    ("country", &mut target.country, &address.country),
                ] {
                    if all || path == "mailing_address" || path == format!("mailing_address.{name}")
                    {
                        field.clone_from(value);
                        known = true;
                    }
                }
            }
            if !known {
                return Err(Error::invalid(
                    "update_mask",
                    format!(
                        "names {path:?}, which cannot be changed; use {} or *",
                        UPDATABLE_PATHS.join(", ")
                    ),
                ));
            }
        }
        Self::parse(&merged).map_err(|err| match err {
            Error::Invalid(violations) => Error::Invalid(
                violations
                    .into_iter()
                    .map(|v| v.under("contractor"))
                    .collect(),
            ),
            other => other,
        })
    }

    fn to_raw(&self) -> RawDetails {
        RawDetails {
            business_name: self.business_name.clone(),
            contact: Some(RawContact {
                name: self.contact.name.clone(),
                phone: self.contact.phone.clone(),
                email: self.contact.email.clone(),
            }),
            mailing_address: Some(RawAddress {
                street: self.mailing_address.street.clone(),
                city: self.mailing_address.city.clone(),
                province: self.mailing_address.province.clone(),
                postal_code: self.mailing_address.postal_code.clone(),
                country: self.mailing_address.country.clone(),
            }),
        }
    }
}

impl Contact {
    fn parse(raw: &RawContact) -> Result<Self> {
        let mut violations = Violations::default();
        let name = violations.check(text::required("name", &raw.name, NAME_MAX));
        let phone = violations.check(phone("phone", &raw.phone));
        let email = violations.check(text::email("email", &raw.email));
        let (Some(name), Some(phone), Some(email)) = (name, phone, email) else {
            return Err(violations.into_error());
        };
        Ok(Self { name, phone, email })
    }
}

impl MailingAddress {
    fn parse(raw: &RawAddress) -> Result<Self> {
        let mut violations = Violations::default();
        let street = violations.check(text::required("street", &raw.street, NAME_MAX));
        let city = violations.check(text::required("city", &raw.city, NAME_MAX));
        let country = violations.check(country("country", &raw.country));
        let canadian = country.as_deref() == Some("CA");
        let province = violations.check(if canadian {
            canadian_province("province", &raw.province)
        } else {
            text::required("province", &raw.province, 100)
        });
        let postal_code = violations.check(if canadian {
            canadian_postal_code("postal_code", &raw.postal_code)
        } else {
            text::required("postal_code", &raw.postal_code, 20)
        });
        let (Some(street), Some(city), Some(province), Some(postal_code), Some(country)) =
            (street, city, province, postal_code, country)
        else {
            return Err(violations.into_error());
        };
        Ok(Self {
            street,
            city,
            province,
            postal_code,
            country,
        })
    }
}

/// A telephone number: digits with the usual separators and an optional leading `+`.
fn phone(field: &str, value: &str) -> Result<String, FieldViolation> {
    let value = text::required(field, value, 30)?;
    let body = value.strip_prefix('+').unwrap_or(&value);
    if !body
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'))
    {
        return Err(FieldViolation::new(
            field,
            "may hold only digits, spaces, hyphens, dots, parentheses and a leading +",
        ));
    }
    let digits = body.chars().filter(char::is_ascii_digit).count();
    if !(7..=15).contains(&digits) {
        return Err(FieldViolation::new(
            field,
            format!("must have 7 to 15 digits, not {digits}"),
        ));
    }
    Ok(value)
}

fn country(field: &str, value: &str) -> Result<String, FieldViolation> {
    let value = text::required(field, value, 2)
        .ok()
        .filter(|v| v.len() == 2 && v.chars().all(|c| c.is_ascii_alphabetic()))
        .ok_or_else(|| {
            FieldViolation::new(
                field,
                "must be a two-letter ISO 3166-1 country code, such as CA",
            )
        })?;
    Ok(value.to_ascii_uppercase())
}

fn canadian_province(field: &str, value: &str) -> Result<String, FieldViolation> {
    let code = value.trim().to_ascii_uppercase();
    if CANADIAN_PROVINCES.contains(&code.as_str()) {
        Ok(code)
    } else {
        Err(FieldViolation::new(
            field,
            format!(
                "must be the two-letter code of a Canadian province or territory ({}) when country is CA",
                CANADIAN_PROVINCES.join(", ")
            ),
        ))
    }
}

/// `A1A 1A1`, with Canada Post's letters: never D, F, I, O, Q or U, and no W or Z first.
fn canadian_postal_code(field: &str, value: &str) -> Result<String, FieldViolation> {
    let compact: Vec<char> = value
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let letter_ok = |c: char, first: bool| {
        c.is_ascii_uppercase() && !"DFIOQU".contains(c) && !(first && "WZ".contains(c))
    };
    let valid = compact.len() == 6
        && compact.iter().enumerate().all(|(i, &c)| {
            if i % 2 == 0 {
                letter_ok(c, i == 0)
            } else {
                c.is_ascii_digit()
            }
        });
    if !valid {
        return Err(FieldViolation::new(
            field,
            "must be a Canadian postal code of the form A1A 1A1 when country is CA",
        ));
    }
    let compact: String = compact.into_iter().collect();
    Ok(format!("{} {}", &compact[..3], &compact[3..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn raw() -> RawDetails {
        RawDetails {
            business_name: "Rideau Builders Inc.".into(),
            contact: Some(RawContact {
                name: "Marie Tremblay".into(),
                phone: "+1 (613) 555-0199".into(),
                email: "marie@rideaubuilders.ca".into(),
            }),
            mailing_address: Some(RawAddress {
                street: "110 Laurier Ave W".into(),
                city: "Ottawa".into(),
                province: "on".into(),
                postal_code: "k1p1j1".into(),
                country: "ca".into(),
            }),
        }
    }

    fn fields(err: Error) -> Vec<String> {
        match err {
            Error::Invalid(violations) => violations.into_iter().map(|v| v.field).collect(),
            other => panic!("expected field violations, got {other}"),
        }
    }

    #[test]
    fn complete_canadian_details_are_accepted_and_normalised() {
        let details = ContractorDetails::parse(&raw()).unwrap();
        assert_eq!(details.mailing_address.province, "ON");
        assert_eq!(details.mailing_address.postal_code, "K1P 1J1");
        assert_eq!(details.mailing_address.country, "CA");
    }

    #[test]
    fn missing_contact_and_address_are_each_named() {
        let raw = RawDetails {
            business_name: "Acme".into(),
            ..RawDetails::default()
        };
        let err = ContractorDetails::parse(&raw).unwrap_err();
        assert_eq!(fields(err), ["contact", "mailing_address"]);
    }

    #[test]
    fn every_blank_field_is_named_with_its_path() {
        let raw = RawDetails {
            business_name: " ".into(),
            contact: Some(RawContact::default()),
            mailing_address: Some(RawAddress::default()),
        };
        let err = ContractorDetails::parse(&raw).unwrap_err();
        assert_eq!(
            fields(err),
            [
                "business_name",
                "contact.name",
                "contact.phone",
                "contact.email",
                "mailing_address.street",
                "mailing_address.city",
                "mailing_address.country",
                "mailing_address.province",
                "mailing_address.postal_code",
            ]
        );
    }

    #[test]
    fn a_phone_number_with_letters_or_too_few_digits_is_refused() {
        for bad in [
            "613-CALL-NOW",
            "555-01",
            "+1 613 555 0199 0199 0199",
            "++16135550199",
        ] {
            let mut raw = raw();
            raw.contact.as_mut().unwrap().phone = bad.into();
            assert_eq!(
                fields(ContractorDetails::parse(&raw).unwrap_err()),
                ["contact.phone"],
                "{bad}"
            );
        }
    }

    #[test]
    fn a_malformed_canadian_postal_code_is_refused() {
        for bad in ["K1P", "12345", "K1P 1J1X", "D1P 1J1", "W1P 1J1", "K1P 1U1"] {
            let mut raw = raw();
            raw.mailing_address.as_mut().unwrap().postal_code = bad.into();
            assert_eq!(
                fields(ContractorDetails::parse(&raw).unwrap_err()),
                ["mailing_address.postal_code"],
                "{bad}"
            );
        }
    }

    #[test]
    fn a_canadian_address_needs_a_province_code() {
        let mut raw = raw();
        raw.mailing_address.as_mut().unwrap().province = "Ontario".into();
        assert_eq!(
            fields(ContractorDetails::parse(&raw).unwrap_err()),
            ["mailing_address.province"]
        );
    }

    #[test]
    fn a_foreign_address_keeps_its_own_postal_code_and_state() {
        let mut raw = raw();
        let address = raw.mailing_address.as_mut().unwrap();
        address.country = "US".into();
        address.province = "New York".into();
        address.postal_code = "10001".into();
        let details = ContractorDetails::parse(&raw).unwrap();
        assert_eq!(details.mailing_address.postal_code, "10001");
    }

    #[test]
    fn a_country_must_be_a_two_letter_code() {
        let mut raw = raw();
        raw.mailing_address.as_mut().unwrap().country = "Canada".into();
        let errors = fields(ContractorDetails::parse(&raw).unwrap_err());
        assert_eq!(errors, ["mailing_address.country"]);
    }

    #[test]
    fn an_overlong_business_name_is_refused() {
        let mut raw = raw();
        raw.business_name = "B".repeat(201);
        assert_eq!(
            fields(ContractorDetails::parse(&raw).unwrap_err()),
            ["business_name"]
        );
    }

    #[test]
    fn an_update_changes_only_the_masked_fields() {
        let current = ContractorDetails::parse(&raw()).unwrap();
        let change = RawDetails {
            business_name: "Rideau Homes".into(),
            contact: Some(RawContact {
                phone: "613 555 0100".into(),
                ..RawContact::default()
            }),
            ..RawDetails::default()
        };
        let updated = current
            .update(&change, &["business_name".into(), "contact.phone".into()])
            .unwrap();
        assert_eq!(updated.business_name, "Rideau Homes");
        assert_eq!(updated.contact.phone, "613 555 0100");
        assert_eq!(updated.contact.name, current.contact.name);
        assert_eq!(updated.mailing_address, current.mailing_address);
    }

    #[test]
    fn an_update_of_a_whole_message_validates_every_field_under_contractor() {
        let current = ContractorDetails::parse(&raw()).unwrap();
        let err = current
            .update(&RawDetails::default(), &["mailing_address".into()])
            .unwrap_err();
        assert_eq!(
            fields(err),
            [
                "contractor.mailing_address.street",
                "contractor.mailing_address.city",
                "contractor.mailing_address.country",
                "contractor.mailing_address.province",
                "contractor.mailing_address.postal_code",
            ]
        );
    }

    #[test]
    fn an_update_with_a_star_replaces_every_field() {
        let current = ContractorDetails::parse(&raw()).unwrap();
        let mut change = raw();
        change.business_name = "Other".into();
        assert_eq!(
            current
                .update(&change, &["*".into()])
                .unwrap()
                .business_name,
            "Other"
        );
    }

    #[test]
    fn an_update_without_a_mask_or_with_an_unknown_path_is_refused() {
        let current = ContractorDetails::parse(&raw()).unwrap();
        assert_eq!(
            fields(current.update(&raw(), &[]).unwrap_err()),
            ["update_mask"]
        );
        let err = current
            .update(&raw(), &["contractor_id".into()])
            .unwrap_err();
        assert_eq!(fields(err), ["update_mask"]);
    }
}

//! mandate-bench's sample: what `mandate seed --sample` writes and mandate-bench reads, one CSV
//! file of entries, each a row. The one definition of its columns, on both sides.

use mandate_domain::permission::Permission;

/// The sample's columns. `check`: contractor_id, customer_id, permission, expected_allowed.
/// `application`: application_id, permission, customer_id (may act on it), other_customer_id
/// (may not). `pin`: contractor_id, pin. `manage`: contractor_id, customer_id (a Manager),
/// other_customer_id (an associate who is not a Manager).
pub const COLUMNS: [&str; 8] = [
    "kind",
    "contractor_id",
    "customer_id",
    "other_customer_id",
    "application_id",
    "permission",
    "expected_allowed",
    "pin",
];

/// One entry of the sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A check, and whether it must be allowed.
    Check {
        contractor_id: String,
        customer_id: String,
        permission: Permission,
        allowed: bool,
    },
    /// An application, with a customer who may act on it with `permission` and one who may not.
    Application {
        application_id: String,
        permission: Permission,
        may: String,
        may_not: String,
    },
    /// An account's PIN, as shown (formatted).
    Pin { contractor_id: String, pin: String },
    /// An account, a Manager of it, and an associate who is not one.
    Manage {
        contractor_id: String,
        manager: String,
        associate: String,
    },
}

impl Entry {
    /// The entry's row, in the order of [`COLUMNS`].
    pub fn row(&self) -> [&str; 8] {
        match self {
            Entry::Check {
                contractor_id,
                customer_id,
                permission,
                allowed,
            } => [
                "check",
                contractor_id,
                customer_id,
                "",
                "",
                permission.token(),
                if *allowed { "true" } else { "false" },
                "",
            ],
            Entry::Application {
                application_id,
                permission,
                may,
                may_not,
            } => [
                "application",
                "",
                may,
                may_not,
                application_id,
                permission.token(),
                "",
                "",
            ],
            Entry::Pin { contractor_id, pin } => ["pin", contractor_id, "", "", "", "", "", pin],
            Entry::Manage {
                contractor_id,
                manager,
                associate,
            } => ["manage", contractor_id, manager, associate, "", "", "", ""],
        }
    }

    /// The entry a row holds (its fields in the order of [`COLUMNS`]).
    pub fn read<'a>(row: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let fields: Vec<&str> = row.into_iter().collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or_default().to_owned();
        let permission = || {
            let token = field(5);
            Permission::from_token(&token)
                .ok_or_else(|| format!("unknown permission {token:?} in the sample"))
        };
        Ok(match fields.first().copied().unwrap_or_default() {
            "check" => Entry::Check {
                contractor_id: field(1),
                customer_id: field(2),
                permission: permission()?,
                allowed: field(6) == "true",
            },
            "application" => Entry::Application {
                application_id: field(4),
                permission: permission()?,
                may: field(2),
                may_not: field(3),
            },
            "pin" => Entry::Pin {
                contractor_id: field(1),
                pin: field(7),
            },
            "manage" => Entry::Manage {
                contractor_id: field(1),
                manager: field(2),
                associate: field(3),
            },
            other => return Err(format!("unknown sample entry kind {other:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_entry_reads_back_from_its_row() {
        let entries = [
            Entry::Check {
                contractor_id: "a".into(),
                customer_id: "c".into(),
                permission: Permission::UploadFiles,
                allowed: true,
            },
            Entry::Check {
                contractor_id: "a".into(),
                customer_id: "d".into(),
                permission: Permission::Manage,
                allowed: false,
            },
            Entry::Application {
                application_id: "24-000001 BLD".into(),
                permission: Permission::Pay,
                may: "c".into(),
                may_not: "d".into(),
            },
            Entry::Pin {
                contractor_id: "a".into(),
                pin: "Q4WE-3CVY-HW".into(),
            },
            Entry::Manage {
                contractor_id: "a".into(),
                manager: "m".into(),
                associate: "c".into(),
            },
        ];
        for entry in entries {
            let row = entry.row();
            assert_eq!(row.len(), COLUMNS.len());
            assert_eq!(Entry::read(row), Ok(entry));
        }
        assert!(Entry::read(["grant", "", "", "", "", "", "", ""]).is_err());
        assert!(Entry::read(["check", "a", "c", "", "", "Pay", "true", ""]).is_err());
    }
}

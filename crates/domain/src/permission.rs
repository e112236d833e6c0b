//! The five permissions of the city's guide, and sets of them.

use std::fmt;

/// A permission a customer may hold on a professional/contractor account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// guide: "provides access to Permit Application Review actions such as submitting an
    /// application or communicating with staff regarding permit review issues."
    Apply,
    /// guide: "will allow the user to manage payment accounts and make payments."
    Pay,
    /// guide: "will allow the user to request inspections."
    Inspections,
    /// guide: "will allow users to add documents to the application or permit."
    UploadFiles,
    /// guide: "allows the user to complete all actions on behalf of the Professional/Contractor."
    Manage,
}

impl Permission {
    /// Every permission, in the guide's order.
    pub const ALL: [Permission; 5] = [
        Permission::Apply,
        Permission::Pay,
        Permission::Inspections,
        Permission::UploadFiles,
        Permission::Manage,
    ];

    const fn bit(self) -> u8 {
        match self {
            Permission::Apply => 1,
            Permission::Pay => 1 << 1,
            Permission::Inspections => 1 << 2,
            Permission::UploadFiles => 1 << 3,
            Permission::Manage => 1 << 4,
        }
    }
}

/// Each permission's names, the one table: as the guide shows it, and as a token (lower case,
/// for files and flags, such as mandate-bench's sample).
const NAMES: [(Permission, &str, &str); 5] = [
    (Permission::Apply, "Apply", "apply"),
    (Permission::Pay, "Pay", "pay"),
    (Permission::Inspections, "Inspections", "inspections"),
    (Permission::UploadFiles, "Upload Files", "upload_files"),
    (Permission::Manage, "Manage", "manage"),
];

impl Permission {
    fn names(self) -> (&'static str, &'static str) {
        NAMES
            .iter()
            .find(|(permission, _, _)| *permission == self)
            .map_or(("", ""), |(_, label, token)| (label, token))
    }

    /// The permission's token: `apply`, `pay`, `inspections`, `upload_files`, `manage`.
    pub fn token(self) -> &'static str {
        self.names().1
    }

    /// The permission whose token is `token`.
    pub fn from_token(token: &str) -> Option<Self> {
        NAMES
            .iter()
            .find(|(_, _, name)| *name == token)
            .map(|(permission, _, _)| *permission)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.names().0)
    }
}

/// A set of permissions, always closed under "Manage implies the other four".
///
/// guide: "The **Manage** role will have all other permissions enabled automatically."
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PermissionSet(u8);

impl PermissionSet {
    /// No permission: what a new associate holds.
    pub const NONE: PermissionSet = PermissionSet(0);
    /// Every permission: what a Manager holds.
    pub const MANAGER: PermissionSet = PermissionSet(0b1_1111);

    /// The set holding `permissions` and whatever they imply.
    pub fn of(permissions: impl IntoIterator<Item = Permission>) -> Self {
        let bits = permissions.into_iter().fold(0, |bits, p| bits | p.bit());
        Self::from_bits(bits)
    }

    /// The set stored as `bits`; unknown bits are dropped and Manage's implications added.
    pub fn from_bits(bits: u8) -> Self {
        if bits & Permission::Manage.bit() != 0 {
            Self::MANAGER
        } else {
            Self(bits & Self::MANAGER.0)
        }
    }

    /// The compact form kept in the database.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether the set allows `permission`, directly or through Manage.
    pub fn allows(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    pub fn is_manager(self) -> bool {
        self.allows(Permission::Manage)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The permissions in the set, in the guide's order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL.into_iter().filter(move |p| self.allows(*p))
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn every_permission_has_a_label_and_a_token_that_reads_back() {
        for permission in Permission::ALL {
            assert!(!permission.to_string().is_empty());
            assert_eq!(Permission::from_token(permission.token()), Some(permission));
        }
        assert_eq!(Permission::UploadFiles.to_string(), "Upload Files");
        assert_eq!(Permission::UploadFiles.token(), "upload_files");
        assert_eq!(Permission::from_token("Pay"), None);
    }

    #[test]
    fn manage_implies_apply_pay_inspections_and_upload_files() {
        let set = PermissionSet::of([Permission::Manage]);
        for p in Permission::ALL {
            assert!(set.allows(p), "Manage does not imply {p}");
        }
        assert_eq!(set, PermissionSet::MANAGER);
    }

    #[test]
    fn a_new_associate_holds_nothing() {
        assert!(
            Permission::ALL
                .iter()
                .all(|p| !PermissionSet::NONE.allows(*p))
        );
        assert!(PermissionSet::NONE.is_empty());
    }

    #[test]
    fn pay_alone_allows_paying_and_nothing_else() {
        let set = PermissionSet::of([Permission::Pay]);
        assert!(set.allows(Permission::Pay));
        assert!(!set.allows(Permission::Apply));
        assert!(!set.is_manager());
    }

    #[test]
    fn a_set_lists_its_permissions_in_the_guides_order() {
        let set = PermissionSet::of([Permission::UploadFiles, Permission::Apply]);
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [Permission::Apply, Permission::UploadFiles]
        );
    }

    proptest! {
        #[test]
        fn stored_bits_read_back_as_the_same_set(bits: u8) {
            let set = PermissionSet::from_bits(bits);
            prop_assert_eq!(PermissionSet::from_bits(set.bits()), set);
            prop_assert_eq!(PermissionSet::of(set.iter()), set);
            prop_assert_eq!(set.is_manager(), bits & 0b1_0000 != 0);
        }
    }
}

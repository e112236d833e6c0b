//! Who holds which role on an account, and what each role may do.

use crate::permission::PermissionSet;
use crate::{Error, Result};

/// What happens when the first customer associates with an account that has no Manager (a
/// legacy account imported from the previous permit system).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ManagerlessPolicy {
    /// Today's behaviour, FAQ: "When PINs are first associated the individual becomes the
    /// owner/manager of the PIN and receives full permissions."
    #[default]
    FirstAssociateManages,
    /// The announced future default, FAQ: "this process will be adjusted to a default of no
    /// permissions being granted at set up"; staff appoint the Manager.
    NoPermissions,
}

/// The outcome of entering a PIN and selecting Associate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Association {
    /// The customer was associated already; nothing changes.
    Existing(PermissionSet),
    /// The customer becomes an associate holding these permissions.
    New(PermissionSet),
}

/// Decides an association. `existing` is the customer's current membership, if any;
/// `account_has_manager` whether anyone holds Manage on the account.
pub fn associate(
    existing: Option<PermissionSet>,
    account_has_manager: bool,
    policy: ManagerlessPolicy,
) -> Association {
    match existing {
        Some(permissions) => Association::Existing(permissions),
        // guide: "Initially, they will have no permissions until the Manager assigns them"
        None if account_has_manager => Association::New(PermissionSet::NONE),
        None => match policy {
            ManagerlessPolicy::FirstAssociateManages => Association::New(PermissionSet::MANAGER),
            ManagerlessPolicy::NoPermissions => Association::New(PermissionSet::NONE),
        },
    }
}

/// The permissions of the customer who registers an account.
///
/// guide: "As the user initiating the Professional/Contractor account, you will act as the
/// Manager of the account."
pub const REGISTRANT: PermissionSet = PermissionSet::MANAGER;

/// Refuses `action` unless the actor is a Manager of the account. `actor` is the actor's
/// membership, `None` when it is not associated.
///
/// guide: "Customers and permissions can be removed within the Associate Accounts tab by any
/// user with the 'Manage' role".
pub fn require_manager(actor: Option<PermissionSet>, action: &str) -> Result<()> {
    match actor {
        Some(permissions) if permissions.is_manager() => Ok(()),
        Some(_) => Err(Error::PermissionDenied(format!(
            "only a Manager of the account may {action}; you are associated without the Manage permission"
        ))),
        None => Err(Error::PermissionDenied(format!(
            "only a Manager of the account may {action}; you are not associated with it"
        ))),
    }
}

/// Refuses to show an account's associates to anyone who is not associated with it.
pub fn require_associate(actor: Option<PermissionSet>, action: &str) -> Result<()> {
    match actor {
        Some(_) => Ok(()),
        None => Err(Error::PermissionDenied(format!(
            "only customers associated with the account may {action}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permission::Permission;

    #[test]
    fn a_customer_who_associates_by_pin_gets_no_permissions() {
        let outcome = associate(None, true, ManagerlessPolicy::FirstAssociateManages);
        assert_eq!(outcome, Association::New(PermissionSet::NONE));
    }

    #[test]
    fn associating_twice_returns_the_existing_membership() {
        let pay = PermissionSet::of([Permission::Pay]);
        assert_eq!(
            associate(Some(pay), true, ManagerlessPolicy::default()),
            Association::Existing(pay)
        );
    }

    #[test]
    fn the_first_associate_of_a_managerless_account_becomes_its_manager_by_default() {
        let outcome = associate(None, false, ManagerlessPolicy::default());
        assert_eq!(outcome, Association::New(PermissionSet::MANAGER));
    }

    #[test]
    fn under_the_announced_policy_the_first_associate_gets_no_permissions() {
        let outcome = associate(None, false, ManagerlessPolicy::NoPermissions);
        assert_eq!(outcome, Association::New(PermissionSet::NONE));
    }

    #[test]
    fn the_registering_customer_is_manager_with_every_permission() {
        assert!(REGISTRANT.is_manager());
        assert!(Permission::ALL.iter().all(|p| REGISTRANT.allows(*p)));
    }

    #[test]
    fn only_a_manager_passes_the_manager_check() {
        assert!(require_manager(Some(PermissionSet::MANAGER), "x").is_ok());
        let everything_but_manage = PermissionSet::of([
            Permission::Apply,
            Permission::Pay,
            Permission::Inspections,
            Permission::UploadFiles,
        ]);
        assert!(matches!(
            require_manager(Some(everything_but_manage), "read the PIN"),
            Err(Error::PermissionDenied(_))
        ));
        assert!(matches!(
            require_manager(None, "read the PIN"),
            Err(Error::PermissionDenied(_))
        ));
    }

    #[test]
    fn any_associate_may_see_the_associates_but_a_stranger_may_not() {
        assert!(require_associate(Some(PermissionSet::NONE), "list").is_ok());
        assert!(require_associate(None, "list").is_err());
    }
}

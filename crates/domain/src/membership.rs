//! Who holds which role on an account, and what each role may do.

use chrono::{DateTime, Utc};

use crate::permission::PermissionSet;
use crate::{Error, Result};

/// What a customer holds on an account: permissions, possibly only until a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Grant {
    pub permissions: PermissionSet,
    /// When the permissions end; `None` when they do not.
    pub expire_time: Option<DateTime<Utc>>,
}

impl Grant {
    /// A grant without an end.
    pub fn lasting(permissions: PermissionSet) -> Self {
        Self {
            permissions,
            expire_time: None,
        }
    }

    /// Whether the grant's end has come.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expire_time.is_some_and(|end| end <= now)
    }

    /// What the grant allows at `now`: nothing once expired.
    pub fn effective(&self, now: DateTime<Utc>) -> PermissionSet {
        if self.is_expired(now) {
            PermissionSet::NONE
        } else {
            self.permissions
        }
    }
}

/// What a customer holds on the surviving account of a merge, from what it held on the survivor
/// (if anything) and on an absorbed account. design: "associates (permissions united)"; a grant
/// in force keeps what it allows, and time limits keep the latest end (no end is the latest).
/// Manage is never time-limited.
pub fn unite(survivor: Option<Grant>, absorbed: Grant, now: DateTime<Utc>) -> Grant {
    let in_force: Vec<Grant> = survivor
        .into_iter()
        .chain([absorbed])
        .filter(|grant| !grant.effective(now).is_empty())
        .collect();
    let permissions = PermissionSet::of(in_force.iter().flat_map(|grant| grant.permissions.iter()));
    let lasting = permissions.is_manager() || in_force.iter().any(|g| g.expire_time.is_none());
    Grant {
        permissions,
        expire_time: if lasting {
            None
        } else {
            in_force.iter().filter_map(|grant| grant.expire_time).max()
        },
    }
}

/// guide: "There must always be a Manager for any Professional/Contractor Account."
const LAST_MANAGER: &str = "There must always be a Manager for any Professional/Contractor Account";

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

/// Whether a viewer holding `viewer` sees the associates' emails and sign-in subjects: only
/// Managers do (the customers they manage gave them to the city, not to every colleague).
pub fn sees_contact_details(viewer: PermissionSet) -> bool {
    viewer.is_manager()
}

/// Whether a viewer sees an account's contact and mailing address: staff, and the account's
/// associates (whatever they hold); nobody else, since they are a company's own details.
pub fn sees_account_contact(staff: bool, associated: bool) -> bool {
    staff || associated
}

/// Whether a viewer sees a customer's email and sign-in subject: staff, and the customer itself;
/// not the portal acting for anyone else.
pub fn sees_customer_contact(staff: bool, is_the_customer: bool) -> bool {
    staff || is_the_customer
}

/// Decides `SetPermissions`: `actor` is the acting customer's permissions now, `target` the
/// associate's grant, `new` what it would hold, `other_managers` how many customers other than
/// the target hold Manage now.
pub fn set_permissions(
    actor: Option<PermissionSet>,
    target: Option<Grant>,
    new: Grant,
    other_managers: usize,
    now: DateTime<Utc>,
) -> Result<()> {
    require_manager(actor, "change permissions")?;
    let target = target.ok_or_else(not_associated)?;
    if let Some(end) = new.expire_time {
        if new.permissions.is_manager() {
            return Err(Error::invalid(
                "expire_time",
                "Manage cannot be time-limited: an account must always keep a Manager",
            ));
        }
        if end <= now {
            return Err(Error::invalid("expire_time", "must be in the future"));
        }
    }
    if target.effective(now).is_manager() && !new.permissions.is_manager() && other_managers == 0 {
        return Err(Error::FailedPrecondition(format!(
            "{LAST_MANAGER}: this is its last Manager; grant Manage to another associate first"
        )));
    }
    Ok(())
}

/// Decides `RemoveAssociate`, as `set_permissions` does.
pub fn remove_associate(
    actor: Option<PermissionSet>,
    target: Option<Grant>,
    other_managers: usize,
    now: DateTime<Utc>,
) -> Result<()> {
    require_manager(actor, "remove associates")?;
    let target = target.ok_or_else(not_associated)?;
    if target.effective(now).is_manager() && other_managers == 0 {
        return Err(Error::FailedPrecondition(format!(
            "{LAST_MANAGER}: this is its last Manager and cannot be removed"
        )));
    }
    Ok(())
}

/// Decides `LeaveContractor`: `own` is the leaving customer's grant.
pub fn leave(own: Option<Grant>, other_managers: usize, now: DateTime<Utc>) -> Result<()> {
    let own =
        own.ok_or_else(|| Error::NotFound("you are not associated with this account".into()))?;
    if own.effective(now).is_manager() && other_managers == 0 {
        return Err(Error::FailedPrecondition(format!(
            "{LAST_MANAGER}: you are its last Manager; grant Manage to another associate before leaving"
        )));
    }
    Ok(())
}

fn not_associated() -> Error {
    Error::NotFound("the customer is not associated with this account".into())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::Duration;
    use proptest::prelude::*;

    use super::*;
    use crate::permission::Permission;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn manager() -> Option<Grant> {
        Some(Grant::lasting(PermissionSet::MANAGER))
    }

    #[test]
    fn the_last_manager_cannot_lose_manage() {
        let err = set_permissions(
            Some(PermissionSet::MANAGER),
            manager(),
            Grant::lasting(PermissionSet::of([Permission::Pay])),
            0,
            now(),
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::FailedPrecondition(ref m) if m.contains("last Manager")),
            "{err}"
        );
    }

    #[test]
    fn a_manager_may_lose_manage_while_another_manager_remains() {
        let pay = Grant::lasting(PermissionSet::of([Permission::Pay]));
        assert!(set_permissions(Some(PermissionSet::MANAGER), manager(), pay, 1, now()).is_ok());
    }

    #[test]
    fn the_last_manager_cannot_be_removed_or_leave() {
        assert!(matches!(
            remove_associate(Some(PermissionSet::MANAGER), manager(), 0, now()),
            Err(Error::FailedPrecondition(_))
        ));
        assert!(matches!(
            leave(manager(), 0, now()),
            Err(Error::FailedPrecondition(_))
        ));
        assert!(remove_associate(Some(PermissionSet::MANAGER), manager(), 1, now()).is_ok());
        assert!(leave(manager(), 1, now()).is_ok());
    }

    #[test]
    fn an_associate_without_manage_may_leave_at_any_time() {
        assert!(leave(Some(Grant::default()), 0, now()).is_ok());
    }

    #[test]
    fn leaving_an_account_one_is_not_associated_with_is_not_found() {
        assert!(matches!(leave(None, 1, now()), Err(Error::NotFound(_))));
    }

    #[test]
    fn a_non_manager_cannot_change_or_remove_anyone() {
        let pay = PermissionSet::of([Permission::Pay]);
        assert!(matches!(
            set_permissions(
                Some(pay),
                Some(Grant::default()),
                Grant::lasting(pay),
                1,
                now()
            ),
            Err(Error::PermissionDenied(_))
        ));
        assert!(matches!(
            remove_associate(None, Some(Grant::default()), 1, now()),
            Err(Error::PermissionDenied(_))
        ));
    }

    #[test]
    fn changing_a_customer_who_is_not_associated_is_not_found() {
        assert!(matches!(
            set_permissions(
                Some(PermissionSet::MANAGER),
                None,
                Grant::default(),
                1,
                now()
            ),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn manage_cannot_be_time_limited() {
        let limited = Grant {
            permissions: PermissionSet::MANAGER,
            expire_time: Some(now() + Duration::days(1)),
        };
        let err = set_permissions(
            Some(PermissionSet::MANAGER),
            Some(Grant::default()),
            limited,
            1,
            now(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            Error::invalid(
                "expire_time",
                "Manage cannot be time-limited: an account must always keep a Manager"
            )
        );
    }

    #[test]
    fn an_expiry_must_lie_in_the_future() {
        let past = Grant {
            permissions: PermissionSet::of([Permission::Inspections]),
            expire_time: Some(now()),
        };
        let err = set_permissions(
            Some(PermissionSet::MANAGER),
            Some(Grant::default()),
            past,
            1,
            now(),
        )
        .unwrap_err();
        assert_eq!(err, Error::invalid("expire_time", "must be in the future"));
    }

    #[test]
    fn an_expired_grant_allows_nothing() {
        let grant = Grant {
            permissions: PermissionSet::of([Permission::Pay]),
            expire_time: Some(now() - Duration::seconds(1)),
        };
        assert!(grant.is_expired(now()));
        assert_eq!(grant.effective(now()), PermissionSet::NONE);
    }

    /// One request against a model account, by customer numbers.
    #[derive(Debug, Clone)]
    enum Op {
        Associate(u8),
        Set { actor: u8, target: u8, bits: u8 },
        Remove { actor: u8, target: u8 },
        Leave(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..6u8).prop_map(Op::Associate),
            (0..6u8, 0..6u8, any::<u8>()).prop_map(|(actor, target, bits)| Op::Set {
                actor,
                target,
                bits
            }),
            (0..6u8, 0..6u8).prop_map(|(actor, target)| Op::Remove { actor, target }),
            (0..6u8).prop_map(Op::Leave),
        ]
    }

    fn managers_other_than(account: &BTreeMap<u8, Grant>, customer: u8) -> usize {
        account
            .iter()
            .filter(|(c, g)| **c != customer && g.effective(now()).is_manager())
            .count()
    }

    proptest! {
        #[test]
        fn no_sequence_of_requests_leaves_an_account_without_a_manager_or_lets_a_non_manager_change_permissions(
            ops in proptest::collection::vec(op(), 1..60)
        ) {
            let mut account = BTreeMap::from([(0u8, Grant::lasting(PermissionSet::MANAGER))]);
            for op in ops {
                let actor_of = |account: &BTreeMap<u8, Grant>, c: u8| account.get(&c).map(|g| g.effective(now()));
                match op {
                    Op::Associate(c) => {
                        let has_manager = managers_other_than(&account, u8::MAX) > 0;
                        if let Association::New(p) = associate(account.get(&c).map(|g| g.permissions), has_manager, ManagerlessPolicy::default()) {
                            account.insert(c, Grant::lasting(p));
                        }
                    }
                    Op::Set { actor, target, bits } => {
                        let actor_permissions = actor_of(&account, actor);
                        let new = Grant::lasting(PermissionSet::from_bits(bits));
                        let outcome = set_permissions(actor_permissions, account.get(&target).copied(), new, managers_other_than(&account, target), now());
                        if !actor_permissions.is_some_and(|p| p.is_manager()) {
                            prop_assert!(matches!(outcome, Err(Error::PermissionDenied(_))));
                        }
                        if outcome.is_ok() {
                            account.insert(target, new);
                        }
                    }
                    Op::Remove { actor, target } => {
                        let actor_permissions = actor_of(&account, actor);
                        let outcome = remove_associate(actor_permissions, account.get(&target).copied(), managers_other_than(&account, target), now());
                        if !actor_permissions.is_some_and(|p| p.is_manager()) {
                            prop_assert!(matches!(outcome, Err(Error::PermissionDenied(_))));
                        }
                        if outcome.is_ok() {
                            account.remove(&target);
                        }
                    }
                    Op::Leave(c) => {
                        if leave(account.get(&c).copied(), managers_other_than(&account, c), now()).is_ok() {
                            account.remove(&c);
                        }
                    }
                }
                prop_assert!(managers_other_than(&account, u8::MAX) >= 1, "no Manager left: {:?}", account);
            }
        }
    }

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

#[cfg(test)]
mod unite_tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::permission::Permission::{Apply, Inspections, Pay};

    fn at(hours: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap() + Duration::hours(hours)
    }

    fn until(permissions: &[crate::permission::Permission], hours: i64) -> Grant {
        Grant {
            permissions: PermissionSet::of(permissions.iter().copied()),
            expire_time: Some(at(hours)),
        }
    }

    #[test]
    fn a_merge_unites_permissions_and_keeps_the_latest_end() {
        let now = at(0);
        let united = unite(Some(until(&[Pay], 10)), until(&[Apply], 20), now);
        assert_eq!(united, until(&[Pay, Apply], 20));
        let united = unite(
            Some(Grant::lasting(PermissionSet::of([Inspections]))),
            until(&[Pay], 5),
            now,
        );
        assert_eq!(
            united,
            Grant::lasting(PermissionSet::of([Inspections, Pay]))
        );
    }

    #[test]
    fn a_manager_of_either_account_manages_the_survivor_for_good() {
        let united = unite(
            Some(until(&[Pay], 3)),
            Grant::lasting(PermissionSet::MANAGER),
            at(0),
        );
        assert_eq!(united, Grant::lasting(PermissionSet::MANAGER));
    }

    #[test]
    fn an_expired_grant_adds_nothing() {
        let united = unite(
            Some(until(&[Pay], 10)),
            until(&[Apply, Inspections], -1),
            at(0),
        );
        assert_eq!(united, until(&[Pay], 10));
        assert_eq!(unite(None, until(&[Apply], -1), at(0)), Grant::default());
    }

    #[test]
    fn contact_details_go_to_staff_and_those_they_belong_to() {
        assert!(sees_account_contact(true, false));
        assert!(sees_account_contact(false, true));
        assert!(!sees_account_contact(false, false));
        assert!(sees_customer_contact(true, false));
        assert!(sees_customer_contact(false, true));
        assert!(!sees_customer_contact(false, false));
    }
}

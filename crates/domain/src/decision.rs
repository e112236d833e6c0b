//! Deciding checks: may this customer act with this permission, and why (or why not)?

use chrono::{DateTime, Utc};

use crate::membership::Grant;
use crate::permission::Permission;

/// Why a check was decided the way it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Allowed: the customer holds the permission itself.
    GrantedDirectly,
    /// Allowed: the customer holds Manage, which implies the permission.
    GrantedThroughManage,
    /// Denied: the customer is not associated with the account.
    NotAssociated,
    /// Denied: the customer is associated but does not hold the permission.
    PermissionNotHeld,
    /// Denied: the customer held the permission, but only until a time now past.
    GrantExpired,
    /// Denied: the application is not linked to any account the customer is associated with.
    ApplicationNotLinked,
    /// Allowed: the application is the customer's own, from its linked record of the previous
    /// permit system.
    OwnApplication,
}

impl Reason {
    /// The reason's name, as the denied-check trail stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::GrantedDirectly => "granted_directly",
            Reason::GrantedThroughManage => "granted_through_manage",
            Reason::NotAssociated => "not_associated",
            Reason::PermissionNotHeld => "permission_not_held",
            Reason::GrantExpired => "grant_expired",
            Reason::ApplicationNotLinked => "application_not_linked",
            Reason::OwnApplication => "own_application",
        }
    }

    pub fn allows(self) -> bool {
        matches!(
            self,
            Reason::GrantedDirectly | Reason::GrantedThroughManage | Reason::OwnApplication
        )
    }
}

/// Decides whether a customer whose membership on an account is `grant` may use `permission` there.
pub fn decide(permission: Permission, grant: Option<&Grant>, now: DateTime<Utc>) -> Reason {
    let Some(grant) = grant else {
        return Reason::NotAssociated;
    };
    if !grant.permissions.allows(permission) {
        Reason::PermissionNotHeld
    } else if grant.is_expired(now) {
        Reason::GrantExpired
    } else if permission != Permission::Manage && grant.permissions.is_manager() {
        Reason::GrantedThroughManage
    } else {
        Reason::GrantedDirectly
    }
}

/// Decides a check on an application: allowed when any account linked to it allows it.
///
/// `linked` holds each account the application is linked to with the customer's membership
/// there, in a stable order. Returns the reason and the account that decided it: the first that
/// allows, or the one whose denial says the most (an expired grant, then a missing permission).
pub fn decide_for_application<C>(
    permission: Permission,
    linked: &[(C, Option<Grant>)],
    now: DateTime<Utc>,
) -> (Reason, Option<&C>) {
    let mut best: Option<(Reason, &C)> = None;
    for (contractor, grant) in linked {
        let reason = decide(permission, grant.as_ref(), now);
        if reason.allows() {
            return (reason, Some(contractor));
        }
        let rank = |r: Reason| match r {
            Reason::GrantExpired => 2,
            Reason::PermissionNotHeld => 1,
            _ => 0,
        };
        if rank(reason) > 0 && best.is_none_or(|(b, _)| rank(reason) > rank(b)) {
            best = Some((reason, contractor));
        }
    }
    match best {
        Some((reason, contractor)) => (reason, Some(contractor)),
        // FAQ: "If you are not seeing all applications, it is possible that those applications
        // are linked to a different PIN."
        None => (Reason::ApplicationNotLinked, None),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::permission::PermissionSet;

    fn grant(permissions: &[Permission], expire_in: Option<i64>) -> Grant {
        Grant {
            permissions: PermissionSet::of(permissions.iter().copied()),
            expire_time: expire_in.map(|secs| now() + Duration::seconds(secs)),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn a_customer_holding_pay_may_pay_directly() {
        let g = grant(&[Permission::Pay], None);
        assert_eq!(
            decide(Permission::Pay, Some(&g), now()),
            Reason::GrantedDirectly
        );
    }

    #[test]
    fn a_manager_may_pay_through_manage_and_manage_directly() {
        let g = grant(&[Permission::Manage], None);
        assert_eq!(
            decide(Permission::Pay, Some(&g), now()),
            Reason::GrantedThroughManage
        );
        assert_eq!(
            decide(Permission::Manage, Some(&g), now()),
            Reason::GrantedDirectly
        );
    }

    #[test]
    fn a_customer_not_associated_is_denied_as_such() {
        assert_eq!(
            decide(Permission::Apply, None, now()),
            Reason::NotAssociated
        );
    }

    #[test]
    fn an_associate_without_the_permission_is_denied_as_not_holding_it() {
        let g = grant(&[Permission::Apply], None);
        assert_eq!(
            decide(Permission::Pay, Some(&g), now()),
            Reason::PermissionNotHeld
        );
        assert_eq!(
            decide(Permission::Pay, Some(&Grant::default()), now()),
            Reason::PermissionNotHeld
        );
    }

    #[test]
    fn a_grant_is_good_until_its_expiry_and_expired_from_then_on() {
        let g = grant(&[Permission::Inspections], Some(1));
        assert_eq!(
            decide(Permission::Inspections, Some(&g), now()),
            Reason::GrantedDirectly
        );
        let g = grant(&[Permission::Inspections], Some(0));
        assert_eq!(
            decide(Permission::Inspections, Some(&g), now()),
            Reason::GrantExpired
        );
        let g = grant(&[Permission::Inspections], Some(-60));
        assert_eq!(
            decide(Permission::Inspections, Some(&g), now()),
            Reason::GrantExpired
        );
        assert_eq!(
            decide(Permission::Pay, Some(&g), now()),
            Reason::PermissionNotHeld
        );
    }

    #[test]
    fn an_application_is_allowed_through_any_linked_account_that_allows_it() {
        let linked = [
            ("a", Some(grant(&[Permission::Apply], None))),
            ("b", Some(grant(&[Permission::Pay], None))),
        ];
        assert_eq!(
            decide_for_application(Permission::Pay, &linked, now()),
            (Reason::GrantedDirectly, Some(&"b"))
        );
    }

    #[test]
    fn an_application_denial_names_the_most_telling_account() {
        let linked = [
            ("a", None),
            ("b", Some(grant(&[Permission::Apply], None))),
            ("c", Some(grant(&[Permission::Pay], Some(-1)))),
        ];
        assert_eq!(
            decide_for_application(Permission::Pay, &linked, now()),
            (Reason::GrantExpired, Some(&"c"))
        );
        assert_eq!(
            decide_for_application(Permission::Inspections, &linked, now()),
            (Reason::PermissionNotHeld, Some(&"b"))
        );
    }

    #[test]
    fn an_application_linked_to_none_of_the_customers_accounts_is_not_linked() {
        let none: [(&str, Option<Grant>); 0] = [];
        assert_eq!(
            decide_for_application(Permission::Pay, &none, now()),
            (Reason::ApplicationNotLinked, None)
        );
        let strangers = [("a", None), ("b", None)];
        assert_eq!(
            decide_for_application(Permission::Pay, &strangers, now()),
            (Reason::ApplicationNotLinked, None)
        );
    }
}

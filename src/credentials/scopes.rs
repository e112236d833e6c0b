//! Which scopes may call which RPC: the one table.

use mandate_domain::client::Scope;

/// The metadata key naming the customer a portal call acts for.
pub const CUSTOMER_HEADER: &str = "x-customer-id";

/// Every `mandate.v1` RPC, by service and method, with the scopes that may call it (any one
/// suffices). The one table: the authentication layer reads it, a test checks it against the
/// served descriptor set (every method has an entry, every entry a method), the keys test calls
/// every RPC through it, and `docs/security.md`'s table is generated from it
/// (`scope_table_markdown`). A method missing here is refused to every key, never given a
/// default.
pub const SCOPES: &[(&str, &str, &[Scope])] = {
    use Scope::{Check, Portal, Records, Staff};
    const IDENTITY: &str = "mandate.v1.IdentityService";
    const CONTRACTOR: &str = "mandate.v1.ContractorService";
    const PERMISSION: &str = "mandate.v1.PermissionService";
    &[
        (IDENTITY, "RegisterCustomer", &[Portal]),
        (IDENTITY, "GetCustomer", &[Portal, Staff]),
        (IDENTITY, "LinkLegacyCustomer", &[Portal]),
        (IDENTITY, "ClearPinLockout", &[Staff]),
        (IDENTITY, "ReissueCustomerPin", &[Staff]),
        (CONTRACTOR, "RegisterContractor", &[Portal]),
        (CONTRACTOR, "GetContractor", &[Portal, Staff]),
        (CONTRACTOR, "UpdateContractor", &[Portal]),
        (CONTRACTOR, "ListMyContractors", &[Portal]),
        (CONTRACTOR, "AssociateByPin", &[Portal]),
        (CONTRACTOR, "GetPin", &[Portal]),
        (CONTRACTOR, "RotatePin", &[Portal]),
        (CONTRACTOR, "LeaveContractor", &[Portal]),
        (CONTRACTOR, "MergeContractors", &[Staff]),
        (CONTRACTOR, "AppointManager", &[Staff]),
        (CONTRACTOR, "ReissuePin", &[Staff]),
        (CONTRACTOR, "RetireAliasPins", &[Staff]),
        (CONTRACTOR, "SearchContractors", &[Staff]),
        (PERMISSION, "ListAssociates", &[Portal, Staff]),
        (PERMISSION, "SetPermissions", &[Portal]),
        (PERMISSION, "RemoveAssociate", &[Portal]),
        (PERMISSION, "CheckPermission", &[Check]),
        (PERMISSION, "CheckPermissions", &[Check]),
        (PERMISSION, "LinkApplication", &[Records, Staff]),
        (PERMISSION, "UnlinkApplication", &[Records, Staff]),
        (PERMISSION, "ListAccessibleApplications", &[Check, Portal]),
        (PERMISSION, "WatchChanges", &[Check]),
        (PERMISSION, "ListAuditEvents", &[Portal, Staff]),
    ]
};

/// The scopes that may call the RPC at `path`, any one of them sufficing; `None` for the open
/// services (Health, reflection). A `mandate.` path that is in no entry of `SCOPES` needs a
/// scope no key has: refused, whatever it is.
pub fn required_scopes(path: &str) -> Option<&'static [Scope]> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    if !service.starts_with("mandate.") {
        return None;
    }
    Some(
        SCOPES
            .iter()
            .find(|(s, m, _)| *s == service && *m == method)
            .map_or(&[], |(_, _, scopes)| *scopes),
    )
}

/// `docs/security.md`'s table of who may call what, generated from `SCOPES`: one row per RPC,
/// a column per scope.
pub fn scope_table_markdown() -> String {
    let mut table = String::from("| RPC |");
    for scope in Scope::ALL {
        table.push_str(&format!(" `{}` |", scope.as_str()));
    }
    table.push_str("\n| --- |");
    for _ in Scope::ALL {
        table.push_str(" --- |");
    }
    table.push('\n');
    for (service, method, scopes) in SCOPES {
        let service = service.trim_start_matches("mandate.v1.");
        table.push_str(&format!("| `{service}.{method}` |"));
        for scope in Scope::ALL {
            table.push_str(if scopes.contains(&scope) {
                " ✓ |"
            } else {
                " |"
            });
        }
        table.push('\n');
    }
    table.push_str("| `grpc.health.v1.Health`, server reflection | open | open | open | open |\n");
    table
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message;

    use super::*;

    /// Every method of every `mandate.v1` service the server describes (and serves) has an entry
    /// in `SCOPES`, and every entry names such a method.
    #[test]
    fn the_scope_table_covers_exactly_the_served_methods() {
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set");
        let served: BTreeSet<(String, String)> = set
            .file
            .iter()
            .filter(|file| file.package() == "mandate.v1")
            .flat_map(|file| {
                file.service.iter().flat_map(move |service| {
                    service.method.iter().map(move |method| {
                        (
                            format!("{}.{}", file.package(), service.name()),
                            method.name().to_owned(),
                        )
                    })
                })
            })
            .collect();
        let listed: BTreeSet<(String, String)> = SCOPES
            .iter()
            .map(|(service, method, _)| ((*service).to_owned(), (*method).to_owned()))
            .collect();
        assert_eq!(listed.len(), SCOPES.len(), "an RPC is listed twice");
        let missing: Vec<_> = served.difference(&listed).collect();
        let unknown: Vec<_> = listed.difference(&served).collect();
        assert!(
            missing.is_empty(),
            "served methods with no scopes: {missing:?}"
        );
        assert!(
            unknown.is_empty(),
            "scope entries naming no method: {unknown:?}"
        );
        assert!(SCOPES.iter().all(|(_, _, scopes)| !scopes.is_empty()));
    }

    #[test]
    fn a_method_in_no_entry_is_open_to_no_scope_and_other_services_need_none() {
        assert_eq!(
            required_scopes("/mandate.v1.ContractorService/DropEverything"),
            Some(&[][..])
        );
        assert_eq!(
            required_scopes("/mandate.v1.ContractorService/RetireAliasPins"),
            Some(&[Scope::Staff][..])
        );
        assert_eq!(required_scopes("/grpc.health.v1.Health/Check"), None);
    }

    #[test]
    fn the_security_page_shows_the_scope_table() {
        let page = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/security.md"));
        let table = scope_table_markdown();
        assert!(
            page.contains(&table),
            "docs/security.md must show the scope table as `scope_table_markdown` writes it:\n{table}"
        );
    }
}

//! Which scope each RPC needs: one table, checked in one place for every transport.
//!
//! REST and gRPC-web reach the same gRPC methods, so keying the table by the fully qualified
//! method path covers all three transports. A method missing from the table is denied (deny
//! by default); a test proves every method of the service is listed.

/// Read customers, companies and notes (Get, BatchGet, List, events).
pub const READ: &str = "customers.read";
/// Change customers, companies and notes (Create, Update, Delete, Undelete).
pub const WRITE: &str = "customers.write";
/// Manage API keys (every `ApiKeyService` RPC) and act on data-subject requests ([`PRIVACY`]);
/// nothing else: an admin key that should also read or change customers is granted those
/// scopes too.
pub const ADMIN: &str = "customers.admin";
/// Bulk-read every customer of a filter in one call (ExportCustomers). A grant of its own,
/// not implied by [`READ`]: a reader sees what a screen pages through, an exporter takes the
/// whole base as one file (docs/operations.md, "Bulk export and external ids").
pub const EXPORT: &str = "customers.export";

/// Every scope there is (what `--auth-disabled` grants, what API keys may hold).
pub const ALL: [&str; 5] = [READ, WRITE, ADMIN, EXPORT, PRIVACY];

/// Data-subject rights (issue 19): export everything held about a person (ExportCustomerData),
/// erase a person (EraseCustomer).
/// Granted on its own to a privacy team; [`ADMIN`] includes it ([`grants`]).
pub const PRIVACY: &str = "customers.privacy";

/// Whether holding `granted` satisfies a method that needs `required`: the scope itself, or
/// [`ADMIN`] for [`PRIVACY`] (administrators may also act on data-subject requests).
pub fn grants(granted: &str, required: &str) -> bool {
    granted == required || (required == PRIVACY && granted == ADMIN)
}

/// Every protected method and the scope it needs.
pub const TABLE: &[(&str, &str)] = &[
    ("/customer.v1.CustomerService/CreateCustomer", WRITE),
    ("/customer.v1.CustomerService/GetCustomer", READ),
    ("/customer.v1.CustomerService/BatchGetCustomers", READ),
    ("/customer.v1.CustomerService/ListCustomers", READ),
    ("/customer.v1.CustomerService/UpdateCustomer", WRITE),
    ("/customer.v1.CustomerService/UpsertCustomer", WRITE),
    ("/customer.v1.CustomerService/LookupCustomer", READ),
    ("/customer.v1.CustomerService/ExportCustomers", EXPORT),
    ("/customer.v1.CustomerService/DeleteCustomer", WRITE),
    ("/customer.v1.CustomerService/UndeleteCustomer", WRITE),
    ("/customer.v1.CustomerService/ListCustomerEvents", READ),
    ("/customer.v1.CustomerService/WatchCustomerEvents", READ),
    ("/customer.v1.CustomerService/GetBusinessInfo", READ),
    ("/customer.v1.CustomerService/CreateCompany", WRITE),
    ("/customer.v1.CustomerService/GetCompany", READ),
    ("/customer.v1.CustomerService/ListCompanies", READ),
    ("/customer.v1.CustomerService/UpdateCompany", WRITE),
    ("/customer.v1.CustomerService/DeleteCompany", WRITE),
    ("/customer.v1.CustomerService/UndeleteCompany", WRITE),
    ("/customer.v1.CustomerService/CreateNote", WRITE),
    ("/customer.v1.CustomerService/GetNote", READ),
    ("/customer.v1.CustomerService/ListNotes", READ),
    ("/customer.v1.CustomerService/UpdateNote", WRITE),
    ("/customer.v1.CustomerService/DeleteNote", WRITE),
    ("/customer.v1.ApiKeyService/CreateApiKey", ADMIN),
    ("/customer.v1.ApiKeyService/GetApiKey", ADMIN),
    ("/customer.v1.ApiKeyService/ListApiKeys", ADMIN),
    ("/customer.v1.ApiKeyService/RevokeApiKey", ADMIN),
    ("/customer.v1.ApiKeyService/RotateApiKey", ADMIN),
    ("/customer.v1.CustomerService/EraseCustomer", PRIVACY),
    ("/customer.v1.CustomerService/ExportCustomerData", PRIVACY),
    ("/customer.v1.CustomerService/FindDuplicateCustomers", READ),
    // An import writes what CreateCustomer and UpsertCustomer write, row by row, with the
    // same validation, events and idempotency: the same grant (no scope of its own).
    ("/customer.v1.CustomerService/ImportCustomers", WRITE),
    // Operations are what writes (imports) leave running: readable with the grant that
    // started them, and only by their creator (or a caller also holding `customers.admin`).
    ("/google.longrunning.Operations/GetOperation", WRITE),
    ("/google.longrunning.Operations/ListOperations", WRITE),
    ("/google.longrunning.Operations/CancelOperation", WRITE),
    ("/customer.v1.CustomerService/MergeCustomers", WRITE),
    ("/customer.v1.CustomerService/UnmergeCustomers", WRITE),
];

/// The services whose every method is in [`TABLE`].
pub const SERVICES: &[&str] = &[
    "customer.v1.CustomerService",
    "customer.v1.ApiKeyService",
    "google.longrunning.Operations",
];

/// The scope a method path needs; `None` means the method is not in the table (deny).
pub fn required(path: &str) -> Option<&'static str> {
    TABLE
        .iter()
        .find(|(method, _)| *method == path)
        .map(|(_, scope)| *scope)
}

#[cfg(test)]
mod tests {
    use prost_reflect::DescriptorPool;

    use super::*;

    #[test]
    fn every_rpc_of_the_services_has_a_scope() {
        let pool = DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET).unwrap();
        let mut methods = Vec::new();
        for name in SERVICES {
            let service = pool.get_service_by_name(name).unwrap();
            methods.extend(
                service
                    .methods()
                    .map(|m| format!("/{}/{}", service.full_name(), m.name())),
            );
        }
        for method in &methods {
            assert!(
                required(method).is_some(),
                "{method} is missing from the scope table"
            );
        }
        assert_eq!(
            TABLE.len(),
            methods.len(),
            "the table lists methods the services lack"
        );
        assert!(
            methods
                .iter()
                .filter(|m| m.starts_with("/customer.v1.ApiKeyService/"))
                .all(|m| required(m) == Some(ADMIN)),
            "every API key RPC needs the admin scope"
        );
    }

    #[test]
    fn admin_grants_privacy_and_nothing_grants_admin() {
        assert!(grants(PRIVACY, PRIVACY));
        assert!(grants(ADMIN, PRIVACY));
        assert!(!grants(PRIVACY, ADMIN));
        assert!(!grants(WRITE, PRIVACY));
        assert!(!grants(READ, PRIVACY));
        assert!(grants(ADMIN, ADMIN));
    }

    #[test]
    fn unknown_methods_are_denied() {
        assert_eq!(
            required("/customer.v1.CustomerService/DropEverything"),
            None
        );
        assert_eq!(required(""), None);
    }
}

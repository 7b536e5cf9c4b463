//! The resources: each one a declaration over the core ([`Resource`] and its mask fields)
//! plus the rules only it has. Adding a resource means a file here, its proto, migration and
//! `db/` queries — nothing in `crate::core` changes.

pub mod companies;
pub mod customer_import;
pub mod customers;
pub mod notes;

pub use crate::core::resource::Resource;

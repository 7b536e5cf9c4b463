//! Customers as a resource of the core: the declaration plus the customer's own rules.
//!
//! Rules beyond the core's: a customer's `company` must name a live company, share-locked
//! while the write runs (so a concurrent DeleteCompany waits, and a customer never joins a
//! deleted company); an undeleted customer whose company was deleted meanwhile comes back
//! without it; a soft-deleted customer shows its `expire_time`, when the purger removes it.

use crate::domain::names::ResourceName as _;
use std::time::Duration;

use crate::{
    convert::{self, timestamp},
    core::{
        mask::{MaskField, label_path},
        resource::{Events, Reasons, Resource},
        store::{Lock, Repository, Storage},
    },
    domain::{
        company::Company,
        customer::{Customer, CustomerData, CustomerField, CustomerInput, PostalAddress},
        event::{Change, EventData, EventType, changed_fields},
        names::{CUSTOMER_TYPE, CompanyName, CustomerName},
    },
    pb,
    service::{Error, Result, error::reason},
};

impl Resource for Customer {
    type Name = CustomerName;
    type Input = CustomerInput;
    type Data = CustomerData;
    type Field = CustomerField;
    type Message = pb::Customer;

    const TYPE: &'static str = CUSTOMER_TYPE;
    const PROTO: &'static str = "customer.v1.Customer";
    const FIELD: &'static str = "customer";
    const KIND: &'static str = "Customer";
    const EVENTS: Events = Events {
        created: EventType::CustomerRegistered,
        updated: EventType::CustomerUpdated,
        deleted: EventType::CustomerDeleted,
        undeleted: Some(EventType::CustomerUndeleted),
    };
    const REASONS: Reasons = Reasons {
        deleted: reason::DELETED,
        deleted_message: "is deleted; undelete it first",
        not_deleted: reason::NOT_DELETED,
    };

    fn name(&self) -> CustomerName {
        Customer::name(self)
    }

    fn version(&self) -> i64 {
        self.version
    }

    fn data(&self) -> &CustomerData {
        &self.data
    }

    fn is_deleted(&self) -> bool {
        Customer::is_deleted(self)
    }

    fn stand_in() -> CustomerInput {
        CustomerInput {
            given_name: "x".into(),
            family_name: "x".into(),
            email: "x@example.com".into(),
            address: Some(PostalAddress {
                country_code: "US".into(),
                ..PostalAddress::default()
            }),
            ..CustomerInput::default()
        }
    }

    fn to_message(self) -> pb::Customer {
        let name = self.name().to_string();
        let etag = Resource::etag(&self);
        let data = self.data;
        pb::Customer {
            name,
            uid: self.id.to_string(),
            given_name: data.given_name,
            family_name: data.family_name,
            email: data.email,
            phone: data.phone.unwrap_or_default(),
            address: data.address.map(convert::address_to_proto),
            status: i32::from(data.status.number()),
            company: data.company.unwrap_or_default(),
            business_id: data.business_id.unwrap_or_default(),
            labels: data.labels,
            etag,
            create_time: Some(timestamp(self.create_time)),
            update_time: Some(timestamp(self.update_time)),
            delete_time: self.delete_time.map(timestamp),
            expire_time: self.expire_time.map(timestamp),
            business_info: None,
        }
    }

    fn input_from(customer: &pb::Customer) -> CustomerInput {
        CustomerInput {
            given_name: customer.given_name.clone(),
            family_name: customer.family_name.clone(),
            email: customer.email.clone(),
            phone: customer.phone.clone(),
            address: customer.address.clone().map(convert::address_from_proto),
            status: customer.status,
            company: customer.company.clone(),
            business_id: customer.business_id.clone(),
            labels: customer.labels.clone(),
        }
    }

    fn input_message(input: &CustomerInput) -> pb::Customer {
        pb::Customer {
            given_name: input.given_name.clone(),
            family_name: input.family_name.clone(),
            email: input.email.clone(),
            phone: input.phone.clone(),
            address: input.address.clone().map(convert::address_to_proto),
            status: input.status,
            company: input.company.clone(),
            business_id: input.business_id.clone(),
            labels: input.labels.clone(),
            ..pb::Customer::default()
        }
    }

    fn legacy_input(input: &CustomerInput) -> String {
        serde_json::to_string(input).unwrap_or_default()
    }

    /// Logged as is: the log writer masks email addresses and phone numbers in every line
    /// (`j***@example.com`), which keeps the domain for operators and nothing more.
    fn trace_create(data: &CustomerData) {
        tracing::debug!(
            email = %data.email,
            phone = data.phone.as_deref().unwrap_or_default(),
            "creating customer"
        );
    }

    fn event(event_type: EventType, snapshot: &Self, previous: Option<&CustomerData>) -> EventData {
        let _ = event_type;
        EventData::Customer(Box::new(Change {
            changed_fields: previous
                .map(|before| changed_fields(before, &snapshot.data))
                .unwrap_or_default(),
            previous: previous.cloned(),
            snapshot: snapshot.clone(),
        }))
    }

    /// `expire_time` is derived rather than stored, so a changed retention applies to every
    /// deleted customer at once, as the purger applies it.
    fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.expire_time = self
            .delete_time
            .zip(retention)
            .and_then(|(deleted, after)| {
                chrono::Duration::from_std(after)
                    .ok()
                    .and_then(|after| deleted.checked_add_signed(after))
            });
        self
    }

    /// Only a new reference is checked: a customer keeps the company it has.
    async fn check_references<C: Storage>(
        conn: &mut C,
        data: &CustomerData,
        current: Option<&CustomerData>,
    ) -> Result<()> {
        match &data.company {
            Some(company) if current.is_none_or(|current| current.company != data.company) => {
                check_company_reference(conn, company).await
            }
            _ => Ok(()),
        }
    }

    /// A company deleted while the customer was deleted does not come back with it
    /// (DeleteCompany only detached live customers).
    async fn restored_data<C: Storage>(
        conn: &mut C,
        current: &Self,
    ) -> Result<Option<CustomerData>> {
        let Some(company) = &current.data.company else {
            return Ok(None);
        };
        if live_company(conn, company).await?.is_some() {
            return Ok(None);
        }
        let mut data = current.data.clone();
        data.company = None;
        Ok(Some(data))
    }
}

impl MaskField for CustomerField {
    type Input = CustomerInput;

    fn parse(path: &str) -> Option<Result<Self, String>> {
        Some(Ok(match path {
            "given_name" => Self::GivenName,
            "family_name" => Self::FamilyName,
            "email" => Self::Email,
            "phone" => Self::Phone,
            "address" => Self::Address,
            "address.lines" => Self::AddressLines,
            "address.locality" => Self::AddressLocality,
            "address.region" => Self::AddressRegion,
            "address.postal_code" => Self::AddressPostalCode,
            "address.country_code" => Self::AddressCountryCode,
            "status" => Self::Status,
            "company" => Self::Company,
            "business_id" => Self::BusinessId,
            "labels" => Self::Labels,
            other => return label_path(other).map(|key| key.map(Self::Label)),
        }))
    }

    fn apply(&self, target: &mut CustomerInput, source: &CustomerInput) {
        let part = |get: fn(&PostalAddress) -> &String| {
            source
                .address
                .as_ref()
                .map(get)
                .cloned()
                .unwrap_or_default()
        };
        fn address(target: &mut CustomerInput) -> &mut PostalAddress {
            target.address.get_or_insert_with(PostalAddress::default)
        }
        match self {
            Self::GivenName => target.given_name.clone_from(&source.given_name),
            Self::FamilyName => target.family_name.clone_from(&source.family_name),
            Self::Email => target.email.clone_from(&source.email),
            Self::Phone => target.phone.clone_from(&source.phone),
            Self::Address => target.address.clone_from(&source.address),
            Self::AddressLines => {
                address(target).lines = source
                    .address
                    .as_ref()
                    .map(|a| a.lines.clone())
                    .unwrap_or_default();
            }
            Self::AddressLocality => address(target).locality = part(|a| &a.locality),
            Self::AddressRegion => address(target).region = part(|a| &a.region),
            Self::AddressPostalCode => address(target).postal_code = part(|a| &a.postal_code),
            Self::AddressCountryCode => address(target).country_code = part(|a| &a.country_code),
            Self::Status => target.status = source.status,
            Self::Company => target.company.clone_from(&source.company),
            Self::BusinessId => target.business_id.clone_from(&source.business_id),
            Self::Labels => target.labels.clone_from(&source.labels),
            Self::Label(key) => apply_label(&mut target.labels, &source.labels, key),
        }
    }

    fn path(&self) -> String {
        match self {
            Self::GivenName => "given_name",
            Self::FamilyName => "family_name",
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Address => "address",
            Self::AddressLines => "address.lines",
            Self::AddressLocality => "address.locality",
            Self::AddressRegion => "address.region",
            Self::AddressPostalCode => "address.postal_code",
            Self::AddressCountryCode => "address.country_code",
            Self::Status => "status",
            Self::Company => "company",
            Self::BusinessId => "business_id",
            Self::Labels => "labels",
            Self::Label(key) => return format!("labels.{key}"),
        }
        .to_owned()
    }

    fn legacy_name(&self) -> String {
        match self {
            Self::GivenName => "GivenName",
            Self::FamilyName => "FamilyName",
            Self::Email => "Email",
            Self::Phone => "Phone",
            Self::Address => "Address",
            Self::AddressLines => "AddressLines",
            Self::AddressLocality => "AddressLocality",
            Self::AddressRegion => "AddressRegion",
            Self::AddressPostalCode => "AddressPostalCode",
            Self::AddressCountryCode => "AddressCountryCode",
            Self::Status => "Status",
            Self::Company => "Company",
            Self::BusinessId => "BusinessId",
            Self::Labels => "Labels",
            Self::Label(key) => return format!("Label({key:?})"),
        }
        .to_owned()
    }
}

/// One label of a mask: set it from `source`, or remove it when `source` lacks it.
pub(crate) fn apply_label(
    target: &mut std::collections::BTreeMap<String, String>,
    source: &std::collections::BTreeMap<String, String>,
    key: &str,
) {
    match source.get(key) {
        Some(value) => {
            target.insert(key.to_owned(), value.clone());
        }
        None => {
            target.remove(key);
        }
    }
}

/// The company a customer refers to, share-locked for this transaction, if it is live.
async fn live_company<C: Storage>(conn: &mut C, reference: &str) -> Result<Option<Company>> {
    let Ok(name) = CompanyName::parse("", reference) else {
        return Ok(None);
    };
    let company = Repository::<Company>::find(conn, name, Lock::Share).await?;
    Ok(company.filter(|company| !company.is_deleted()))
}

/// A new `customer.company` must name a live company: INVALID_ARGUMENT naming the field
/// otherwise.
async fn check_company_reference<C: Storage>(conn: &mut C, reference: &str) -> Result<()> {
    let Ok(name) = CompanyName::parse("customer.company", reference) else {
        // Validation already checked the form; a malformed name is simply not a company.
        return Err(Error::invalid_field(
            reason::INVALID_FIELDS,
            "customer.company",
            format!("`{reference}` is not a company name"),
        ));
    };
    let problem = match Repository::<Company>::find(conn, name, Lock::Share).await? {
        None => "does not exist",
        Some(company) if company.is_deleted() => "is deleted",
        Some(_) => return Ok(()),
    };
    Err(Error::invalid_field(
        reason::INVALID_FIELDS,
        "customer.company",
        format!("{name} {problem}; refer to a live company or leave the field empty"),
    ))
}

//! Companies as a resource of the core: the declaration plus the company's own rule.
//!
//! A company is not deleted while live customers belong to it, unless the caller asks for
//! `force`, which detaches those customers (clears their `company`) in the same transaction,
//! each with its own CustomerUpdated event. The company's update lock is taken first and
//! customer writes that refer to it share-lock it, so from then on no new live customer can
//! join it.

use crate::{
    core::{
        mask::mask_fields,
        resource::{Events, Reasons, Resource},
        store::Storage,
        write::{Origin, record},
    },
    domain::{
        company::{self, Company, CompanyData, CompanyField, CompanyInput},
        event::{Change, EventData, EventType},
        names::{COMPANY_TYPE, CompanyName},
        stored::Stored,
    },
    pb,
    service::{Error, Result, error::reason},
};

impl Resource for Company {
    type Name = CompanyName;
    type Input = CompanyInput;
    type Data = CompanyData;
    type Field = CompanyField;
    type Message = pb::Company;

    const TYPE: &'static str = COMPANY_TYPE;
    const PROTO: &'static str = "customer.v1.Company";
    const FIELD: &'static str = "company";
    const KIND: &'static str = "Company";
    const EVENTS: Events = Events {
        created: EventType::CompanyCreated,
        updated: EventType::CompanyUpdated,
        deleted: EventType::CompanyDeleted,
        undeleted: Some(EventType::CompanyUndeleted),
    };
    const REASONS: Reasons = Reasons {
        deleted: reason::COMPANY_DELETED,
        deleted_message: "is deleted",
        not_deleted: reason::COMPANY_NOT_DELETED,
    };
    const HAS_FORCE: bool = true;

    fn name(&self) -> CompanyName {
        Company::name(self)
    }

    fn gate(gates: &crate::core::coalesce::Gates) -> Option<&crate::core::coalesce::Gate<Self>> {
        Some(&gates.companies)
    }

    fn stored(&self) -> &Stored {
        &self.stored
    }

    fn data(&self) -> &CompanyData {
        &self.data
    }

    fn stand_in() -> CompanyInput {
        CompanyInput {
            display_name: "x".into(),
            ..CompanyInput::default()
        }
    }

    fn to_message(self) -> pb::Company {
        let stored = self.stored_message();
        let data = self.data;
        pb::Company {
            display_name: data.display_name,
            domain: data.domain.unwrap_or_default(),
            business_id: data.business_id.unwrap_or_default(),
            labels: data.labels,
            ..stored
        }
    }

    fn input_from(company: pb::Company) -> CompanyInput {
        CompanyInput {
            display_name: company.display_name,
            domain: company.domain,
            business_id: company.business_id,
            labels: company.labels,
        }
    }

    fn input_message(input: &CompanyInput) -> pb::Company {
        pb::Company {
            display_name: input.display_name.clone(),
            domain: input.domain.clone(),
            business_id: input.business_id.clone(),
            labels: input.labels.clone(),
            ..pb::Company::default()
        }
    }

    fn legacy_input(input: &CompanyInput) -> String {
        serde_json::to_string(input).unwrap_or_default()
    }

    fn event(_: EventType, snapshot: &Self, previous: Option<&CompanyData>) -> EventData {
        EventData::Company(Box::new(Change {
            changed_fields: previous
                .map(|before| company::changed_fields(before, &snapshot.data))
                .unwrap_or_default(),
            previous: previous.cloned(),
            snapshot: snapshot.clone(),
        }))
    }

    async fn before_delete<C: Storage>(
        conn: &mut C,
        current: &Self,
        force: bool,
        origin: &Origin,
    ) -> Result<()> {
        let name = current.name();
        if force {
            let reference = Some(name.to_string());
            for customer in conn.detach_company(name, &origin.actor).await? {
                let mut previous = customer.data.clone();
                previous.company.clone_from(&reference);
                record(
                    conn,
                    EventType::CustomerUpdated,
                    &customer,
                    Some(&previous),
                    origin,
                )
                .await?;
            }
            return Ok(());
        }
        let members = conn.count_live_in_company(name).await?;
        if members == 0 {
            return Ok(());
        }
        Err(Error::FailedPrecondition {
            message: format!(
                "{name} has {members} live customer(s); move them to another company first, \
                 or delete with force=true to detach them"
            ),
            reason: reason::COMPANY_HAS_CUSTOMERS,
            resource_type: COMPANY_TYPE,
            resource_name: name.to_string(),
        })
    }
}

mask_fields! {
    CompanyField for CompanyInput [
        labels: Label by crate::domain::customer::is_label_key as "label key"
    ] {
        DisplayName = "display_name" => display_name,
        Domain = "domain" => domain,
        BusinessId = "business_id" => business_id,
        Labels = "labels" => labels,
    }
}

//! `Customer.external_ids` (issue 18): keys in other systems, unique per `(source, id)`
//! among live customers, filterable, written by create and update, carried in events.

use customer_api::pb::{self, customer_event::Kind};
use prost_types::FieldMask;
use tonic::Code;

use crate::{
    events::list_all,
    helpers::{TestApp, assert_invalid, assert_reason, details, labels, new_customer},
};

/// A new customer with these external ids.
pub(crate) fn with_ids(given: &str, ids: &[(&str, &str)]) -> pb::Customer {
    pb::Customer {
        external_ids: labels(ids),
        ..new_customer(given, "Keyed")
    }
}

async fn list(app: &TestApp, filter: &str, show_deleted: bool) -> Vec<String> {
    let request = pb::ListCustomersRequest {
        filter: filter.into(),
        show_deleted,
        page_size: 1000,
        ..Default::default()
    };
    app.customer_names(request).await
}

/// ALREADY_EXISTS naming the pair in the message and its holder in `ResourceInfo`.
pub(crate) fn assert_taken(status: &tonic::Status, source: &str, id: &str, holder: &str) {
    assert_reason(status, Code::AlreadyExists, "EXTERNAL_ID_ALREADY_EXISTS");
    assert_eq!(
        status.message(),
        format!("another live customer ({holder}) already has external id {source} = \"{id}\"")
    );
    let details = details(status);
    let info = details.resource_info().expect("ResourceInfo detail");
    assert_eq!(info.resource_name, holder);
    assert_eq!(info.resource_type, "customer.example.com/Customer");
}

#[tokio::test(flavor = "multi_thread")]
async fn external_ids_are_stored_and_returned_by_get_and_list() {
    let app = TestApp::spawn().await;
    let created = app
        .create_customer(with_ids("Ada", &[("crm", "4711"), ("erp", "A-1")]))
        .await
        .unwrap();

    let got = app.get_customer(&created.name).await.unwrap();

    assert_eq!(got.external_ids, labels(&[("crm", "4711"), ("erp", "A-1")]));
    assert_eq!(got, created);
    assert_eq!(
        app.count("customer_external_ids", "customer_id IS NOT NULL")
            .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pair_another_live_customer_holds_is_already_exists_naming_it() {
    let app = TestApp::spawn().await;
    let holder = app
        .create_customer(with_ids("Ada", &[("crm", "4711")]))
        .await
        .unwrap();
    // Another source with the same id, and the same source with another id, are free.
    app.create_customer(with_ids("Bob", &[("erp", "4711"), ("crm", "4712")]))
        .await
        .unwrap();

    let status = app
        .create_customer(with_ids("Cy", &[("crm", "4711"), ("zzz", "1")]))
        .await
        .unwrap_err();

    assert_taken(&status, "crm", "4711", &holder.name);
    assert_eq!(app.count("customers", "given_name = 'Cy'").await, 0);

    // An update that takes the pair is refused the same way.
    let bob = list(&app, r#"external_ids.erp = "4711""#, false).await;
    let status = app
        .client
        .clone()
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: bob[0].clone(),
                external_ids: labels(&[("crm", "4711")]),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["external_ids.crm".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_taken(&status, "crm", "4711", &holder.name);
}

#[tokio::test(flavor = "multi_thread")]
async fn filter_by_external_id_finds_exactly_its_holder() {
    let app = TestApp::spawn().await;
    let ada = app
        .create_customer(with_ids("Ada", &[("crm", "4711")]))
        .await
        .unwrap();
    let bob = app
        .create_customer(with_ids("Bob", &[("crm", "4712"), ("erp", "4711")]))
        .await
        .unwrap();
    let cy = app.create("Cy", "Plain").await;

    assert_eq!(
        list(&app, r#"external_ids.crm = "4711""#, false).await,
        std::slice::from_ref(&ada.name)
    );
    assert_eq!(
        list(&app, "external_ids.erp = 4711", false).await,
        std::slice::from_ref(&bob.name)
    );
    assert_eq!(
        list(&app, r#"external_ids.crm != "4711""#, false).await,
        [bob.name.clone(), cy.name.clone()]
    );
    assert_eq!(
        list(
            &app,
            "external_ids.crm = 4711 OR external_ids.crm = 4712",
            false
        )
        .await,
        [ada.name, bob.name]
    );
    let status = app
        .client
        .clone()
        .list_customers(pb::ListCustomersRequest {
            filter: "external_ids.crm > 1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["filter"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_customer_releases_its_pairs_and_its_undelete_then_conflicts() {
    let app = TestApp::spawn().await;
    let first = app
        .create_customer(with_ids("Ada", &[("crm", "4711")]))
        .await
        .unwrap();
    app.delete_customer(&first.name).await.unwrap();

    let second = app
        .create_customer(with_ids("Bob", &[("crm", "4711")]))
        .await
        .unwrap();
    let status = app.undelete_customer(&first.name).await.unwrap_err();

    assert_taken(&status, "crm", "4711", &second.name);
    // The deleted customer keeps its ids: shown, and found with show_deleted.
    assert_eq!(
        list(&app, "external_ids.crm = 4711", true).await,
        [first.name.clone(), second.name.clone()]
    );
    assert_eq!(
        list(&app, "external_ids.crm = 4711", false).await,
        [second.name]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_source_is_set_and_removed_by_its_mask_path_with_an_updated_event() {
    let app = TestApp::spawn().await;
    let created = app
        .create_customer(with_ids("Ada", &[("crm", "4711"), ("erp", "A-1")]))
        .await
        .unwrap();
    let patch = |ids: &[(&str, &str)], paths: &[&str]| pb::UpdateCustomerRequest {
        customer: Some(pb::Customer {
            name: created.name.clone(),
            external_ids: labels(ids),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
        ..Default::default()
    };

    let updated = app
        .client
        .clone()
        .update_customer(patch(
            &[("crm", "9")],
            &["external_ids.crm", "external_ids.erp"],
        ))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(updated.external_ids, labels(&[("crm", "9")]));
    let events = list_all(&app, &created.name, "").await;
    let Some(Kind::Updated(change)) = &events[1].kind else {
        panic!("not an update: {events:?}");
    };
    assert_eq!(
        change.changed_fields.as_ref().unwrap().paths,
        ["external_ids"]
    );
    assert_eq!(
        change.previous.as_ref().unwrap().external_ids,
        labels(&[("crm", "4711"), ("erp", "A-1")])
    );
    assert_eq!(
        events[1].snapshot.as_ref().unwrap().external_ids,
        labels(&[("crm", "9")])
    );
    assert_eq!(
        events[0].snapshot.as_ref().unwrap().external_ids,
        labels(&[("crm", "4711"), ("erp", "A-1")])
    );
    // The old pair is free again, the new one taken.
    app.create_customer(with_ids("Bob", &[("crm", "4711"), ("erp", "A-1")]))
        .await
        .unwrap();
    let status = app
        .create_customer(with_ids("Cy", &[("crm", "9")]))
        .await
        .unwrap_err();
    assert_taken(&status, "crm", "9", &created.name);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_external_ids_are_every_violation_named() {
    let app = TestApp::spawn().await;
    let status = app
        .create_customer(with_ids(
            "Ada",
            &[("CRM", "1"), ("erp", ""), ("ok", "a\u{7}b")],
        ))
        .await
        .unwrap_err();

    assert_invalid(
        &status,
        "INVALID_FIELDS",
        &[
            "customer.external_ids[\"CRM\"]",
            "customer.external_ids[\"erp\"]",
            "customer.external_ids[\"ok\"]",
        ],
    );
}

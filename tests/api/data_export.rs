//! ExportCustomerData (issue 19): everything held about one customer in one document, over
//! gRPC, gRPC-web and REST (a download), behind the `customers.privacy` scope.

use customer_api::pb;
use http::{Method, StatusCode};
use prost::Message;
use tonic::Code;

use crate::{
    events::kind,
    helpers::scoped,
    helpers::{TestApp, assert_invalid, assert_reason, labels, new_customer},
    rest, transport,
};

fn export(name: &str) -> pb::ExportCustomerDataRequest {
    pb::ExportCustomerDataRequest {
        name: name.to_owned(),
    }
}

/// A customer with external ids, two notes and an update, then soft-deleted.
async fn customer_with_a_history(app: &TestApp) -> (pb::Customer, Vec<pb::Note>) {
    let mut client = app.client.clone();
    let customer = app
        .register(pb::Customer {
            external_ids: labels(&[("crm", "4711")]),
            ..new_customer("Export", "Person")
        })
        .await;
    let mut notes = Vec::new();
    for text in ["first note", "second note"] {
        notes.push(
            client
                .create_note(pb::CreateNoteRequest {
                    parent: customer.name.clone(),
                    note: Some(pb::Note {
                        text: text.into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                })
                .await
                .unwrap()
                .into_inner(),
        );
    }
    client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: customer.name.clone(),
                phone: "+4930123456".into(),
                ..Default::default()
            }),
            update_mask: None,
            request_id: String::new(),
            allow_missing: false,
        })
        .await
        .unwrap();
    client
        .delete_customer(pb::DeleteCustomerRequest {
            name: customer.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    notes.reverse();
    (customer, notes)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_export_holds_the_customer_its_notes_and_its_audit_trail_even_when_deleted() {
    let app = TestApp::spawn().await;
    let (customer, notes) = customer_with_a_history(&app).await;
    let other = app.create("Someone", "Else").await;

    let response = app
        .client
        .clone()
        .export_customer_data(export(&customer.name))
        .await
        .unwrap();

    assert_eq!(
        response.metadata().get("content-disposition").unwrap(),
        format!("attachment; filename=\"customer-{}.json\"", customer.uid).as_str()
    );
    let document = response.into_inner();
    let exported = document.customer.unwrap();
    assert_eq!(exported.name, customer.name);
    assert_eq!(exported.email, customer.email);
    assert_eq!(exported.phone, "+4930123456");
    assert_eq!(exported.external_ids, labels(&[("crm", "4711")]));
    assert!(exported.delete_time.is_some());
    assert_eq!(exported.business_info, None);
    assert_eq!(document.notes, notes, "newest first");
    let kinds: Vec<&str> = document.events.iter().map(kind).collect();
    assert_eq!(
        kinds,
        [
            "registered",
            "note_added",
            "note_added",
            "updated",
            "deleted"
        ]
    );
    assert!(
        document
            .events
            .iter()
            .all(|event| event.customer == customer.name && event.resume_token.is_empty())
    );
    assert!(document.export_time.is_some());
    // Nothing of anyone else.
    assert!(!format!("{:?}", document.events).contains(&other.email));
}

#[tokio::test(flavor = "multi_thread")]
async fn over_rest_the_export_is_a_json_download() {
    let app = TestApp::spawn().await;
    let (customer, _) = customer_with_a_history(&app).await;

    let path = format!("/v1/{}:exportData", customer.name);
    let (status, headers, json) = rest::call(&app, false, Method::GET, &path, None, &[]).await;

    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        headers["content-disposition"],
        format!("attachment; filename=\"customer-{}.json\"", customer.uid).as_str()
    );
    assert_eq!(json["customer"]["email"], customer.email.as_str());
    assert_eq!(json["customer"]["externalIds"]["crm"], "4711");
    assert_eq!(json["notes"].as_array().unwrap().len(), 2);
    assert_eq!(json["events"].as_array().unwrap().len(), 5);
    let missing = format!("/v1/customers/{}:exportData", uuid::Uuid::now_v7());
    let (status, _, json) = rest::call(&app, false, Method::GET, &missing, None, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{json}");
    assert_eq!(rest::error_reason(&json), "RESOURCE_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_export_needs_the_privacy_scope_and_a_customer_name() {
    let app = TestApp::spawn().await;
    let customer = app.create("Scoped", "Export").await;

    let denied = app
        .client_with(Some(&scoped(&["customers.read", "customers.write"])))
        .export_customer_data(export(&customer.name))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("customers.privacy"), "{denied:?}");
    let allowed = app
        .client_with(Some(&scoped(&["customers.privacy"])))
        .export_customer_data(export(&customer.name))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(allowed.customer.unwrap().name, customer.name);
    let invalid = app
        .client
        .clone()
        .export_customer_data(export("companies/nope"))
        .await
        .unwrap_err();
    assert_invalid(&invalid, "INVALID_FIELDS", &["name"]);
    let missing = app
        .client
        .clone()
        .export_customer_data(export(&format!("customers/{}", uuid::Uuid::now_v7())))
        .await
        .unwrap_err();
    assert_reason(&missing, Code::NotFound, "RESOURCE_NOT_FOUND");

    let (parts, body) = transport::grpc_web(
        &app,
        "ExportCustomerData",
        transport::frame(&export(&customer.name)),
        "application/grpc-web+proto",
    )
    .await;
    assert_eq!(parts.status, 200);
    let (data, trailers) = transport::unframe(&body);
    assert_eq!(transport::trailer(&trailers, "grpc-status"), Some("0"));
    let document = pb::CustomerDataExport::decode(data[0].as_slice()).unwrap();
    assert_eq!(document.customer.unwrap().email, customer.email);
    assert_eq!(document.events.len(), 1);
}

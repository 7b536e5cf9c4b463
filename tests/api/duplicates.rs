//! FindDuplicateCustomers (issue 19): candidates by normal email, local part, E.164 phone,
//! trigram-similar names and external ids, scored and ranked, paged; over gRPC, gRPC-web and
//! REST, with AIP-193 errors.

use customer_api::pb;
use http::{Method, StatusCode};
use prost::Message;
use serde_json::json;
use tonic::Code;

use crate::{
    helpers::scoped,
    helpers::{TestApp, assert_invalid, assert_reason, labels},
    rest, transport,
};

use pb::DuplicateReason as R;

fn person(given: &str, family: &str, email: &str, phone: &str) -> pb::Customer {
    pb::Customer {
        given_name: given.into(),
        family_name: family.into(),
        email: email.into(),
        phone: phone.into(),
        ..Default::default()
    }
}

/// The target and its look-alikes, each matching by one thing, plus an unrelated customer
/// and a deleted duplicate (never a candidate).
struct Population {
    target: pb::Customer,
    by_email: pb::Customer,
    by_phone: pb::Customer,
    by_name: pb::Customer,
    by_local_part: pb::Customer,
}

async fn population(app: &TestApp) -> Population {
    let target = app
        .register(pb::Customer {
            external_ids: labels(&[("crm", "d-1")]),
            ..person(
                "Annabelle",
                "Lee",
                "annabelle.lee@example.org",
                "+4930111222",
            )
        })
        .await;
    let by_email = app
        .register(person(
            "Xavier",
            "Quist",
            "Annabelle.Lee+shop@Example.org",
            "",
        ))
        .await;
    let by_phone = app
        .register(person("Bob", "Other", "bob@other.example", "+4930111222"))
        .await;
    let by_name = app
        .register(person("Annabelle", "Lee", "someone@else.example", ""))
        .await;
    let by_local_part = app
        .register(person("Zed", "Zulu", "annabelle.lee@other.example", ""))
        .await;
    app.register(person("Carl", "Different", "carl@different.example", ""))
        .await;
    let deleted = app
        .register(person("Old", "Copy", "annabelle.lee+old@example.org", ""))
        .await;
    app.client
        .clone()
        .delete_customer(pb::DeleteCustomerRequest {
            name: deleted.name,
            ..Default::default()
        })
        .await
        .unwrap();
    Population {
        target,
        by_email,
        by_phone,
        by_name,
        by_local_part,
    }
}

fn by_name(name: &str, page_size: i32, page_token: &str) -> pb::FindDuplicateCustomersRequest {
    pb::FindDuplicateCustomersRequest {
        name: name.to_owned(),
        customer: None,
        page_size,
        page_token: page_token.to_owned(),
    }
}

/// (customer name, score, reasons) of each candidate.
fn ranked(response: &pb::FindDuplicateCustomersResponse) -> Vec<(String, f64, Vec<R>)> {
    response
        .candidates
        .iter()
        .map(|c| {
            (
                c.customer.as_ref().unwrap().name.clone(),
                c.score,
                c.reasons().collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_of_a_stored_customer_are_ranked_by_what_matches_and_paged() {
    let app = TestApp::spawn().await;
    let people = population(&app).await;
    let mut client = app.client.clone();

    let first = client
        .find_duplicate_customers(by_name(&people.target.name, 2, ""))
        .await
        .unwrap()
        .into_inner();
    let second = client
        .find_duplicate_customers(by_name(&people.target.name, 2, &first.next_page_token))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(
        ranked(&first),
        [
            (people.by_email.name.clone(), 0.9, vec![R::SameEmail]),
            (people.by_phone.name.clone(), 0.7, vec![R::SamePhone]),
        ]
    );
    assert_eq!(
        ranked(&second),
        [
            (people.by_name.name.clone(), 0.6, vec![R::SimilarName]),
            (
                people.by_local_part.name.clone(),
                0.3,
                vec![R::SameEmailLocalPart]
            ),
        ]
    );
    assert_eq!(second.next_page_token, "");
    // A token belongs to its probe.
    let other_probe = client
        .find_duplicate_customers(by_name(&people.by_phone.name, 2, &first.next_page_token))
        .await
        .unwrap_err();
    assert_invalid(&other_probe, "INVALID_PAGE_TOKEN", &["page_token"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_of_values_match_external_ids_and_rest_and_grpc_web_serve_them() {
    let app = TestApp::spawn().await;
    let people = population(&app).await;

    let body = json!({"customer": {
        "givenName": "Annabelle", "familyName": "Lee", "email": "ANNABELLE.LEE@example.org",
        "externalIds": {"crm": "d-1"},
    }})
    .to_string();
    let (status, _, json) = rest::call(
        &app,
        false,
        Method::POST,
        "/v1/customers:findDuplicates",
        Some(&body),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let candidates = json["candidates"].as_array().unwrap();
    let names: Vec<&str> = candidates
        .iter()
        .map(|c| c["customer"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            people.target.name.as_str(),
            &people.by_email.name,
            &people.by_name.name,
            &people.by_local_part.name,
        ]
    );
    assert_eq!(candidates[0]["score"], 1.0);
    assert_eq!(
        candidates[0]["reasons"],
        json!(["SAME_EMAIL", "SAME_EXTERNAL_ID", "SIMILAR_NAME"])
    );

    let path = format!("/v1/{}:findDuplicates?pageSize=1", people.target.name);
    let (status, _, json) = rest::call(&app, false, Method::GET, &path, None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(
        json["candidates"][0]["customer"]["name"],
        people.by_email.name.as_str()
    );
    assert_eq!(json["candidates"][0]["reasons"], json!(["SAME_EMAIL"]));
    assert!(!json["nextPageToken"].as_str().unwrap().is_empty());

    let (parts, body) = transport::grpc_web(
        &app,
        "FindDuplicateCustomers",
        transport::frame(&by_name(&people.by_phone.name, 0, "")),
        "application/grpc-web+proto",
    )
    .await;
    assert_eq!(parts.status, 200);
    let (data, trailers) = transport::unframe(&body);
    assert_eq!(transport::trailer(&trailers, "grpc-status"), Some("0"));
    let found = pb::FindDuplicateCustomersResponse::decode(data[0].as_slice()).unwrap();
    assert_eq!(
        ranked(&found),
        [(people.target.name.clone(), 0.7, vec![R::SamePhone])]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_probe_is_a_name_or_values_never_both_nor_neither() {
    let app = TestApp::spawn().await;
    let customer = app
        .register(person("Probe", "Errors", "probe.errors@example.org", ""))
        .await;
    let mut client = app.client.clone();
    let values = |customer: pb::Customer| pb::FindDuplicateCustomersRequest {
        customer: Some(customer),
        ..Default::default()
    };

    for (request, fields) in [
        (pb::FindDuplicateCustomersRequest::default(), vec!["name"]),
        (
            pb::FindDuplicateCustomersRequest {
                name: customer.name.clone(),
                ..values(person("A", "B", "", ""))
            },
            vec!["customer"],
        ),
        (values(pb::Customer::default()), vec!["customer"]),
        (
            pb::FindDuplicateCustomersRequest {
                page_size: -1,
                ..values(person("", "", "", "call me"))
            },
            vec!["page_size", "customer.phone"],
        ),
        (by_name("customers/nope", 0, ""), vec!["name"]),
        // Each value given is checked as a customer's.
        (
            values(pb::Customer {
                company: "acme".into(),
                ..person("", "", "not-an-email", "")
            }),
            vec!["customer.email", "customer.company"],
        ),
    ] {
        let status = client.find_duplicate_customers(request).await.unwrap_err();
        assert_invalid(&status, "INVALID_FIELDS", &fields);
    }
    let missing = client
        .find_duplicate_customers(by_name(
            &format!("customers/{}", uuid::Uuid::now_v7()),
            0,
            "",
        ))
        .await
        .unwrap_err();
    assert_reason(&missing, Code::NotFound, "RESOURCE_NOT_FOUND");
    let denied = app
        .client_with(Some(&scoped(&["customers.privacy"])))
        .find_duplicate_customers(by_name(&customer.name, 0, ""))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("customers.read"), "{denied:?}");
    // None is required: an email alone is a probe.
    let by_email = client
        .find_duplicate_customers(values(person("", "", "Probe.Errors@example.org", "")))
        .await
        .unwrap()
        .into_inner();
    let found: Vec<&str> = by_email
        .candidates
        .iter()
        .map(|candidate| candidate.customer.as_ref().unwrap().name.as_str())
        .collect();
    assert_eq!(found, [customer.name.as_str()]);
    let none = client
        .find_duplicate_customers(by_name(&customer.name, 0, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none.candidates, vec![]);
}

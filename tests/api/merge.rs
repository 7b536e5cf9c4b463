//! MergeCustomers and UnmergeCustomers (issue 19): duplicates merged into one customer in
//! one transaction (notes, external ids and labels move, sources retire with `merged_into`),
//! undone from the merge record; etag-checked, retry-safe, audited, published to NATS; over
//! gRPC, gRPC-web and REST with AIP-193 errors and scopes. Also CreateCustomer's
//! `duplicate_policy` (WARN, REJECT).

use customer_api::pb;
use http::{Method, StatusCode};
use prost::Message;
use serde_json::json;
use tonic::Code;
use tonic_types::{ErrorDetail, StatusExt};

use crate::{
    events::{header, jetstream_context, kind, list_all, private_stream, stream_messages},
    helpers::{TestApp, assert_invalid, assert_reason, labels, nats_url, new_customer, scoped},
    rest, transport,
};

fn uuid() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn merge_request(target: &str, sources: &[&str]) -> pb::MergeCustomersRequest {
    pb::MergeCustomersRequest {
        target: target.to_owned(),
        sources: sources.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

async fn add_note(app: &TestApp, customer: &str, text: &str) -> pb::Note {
    app.client
        .clone()
        .create_note(pb::CreateNoteRequest {
            parent: customer.to_owned(),
            note: Some(pb::Note {
                text: text.to_owned(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn notes_of(app: &TestApp, customer: &str) -> Vec<(String, String)> {
    let page = app
        .client
        .clone()
        .list_notes(pb::ListNotesRequest {
            parent: customer.to_owned(),
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut notes: Vec<(String, String)> =
        page.notes.into_iter().map(|n| (n.name, n.text)).collect();
    notes.sort();
    notes
}

/// Three records of one person: the target (a label, an external id, a phone-less record)
/// and two sources, each with a note, an external id and a label.
struct Family {
    target: pb::Customer,
    first: pb::Customer,
    second: pb::Customer,
    notes: Vec<pb::Note>,
}

async fn family(app: &TestApp) -> Family {
    let target = app
        .register(pb::Customer {
            labels: labels(&[("tier", "gold")]),
            external_ids: labels(&[("crm", "c-1")]),
            ..new_customer("Ann", "Lee")
        })
        .await;
    let first = app
        .register(pb::Customer {
            phone: "+4930111222".into(),
            labels: labels(&[("tier", "silver"), ("source", "shop")]),
            external_ids: labels(&[("shop", "s-1")]),
            ..new_customer("Anne", "Lee")
        })
        .await;
    let second = app
        .register(pb::Customer {
            phone: "+4930999888".into(),
            external_ids: labels(&[("erp", "e-1")]),
            ..new_customer("Annie", "Lee")
        })
        .await;
    let notes = vec![
        add_note(app, &target.name, "target note").await,
        add_note(app, &first.name, "first note").await,
        add_note(app, &second.name, "second note").await,
    ];
    Family {
        target,
        first,
        second,
        notes,
    }
}

fn note_id(note: &pb::Note) -> &str {
    note.name.rsplit_once("/notes/").unwrap().1
}

#[tokio::test(flavor = "multi_thread")]
async fn merging_three_records_moves_notes_external_ids_and_labels_and_retires_the_sources() {
    let app = TestApp::spawn().await;
    let people = family(&app).await;
    let mut client = app.client.clone();

    let merged = client
        .merge_customers(pb::MergeCustomersRequest {
            field_policy: Some(pb::FieldPolicy {
                choices: labels(&[("email", &people.second.name)]),
            }),
            etag: people.target.etag.clone(),
            request_id: uuid(),
            ..merge_request(
                &people.target.name,
                &[&people.first.name, &people.second.name],
            )
        })
        .await
        .unwrap()
        .into_inner();

    let customer = merged.customer.clone().unwrap();
    assert_eq!(customer.name, people.target.name);
    assert_eq!(customer.given_name, "Ann");
    assert_eq!(customer.email, people.second.email);
    assert_eq!(customer.phone, "+4930111222");
    assert_eq!(
        customer.labels,
        labels(&[("source", "shop"), ("tier", "gold")])
    );
    assert_eq!(
        customer.external_ids,
        labels(&[("crm", "c-1"), ("erp", "e-1"), ("shop", "s-1")])
    );
    assert_eq!(customer.etag, "W/\"2\"");
    assert_eq!(customer.merged_into, "");
    let merge = merged.merge.clone().unwrap();
    assert_eq!(merge.target, people.target.name);
    assert_eq!(
        merge.sources,
        [people.first.name.clone(), people.second.name.clone()]
    );
    assert_eq!(
        merge.changed_fields.unwrap().paths,
        ["email", "phone", "labels", "external_ids"]
    );
    assert_eq!(merge.actor, "test-user");
    assert!(
        merge
            .name
            .starts_with(&format!("{}/merges/", people.target.name))
    );
    assert_eq!(merge.unmerge_time, None);
    let moved: Vec<(String, String)> = merge
        .moved_notes
        .iter()
        .map(|m| (m.previous_name.clone(), m.name.clone()))
        .collect();
    assert_eq!(
        moved,
        [
            (
                people.notes[1].name.clone(),
                format!("{}/notes/{}", people.target.name, note_id(&people.notes[1]))
            ),
            (
                people.notes[2].name.clone(),
                format!("{}/notes/{}", people.target.name, note_id(&people.notes[2]))
            ),
        ]
    );
    // The sources: soft-deleted, pointing at the target, their external ids gone with them.
    for (answered, before) in merged.sources.iter().zip([&people.first, &people.second]) {
        let read = app.get_customer(&before.name).await.unwrap();
        assert_eq!(&read, answered);
        assert_eq!(read.merged_into, people.target.name);
        assert!(read.delete_time.is_some());
        assert_eq!(read.external_ids, Default::default());
        assert_eq!(read.etag, "W/\"2\"");
    }
    // Every note is the target's now; the sources have none.
    let mut expected: Vec<(String, String)> = people
        .notes
        .iter()
        .map(|n| {
            (
                format!("{}/notes/{}", people.target.name, note_id(n)),
                n.text.clone(),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(notes_of(&app, &people.target.name).await, expected);
    // The external ids find the target.
    let found = client
        .lookup_customer(pb::LookupCustomerRequest {
            source: "shop".into(),
            external_id: "s-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.name, people.target.name);
    // One event per customer: the target's merge, each source's deletion.
    let target_events = list_all(&app, &people.target.name, "").await;
    let kinds: Vec<&str> = target_events.iter().map(kind).collect();
    assert_eq!(kinds, ["registered", "note_added", "merged"]);
    let Some(pb::customer_event::Kind::Merged(event)) = &target_events[2].kind else {
        panic!("not a merge: {:?}", target_events[2]);
    };
    assert_eq!(event.merge, merge.name);
    assert_eq!(event.sources, merge.sources);
    assert_eq!(event.moved_notes, merge.moved_notes);
    assert_eq!(
        event.previous.as_ref().unwrap().email,
        people.target.email.clone()
    );
    assert_eq!(target_events[2].sequence, 2);
    for source in [&people.first, &people.second] {
        let events = list_all(&app, &source.name, "").await;
        let kinds: Vec<&str> = events.iter().map(kind).collect();
        assert_eq!(kinds, ["registered", "note_added", "deleted"]);
        assert_eq!(
            events[2].snapshot.as_ref().unwrap().merged_into,
            people.target.name
        );
    }
    // The audit record.
    assert_eq!(
        app.count(
            "customer_merges",
            &format!(
                "actor = 'test-user' AND target_id = '{}' AND cardinality(source_ids) = 2",
                customer.uid
            )
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unmerge_restores_the_sources_the_target_and_the_notes_exactly() {
    let app = TestApp::spawn().await;
    let people = family(&app).await;
    let mut client = app.client.clone();
    let before = (
        app.get_customer(&people.target.name).await.unwrap(),
        app.get_customer(&people.first.name).await.unwrap(),
        app.get_customer(&people.second.name).await.unwrap(),
    );
    let notes_before = [
        notes_of(&app, &people.target.name).await,
        notes_of(&app, &people.first.name).await,
        notes_of(&app, &people.second.name).await,
    ];
    // The target takes the second's email: the unmerge must give it back before the second
    // can have it again.
    let merged = client
        .merge_customers(pb::MergeCustomersRequest {
            field_policy: Some(pb::FieldPolicy {
                choices: labels(&[("email", &people.second.name)]),
            }),
            ..merge_request(
                &people.target.name,
                &[&people.first.name, &people.second.name],
            )
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(merged.customer.unwrap().email, people.second.email);
    let merge_name = merged.merge.unwrap().name;

    let unmerged = client
        .unmerge_customers(pb::UnmergeCustomersRequest {
            name: people.target.name.clone(),
            request_id: uuid(),
        })
        .await
        .unwrap()
        .into_inner();

    // Every field as before; only the version (and with it etag and update time) moved on.
    let same = |mut now: pb::Customer, was: &pb::Customer, etag: &str| {
        assert_eq!(now.etag, etag);
        now.etag = was.etag.clone();
        now.update_time = was.update_time;
        assert_eq!(&now, was);
    };
    same(unmerged.customer.clone().unwrap(), &before.0, "W/\"3\"");
    same(unmerged.sources[0].clone(), &before.1, "W/\"3\"");
    same(unmerged.sources[1].clone(), &before.2, "W/\"3\"");
    same(
        app.get_customer(&people.first.name).await.unwrap(),
        &before.1,
        "W/\"3\"",
    );
    assert_eq!(
        [
            notes_of(&app, &people.target.name).await,
            notes_of(&app, &people.first.name).await,
            notes_of(&app, &people.second.name).await,
        ],
        notes_before
    );
    let merge = unmerged.merge.unwrap();
    assert_eq!(merge.name, merge_name);
    assert_eq!(merge.unmerged_by, "test-user");
    assert!(merge.unmerge_time.is_some());
    // The sources' external ids are theirs again.
    let found = client
        .lookup_customer(pb::LookupCustomerRequest {
            source: "erp".into(),
            external_id: "e-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.name, people.second.name);
    let kinds: Vec<String> = list_all(&app, &people.target.name, "")
        .await
        .iter()
        .map(|e| kind(e).to_owned())
        .collect();
    assert_eq!(kinds, ["registered", "note_added", "merged", "unmerged"]);
    let kinds: Vec<String> = list_all(&app, &people.first.name, "")
        .await
        .iter()
        .map(|e| kind(e).to_owned())
        .collect();
    assert_eq!(kinds, ["registered", "note_added", "deleted", "undeleted"]);
    // Undone once: the merge by name says so; the target has no merge left to undo.
    let again = client
        .unmerge_customers(pb::UnmergeCustomersRequest {
            name: merge_name.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_reason(&again, Code::FailedPrecondition, "MERGE_ALREADY_UNDONE");
    let none = client
        .unmerge_customers(pb::UnmergeCustomersRequest {
            name: people.target.name.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_reason(&none, Code::NotFound, "RESOURCE_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merge_retried_with_its_request_id_gets_the_same_answer_and_merges_once() {
    let app = TestApp::spawn().await;
    let people = family(&app).await;
    let mut client = app.client.clone();
    let request = pb::MergeCustomersRequest {
        request_id: uuid(),
        ..merge_request(&people.target.name, &[&people.first.name])
    };

    let first = client
        .merge_customers(request.clone())
        .await
        .unwrap()
        .into_inner();
    let retried = client
        .merge_customers(request.clone())
        .await
        .unwrap()
        .into_inner();

    assert_eq!(retried, first);
    assert_eq!(app.count("customer_merges", "").await, 1);
    assert_eq!(
        app.get_customer(&people.target.name).await.unwrap().etag,
        "W/\"2\""
    );
    let reused = client
        .merge_customers(pb::MergeCustomersRequest {
            sources: vec![people.second.name.clone()],
            ..request
        })
        .await
        .unwrap_err();
    assert_invalid(&reused, "REQUEST_ID_REUSED", &["request_id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merge_and_an_update_with_the_same_etag_race_and_exactly_one_wins() {
    let app = TestApp::spawn().await;
    let people = family(&app).await;
    let etag = people.target.etag.clone();

    let mut merging = app.client.clone();
    let merge = merging.merge_customers(pb::MergeCustomersRequest {
        etag: etag.clone(),
        ..merge_request(&people.target.name, &[&people.first.name])
    });
    let mut updating = app.client.clone();
    let update = updating.update_customer(pb::UpdateCustomerRequest {
        customer: Some(pb::Customer {
            name: people.target.name.clone(),
            given_name: "Annabel".into(),
            etag: etag.clone(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["given_name".into()],
        }),
        ..Default::default()
    });
    let (merged, updated) = tokio::join!(merge, update);

    let target = app.get_customer(&people.target.name).await.unwrap();
    let source = app.get_customer(&people.first.name).await.unwrap();
    match (merged, updated) {
        (Ok(_), Err(lost)) => {
            assert_reason(&lost, Code::Aborted, "ETAG_MISMATCH");
            assert_eq!(
                (target.given_name.as_str(), source.merged_into.as_str()),
                ("Ann", people.target.name.as_str())
            );
        }
        (Err(lost), Ok(_)) => {
            assert_reason(&lost, Code::Aborted, "ETAG_MISMATCH");
            assert_eq!(
                (target.given_name.as_str(), source.merged_into.as_str()),
                ("Annabel", "")
            );
            assert_eq!(app.count("customer_merges", "").await, 0);
        }
        other => panic!("exactly one must win: {other:?}"),
    }
    assert_eq!(target.etag, "W/\"2\"");
}

#[tokio::test(flavor = "multi_thread")]
async fn merges_that_cannot_be_are_refused_with_aip_193_errors_and_scopes() {
    let app = TestApp::spawn().await;
    let people = family(&app).await;
    let mut client = app.client.clone();
    let target = people.target.name.as_str();
    let first = people.first.name.as_str();
    let eleven: Vec<String> = (0..11).map(|_| format!("customers/{}", uuid())).collect();
    let eleven: Vec<&str> = eleven.iter().map(String::as_str).collect();

    for (request, fields) in [
        (merge_request("", &[]), vec!["target", "sources"]),
        (merge_request(target, &[target]), vec!["sources[0]"]),
        (merge_request(target, &[first, first]), vec!["sources[1]"]),
        (merge_request(target, &eleven), vec!["sources"]),
        (merge_request(target, &["nope"]), vec!["sources[0]"]),
        (
            pb::MergeCustomersRequest {
                field_policy: Some(pb::FieldPolicy {
                    choices: labels(&[("labels", first), ("email", target)]),
                }),
                request_id: "not-a-uuid".into(),
                ..merge_request(target, &[first])
            },
            vec![
                "field_policy.choices[\"email\"]",
                "field_policy.choices[\"labels\"]",
                "request_id",
            ],
        ),
    ] {
        let status = client.merge_customers(request).await.unwrap_err();
        assert_invalid(&status, "INVALID_FIELDS", &fields);
    }
    let missing = format!("customers/{}", uuid());
    let status = client
        .merge_customers(merge_request(target, &[&missing]))
        .await
        .unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
    let stale = client
        .merge_customers(pb::MergeCustomersRequest {
            etag: "W/\"9\"".into(),
            ..merge_request(target, &[first])
        })
        .await
        .unwrap_err();
    assert_reason(&stale, Code::Aborted, "ETAG_MISMATCH");
    app.delete_customer(&people.second.name).await.unwrap();
    let deleted = client
        .merge_customers(merge_request(target, &[&people.second.name]))
        .await
        .unwrap_err();
    assert_reason(&deleted, Code::FailedPrecondition, "CUSTOMER_DELETED");
    // Nothing was written by the refusals.
    assert_eq!(app.count("customer_merges", "").await, 0);

    client
        .merge_customers(merge_request(target, &[first]))
        .await
        .unwrap();
    let other = app.create("Other", "Target").await;
    let merged_already = client
        .merge_customers(merge_request(&other.name, &[first]))
        .await
        .unwrap_err();
    assert_reason(&merged_already, Code::FailedPrecondition, "CUSTOMER_MERGED");
    let into_merged = client
        .merge_customers(merge_request(first, &[&other.name]))
        .await
        .unwrap_err();
    assert_reason(&into_merged, Code::FailedPrecondition, "CUSTOMER_DELETED");
    let undelete = app.undelete_customer(first).await.unwrap_err();
    assert_reason(&undelete, Code::FailedPrecondition, "CUSTOMER_MERGED");
    let unmerge_missing = client
        .unmerge_customers(pb::UnmergeCustomersRequest {
            name: format!("{target}/merges/{}", uuid()),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_reason(&unmerge_missing, Code::NotFound, "RESOURCE_NOT_FOUND");
    let bad_name = client
        .unmerge_customers(pb::UnmergeCustomersRequest {
            name: "merges/1".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(&bad_name, "INVALID_FIELDS", &["name"]);

    // customers.write (or nothing): a reader may not merge or unmerge.
    let mut reader = app.client_with(Some(&scoped(&["customers.read"])));
    let denied = reader
        .merge_customers(merge_request(&other.name, &[target]))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("customers.write"), "{denied:?}");
    let denied = reader
        .unmerge_customers(pb::UnmergeCustomersRequest {
            name: target.to_owned(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn merge_and_unmerge_over_rest_and_grpc_web() {
    let app = TestApp::spawn().await;
    let people = family(&app).await;
    let path = format!("/v1/{}:merge", people.target.name);
    let body = json!({"sources": [people.first.name], "requestId": uuid()}).to_string();

    // If-Match is the target's etag: a stale one is 412.
    let (status, _, error) = rest::call(
        &app,
        false,
        Method::POST,
        &path,
        Some(&body),
        &[("if-match", "W/\"7\"")],
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{error}");
    assert_eq!(error["error"]["status"], "ABORTED");
    assert_eq!(error["error"]["details"][0]["reason"], "ETAG_MISMATCH");
    let (status, _, merged) = rest::call(
        &app,
        false,
        Method::POST,
        &path,
        Some(&body),
        &[("if-match", &people.target.etag)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{merged}");
    assert_eq!(merged["customer"]["name"], people.target.name.as_str());
    assert_eq!(
        merged["sources"][0]["mergedInto"],
        people.target.name.as_str()
    );
    assert_eq!(merged["merge"]["sources"], json!([people.first.name]));
    let merge_name = merged["merge"]["name"].as_str().unwrap().to_owned();
    // A source is read as it is, with where it went.
    let (status, _, source) = rest::call(
        &app,
        false,
        Method::GET,
        &format!("/v1/{}", people.first.name),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(source["mergedInto"], people.target.name.as_str());
    // A refusal is an AIP-193 body; a reader is forbidden.
    let self_merge = json!({"sources": [people.target.name]}).to_string();
    let (status, _, error) =
        rest::call(&app, false, Method::POST, &path, Some(&self_merge), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["status"], "INVALID_ARGUMENT");
    let reader = scoped(&["customers.read"]);
    let (status, _, _) = rest::call(
        &app,
        false,
        Method::POST,
        &path,
        Some(&self_merge),
        &[("authorization", &reader)],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, _, unmerged) = rest::call(
        &app,
        false,
        Method::POST,
        &format!("/v1/{merge_name}:unmerge"),
        Some("{}"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{unmerged}");
    assert_eq!(unmerged["merge"]["name"], merge_name.as_str());
    assert_eq!(unmerged["sources"][0]["mergedInto"], "");
    assert_eq!(unmerged["sources"][0].get("deleteTime"), None);

    // gRPC-web: the same RPCs, the same errors.
    let request = merge_request(&people.target.name, &[&people.second.name]);
    let (parts, body) = transport::grpc_web(
        &app,
        "MergeCustomers",
        transport::frame(&request),
        "application/grpc-web+proto",
    )
    .await;
    assert_eq!(parts.status, 200);
    let (data, trailers) = transport::unframe(&body);
    assert_eq!(transport::trailer(&trailers, "grpc-status"), Some("0"));
    let merged = pb::MergeCustomersResponse::decode(data[0].as_slice()).unwrap();
    assert_eq!(merged.sources[0].merged_into, people.target.name);
    let (parts, body) = transport::grpc_web(
        &app,
        "UnmergeCustomers",
        transport::frame(&pb::UnmergeCustomersRequest {
            name: "customers/x".into(),
            request_id: String::new(),
        }),
        "application/grpc-web+proto",
    )
    .await;
    // An error without a message: trailers-only, the status in the headers.
    assert_eq!(body, b"");
    assert_eq!(parts.headers["grpc-status"], "3");
    assert!(parts.headers.contains_key("grpc-status-details-bin"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_nats_stream_carries_customers_merged_and_the_sources_deletions() {
    let url = nats_url();
    let (stream, prefix) = private_stream();
    let app = TestApp::spawn_with(|settings| {
        settings.events.nats_url = Some(url.clone());
        settings.events.nats_stream = stream.clone();
        settings.events.nats_subject_prefix = prefix.clone();
    })
    .await;
    let target = app.create("Ann", "Lee").await;
    let source = app.create("Anne", "Lee").await;
    let js = jetstream_context(&url).await;
    stream_messages(&js, &stream, 2).await;

    let merged = app
        .client
        .clone()
        .merge_customers(merge_request(&target.name, &[&source.name]))
        .await
        .unwrap()
        .into_inner();

    let messages = stream_messages(&js, &stream, 4).await;
    let published: Vec<(&str, &str, String)> = messages[2..]
        .iter()
        .map(|m| {
            (
                header(m, "ce-type"),
                header(m, "ce-subject"),
                m.subject.to_string(),
            )
        })
        .collect();
    assert_eq!(
        published,
        [
            (
                "customer.v1.CustomerDeleted",
                source.name.as_str(),
                format!("{prefix}.deleted")
            ),
            (
                "customer.v1.CustomersMerged",
                target.name.as_str(),
                format!("{prefix}.merged")
            ),
        ]
    );
    let event = pb::CustomerEvent::decode(messages[3].payload.as_ref()).unwrap();
    let Some(pb::customer_event::Kind::Merged(body)) = event.kind else {
        panic!("not a merge: {event:?}");
    };
    assert_eq!(body.merge, merged.merge.unwrap().name);
    assert_eq!(body.sources, vec![source.name.clone()]);
    js.delete_stream(&stream).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_policy_warn_names_the_candidates_and_reject_refuses_with_them() {
    let app = TestApp::spawn().await;
    let existing = app
        .register(pb::Customer {
            phone: "+4930555666".into(),
            ..new_customer("Dora", "Dupe")
        })
        .await;
    let mut client = app.client.clone();
    let look_alike = || pb::Customer {
        phone: "+4930555666".into(),
        ..new_customer("Theodora", "Other")
    };
    let create = |policy: pb::DuplicatePolicy, customer: pb::Customer, request_id: &str| {
        pb::CreateCustomerRequest {
            customer: Some(customer),
            request_id: request_id.to_owned(),
            duplicate_policy: policy as i32,
        }
    };

    // REJECT: ALREADY_EXISTS naming the candidates; nothing registered.
    let refused = client
        .create_customer(create(pb::DuplicatePolicy::Reject, look_alike(), &uuid()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    let details = refused.get_error_details_vec();
    let [
        ErrorDetail::ErrorInfo(info),
        ErrorDetail::ResourceInfo(resource),
    ] = details.as_slice()
    else {
        panic!("ErrorInfo and one ResourceInfo: {details:?}");
    };
    assert_eq!(info.reason, "DUPLICATE_CUSTOMER");
    assert_eq!(info.metadata["candidates"], existing.name);
    assert_eq!(resource.resource_name, existing.name);
    assert_eq!(resource.resource_type, "customer.example.com/Customer");
    assert_eq!(app.count("customers", "").await, 1);
    // REJECT without look-alikes registers.
    let unique = client
        .create_customer(create(
            pb::DuplicatePolicy::Reject,
            new_customer("Unique", "Person"),
            "",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unique.given_name, "Unique");

    // WARN: registered, the candidates in the response metadata; a retry answers the same.
    let request_id = uuid();
    let customer = look_alike();
    let warned = client
        .create_customer(create(
            pb::DuplicatePolicy::Warn,
            customer.clone(),
            &request_id,
        ))
        .await
        .unwrap();
    assert_eq!(
        warned.metadata().get("duplicate-candidates").unwrap(),
        existing.name.as_str()
    );
    let warned = warned.into_inner();
    let retried = client
        .create_customer(create(pb::DuplicatePolicy::Warn, customer, &request_id))
        .await
        .unwrap();
    assert_eq!(
        retried.metadata().get("duplicate-candidates").unwrap(),
        existing.name.as_str()
    );
    assert_eq!(retried.into_inner(), warned);
    assert_eq!(app.count("customers", "").await, 3);
    // ALLOW (and unset) do not look.
    let allowed = client
        .create_customer(create(pb::DuplicatePolicy::Allow, look_alike(), ""))
        .await
        .unwrap();
    assert_eq!(allowed.metadata().get("duplicate-candidates"), None);
    let unknown = client
        .create_customer(pb::CreateCustomerRequest {
            duplicate_policy: 9,
            ..create(pb::DuplicatePolicy::Warn, look_alike(), "")
        })
        .await
        .unwrap_err();
    assert_invalid(&unknown, "INVALID_FIELDS", &["duplicate_policy"]);

    // Over REST: the header, and the 409 body with the details.
    let mut body = json!({
        "givenName": "Thea", "familyName": "Else", "email": "thea.else@example.com",
        "phone": "+4930555666",
    });
    let (status, headers, created) = rest::call(
        &app,
        false,
        Method::POST,
        "/v1/customers?duplicatePolicy=WARN",
        Some(&body.to_string()),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let candidates = headers["duplicate-candidates"].to_str().unwrap().to_owned();
    assert!(candidates.starts_with(&existing.name), "{candidates}");
    body["email"] = json!("thea.else.2@example.com");
    let (status, _, error) = rest::call(
        &app,
        false,
        Method::POST,
        "/v1/customers?duplicatePolicy=REJECT",
        Some(&body.to_string()),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert_eq!(error["error"]["status"], "ALREADY_EXISTS");
    assert_eq!(error["error"]["details"][0]["reason"], "DUPLICATE_CUSTOMER");
    // Thea herself (registered above) first: the same name and phone.
    assert_eq!(
        error["error"]["details"][0]["metadata"]["candidates"],
        format!("{},{candidates}", created["name"].as_str().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn erasing_a_merged_source_forgets_the_merge_record_and_its_undo() {
    let app = TestApp::spawn().await;
    let people = family(&app).await;
    let mut client = app.client.clone();
    client
        .merge_customers(merge_request(&people.target.name, &[&people.first.name]))
        .await
        .unwrap();
    assert_eq!(app.count("customer_merges", "").await, 1);

    client
        .erase_customer(pb::EraseCustomerRequest {
            name: people.first.name.clone(),
            reason: pb::ErasureReason::DataSubjectRequest as i32,
            reference: "DSR-1".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();

    // The record held the source's data: gone with it, and with it the undo.
    assert_eq!(app.count("customer_merges", "").await, 0);
    let undo = client
        .unmerge_customers(pb::UnmergeCustomersRequest {
            name: people.target.name.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_reason(&undo, Code::NotFound, "RESOURCE_NOT_FOUND");
    // The target keeps what the merge gave it.
    let target = app.get_customer(&people.target.name).await.unwrap();
    assert_eq!(
        target.external_ids,
        labels(&[("crm", "c-1"), ("shop", "s-1")])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_policy_on_companies_looks_for_live_companies_with_the_domain() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let company = |name: &str, domain: &str| pb::Company {
        display_name: name.to_owned(),
        domain: domain.to_owned(),
        ..Default::default()
    };
    let create = |policy: pb::DuplicatePolicy, company: pb::Company| pb::CreateCompanyRequest {
        company: Some(company),
        request_id: String::new(),
        duplicate_policy: policy as i32,
    };
    let acme = client
        .create_company(create(
            pb::DuplicatePolicy::Allow,
            company("Acme", "acme.example"),
        ))
        .await
        .unwrap()
        .into_inner();

    let refused = client
        .create_company(create(
            pb::DuplicatePolicy::Reject,
            company("ACME Inc", "ACME.example"),
        ))
        .await
        .unwrap_err();
    assert_reason(&refused, Code::AlreadyExists, "DUPLICATE_COMPANY");
    let details = refused.get_error_details_vec();
    let [
        ErrorDetail::ErrorInfo(info),
        ErrorDetail::ResourceInfo(resource),
    ] = details.as_slice()
    else {
        panic!("ErrorInfo and one ResourceInfo: {details:?}");
    };
    assert_eq!(info.metadata["candidates"], acme.name);
    assert_eq!(
        (
            resource.resource_type.as_str(),
            resource.resource_name.as_str()
        ),
        ("customer.example.com/Company", acme.name.as_str())
    );
    assert_eq!(app.count("companies", "").await, 1);

    let warned = client
        .create_company(create(
            pb::DuplicatePolicy::Warn,
            company("Acme GmbH", "acme.example"),
        ))
        .await
        .unwrap();
    assert_eq!(
        warned.metadata().get("duplicate-candidates").unwrap(),
        acme.name.as_str()
    );
    let other = client
        .create_company(create(
            pb::DuplicatePolicy::Reject,
            company("Other", "other.example"),
        ))
        .await
        .unwrap();
    assert_eq!(other.metadata().get("duplicate-candidates"), None);
    assert_eq!(app.count("companies", "").await, 3);
}

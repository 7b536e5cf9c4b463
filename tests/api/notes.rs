//! Notes on customers: CRUD over gRPC and REST, validation, etags (two editors), request ids,
//! newest-first pagination, hiding with a deleted customer, note events in the customer's
//! stream, and the seed scenario end to end.

use customer_api::pb::{self, customer::Status as CustomerStatus, customer_event::Kind};
use diesel_async::SimpleAsyncConnection;
use http::{Method, StatusCode};
use prost_types::FieldMask;
use serde_json::json;
use tonic::Code;
use uuid::Uuid;

use crate::{
    companies::{company, create_company, member},
    events::{kind, list_all, take},
    helpers::{
        TestApp, assert_invalid, assert_reason, details, eventually, lock_customer,
        sessions_waiting_for_locks,
    },
    rest::{call, error_reason, violations},
};

fn note(text: &str) -> pb::Note {
    pb::Note {
        text: text.into(),
        ..Default::default()
    }
}

pub(crate) async fn create_note(
    app: &TestApp,
    parent: &str,
    text: &str,
) -> Result<pb::Note, tonic::Status> {
    app.client
        .clone()
        .create_note(pb::CreateNoteRequest {
            parent: parent.into(),
            note: Some(note(text)),
            request_id: String::new(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn get_note(app: &TestApp, name: &str) -> Result<pb::Note, tonic::Status> {
    app.client
        .clone()
        .get_note(pb::GetNoteRequest { name: name.into() })
        .await
        .map(tonic::Response::into_inner)
}

async fn update_note(
    app: &TestApp,
    name: &str,
    etag: &str,
    text: &str,
) -> Result<pb::Note, tonic::Status> {
    app.client
        .clone()
        .update_note(pb::UpdateNoteRequest {
            note: Some(pb::Note {
                name: name.into(),
                etag: etag.into(),
                text: text.into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["text".into()],
            }),
            request_id: String::new(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn delete_note(app: &TestApp, name: &str, etag: &str) -> Result<(), tonic::Status> {
    app.client
        .clone()
        .delete_note(pb::DeleteNoteRequest {
            name: name.into(),
            etag: etag.into(),
            request_id: String::new(),
        })
        .await
        .map(drop)
}

async fn list_notes(
    app: &TestApp,
    parent: &str,
    page_size: i32,
    page_token: &str,
) -> Result<pb::ListNotesResponse, tonic::Status> {
    app.client
        .clone()
        .list_notes(pb::ListNotesRequest {
            parent: parent.into(),
            page_size,
            page_token: page_token.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

fn texts(notes: &[pb::Note]) -> Vec<String> {
    notes.iter().map(|n| n.text.clone()).collect()
}

#[tokio::test]
async fn a_note_is_added_read_listed_edited_and_deleted() {
    let app = TestApp::spawn().await;
    let ann = app.create("Ann", "Able").await;
    let created = create_note(
        &app,
        &ann.name,
        "  Called about the renewal.\n\tWants a quote. ",
    )
    .await
    .unwrap();
    let prefix = format!("{}/notes/", ann.name);
    let id = created.name.strip_prefix(&prefix).unwrap();
    assert_eq!(Uuid::parse_str(id).unwrap().get_version_num(), 7);
    assert_eq!(created.text, "Called about the renewal.\n\tWants a quote.");
    assert_eq!(created.author, "test-user");
    assert_eq!(created.etag, "W/\"1\"");
    assert!(created.create_time.is_some());
    assert_eq!(created.create_time, created.update_time);
    assert_eq!(get_note(&app, &created.name).await.unwrap(), created);

    let edited = update_note(&app, &created.name, &created.etag, "Sent the quote.")
        .await
        .unwrap();
    assert_eq!(edited.text, "Sent the quote.");
    assert_eq!(edited.etag, "W/\"2\"");
    assert_eq!(edited.author, "test-user");
    assert_eq!(edited.create_time, created.create_time);
    let micros = |t: &Option<prost_types::Timestamp>| {
        t.map(|t| t.seconds * 1_000_000 + i64::from(t.nanos / 1000))
    };
    assert!(micros(&edited.update_time) > micros(&created.update_time));
    // The same text again changes nothing; no mask means "the fields that are set".
    let same = app
        .client
        .clone()
        .update_note(pb::UpdateNoteRequest {
            note: Some(pb::Note {
                name: created.name.clone(),
                text: "Sent the quote.".into(),
                ..Default::default()
            }),
            update_mask: None,
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same, edited);
    let page = list_notes(&app, &ann.name, 0, "").await.unwrap();
    assert_eq!(page.notes, std::slice::from_ref(&edited));
    assert_eq!(page.next_page_token, "");

    delete_note(&app, &created.name, &edited.etag)
        .await
        .unwrap();
    let status = get_note(&app, &created.name).await.unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
    assert!(
        list_notes(&app, &ann.name, 0, "")
            .await
            .unwrap()
            .notes
            .is_empty()
    );
    // Deleted for good.
    assert_eq!(app.count("notes", "").await, 0);
}

#[tokio::test]
async fn invalid_notes_are_refused_with_every_violation() {
    let app = TestApp::spawn().await;
    let ann = app.create("Ann", "Able").await;
    let status = app
        .client
        .clone()
        .create_note(pb::CreateNoteRequest {
            parent: "customers/ann".into(),
            note: Some(note(" \n\t ")),
            request_id: "retry-1".into(),
        })
        .await
        .unwrap_err();
    assert_invalid(
        &status,
        "INVALID_FIELDS",
        &["parent", "request_id", "note.text"],
    );
    let info = details(&status);
    let violation = &info.bad_request().unwrap().field_violations[2];
    assert_eq!(violation.description, "must not be blank");
    // An absent note has no text; text is limited in characters, not bytes.
    let status = app
        .client
        .clone()
        .create_note(pb::CreateNoteRequest {
            parent: ann.name.clone(),
            note: None,
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["note.text"]);
    let status = create_note(&app, &ann.name, &"é".repeat(10_001))
        .await
        .unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["note.text"]);
    let longest = create_note(&app, &ann.name, &"é".repeat(10_000))
        .await
        .unwrap();
    assert_eq!(longest.text.chars().count(), 10_000);

    let status = app
        .client
        .clone()
        .update_note(pb::UpdateNoteRequest {
            note: Some(pb::Note {
                name: ann.name.clone(),
                text: String::new(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["author".into(), "title".into(), "text".into()],
            }),
            request_id: "x".into(),
        })
        .await
        .unwrap_err();
    assert_invalid(
        &status,
        "INVALID_FIELDS",
        &[
            "note.name",
            "request_id",
            "update_mask.paths[0]",
            "update_mask.paths[1]",
            "note.text",
        ],
    );
    for name in [
        "",
        "notes/1",
        ann.name.as_str(),
        format!("{}/notes/x", ann.name).as_str(),
    ] {
        let status = get_note(&app, name).await.unwrap_err();
        assert_invalid(&status, "INVALID_FIELDS", &["name"]);
    }
    let status = list_notes(&app, "companies/x", -1, "").await.unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["parent", "page_size"]);
    assert_eq!(app.count("notes", "").await, 1);
}

#[tokio::test]
async fn missing_customers_and_notes_are_not_found() {
    let app = TestApp::spawn().await;
    let nobody = format!("customers/{}", Uuid::now_v7());
    let status = create_note(&app, &nobody, "Hello").await.unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
    assert_eq!(
        details(&status).resource_info().unwrap().resource_type,
        "customer.example.com/Customer"
    );
    let status = list_notes(&app, &nobody, 0, "").await.unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");

    let ann = app.create("Ann", "Able").await;
    let bob = app.create("Bob", "Baker").await;
    let missing = format!("{}/notes/{}", ann.name, Uuid::now_v7());
    let status = get_note(&app, &missing).await.unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
    let info = details(&status);
    let resource = info.resource_info().unwrap();
    assert_eq!(resource.resource_type, "customer.example.com/Note");
    assert_eq!(resource.resource_name, missing);
    let status = update_note(&app, &missing, "", "x").await.unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
    let status = delete_note(&app, &missing, "").await.unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");

    // A note is found only under its own customer.
    let hers = create_note(&app, &ann.name, "Ann's").await.unwrap();
    let id = hers.name.rsplit('/').next().unwrap();
    let elsewhere = format!("{}/notes/{id}", bob.name);
    let status = get_note(&app, &elsewhere).await.unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
    let status = delete_note(&app, &elsewhere, "").await.unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
    assert_eq!(get_note(&app, &hers.name).await.unwrap(), hers);
}

#[tokio::test]
async fn a_stale_etag_is_aborted_so_two_editors_cannot_overwrite_each_other() {
    let app = TestApp::spawn().await;
    let ann = app.create("Ann", "Able").await;
    let original = create_note(&app, &ann.name, "Draft").await.unwrap();
    // Two editors read the same version; the first to save wins.
    let first = update_note(&app, &original.name, &original.etag, "Alice's edit")
        .await
        .unwrap();
    let status = update_note(&app, &original.name, &original.etag, "Bob's edit")
        .await
        .unwrap_err();
    assert_reason(&status, Code::Aborted, "ETAG_MISMATCH");
    assert_eq!(
        details(&status).resource_info().unwrap().resource_name,
        original.name
    );
    assert_eq!(get_note(&app, &original.name).await.unwrap(), first);
    // Bob re-reads and saves on the current etag.
    let second = update_note(&app, &original.name, &first.etag, "Bob's edit")
        .await
        .unwrap();
    assert_eq!(second.text, "Bob's edit");
    let status = delete_note(&app, &original.name, &first.etag)
        .await
        .unwrap_err();
    assert_reason(&status, Code::Aborted, "ETAG_MISMATCH");
    delete_note(&app, &original.name, &second.etag)
        .await
        .unwrap();
}

#[tokio::test]
async fn notes_are_listed_newest_first_in_pages() {
    let app = TestApp::spawn().await;
    let ann = app.create("Ann", "Able").await;
    let bob = app.create("Bob", "Baker").await;
    for n in 1..=5 {
        create_note(&app, &ann.name, &format!("note {n}"))
            .await
            .unwrap();
    }
    create_note(&app, &bob.name, "Bob's note").await.unwrap();

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = list_notes(&app, &ann.name, 2, &token).await.unwrap();
        pages += 1;
        seen.extend(texts(&page.notes));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["note 5", "note 4", "note 3", "note 2", "note 1"]);

    let first = list_notes(&app, &ann.name, 2, "").await.unwrap();
    // A token belongs to its parent.
    let status = list_notes(&app, &bob.name, 2, &first.next_page_token)
        .await
        .unwrap_err();
    assert_invalid(&status, "INVALID_PAGE_TOKEN", &["page_token"]);
    let status = list_notes(&app, &ann.name, 2, "garbage").await.unwrap_err();
    assert_invalid(&status, "INVALID_PAGE_TOKEN", &["page_token"]);
}

#[tokio::test]
async fn notes_are_hidden_with_their_customer_and_return_on_undelete() {
    let app = TestApp::spawn().await;
    let ann = app.create("Ann", "Able").await;
    let first = create_note(&app, &ann.name, "First").await.unwrap();
    let second = create_note(&app, &ann.name, "Second").await.unwrap();
    app.delete_customer(&ann.name).await.unwrap();

    let hidden = [
        get_note(&app, &first.name).await.map(drop),
        list_notes(&app, &ann.name, 0, "").await.map(drop),
        create_note(&app, &ann.name, "Third").await.map(drop),
        update_note(&app, &first.name, "", "Changed")
            .await
            .map(drop),
        delete_note(&app, &second.name, "").await,
    ];
    for result in hidden {
        let status = result.unwrap_err();
        assert_reason(&status, Code::FailedPrecondition, "CUSTOMER_DELETED");
        assert!(status.message().contains("undeleted"), "{status:?}");
    }
    // Hidden, not removed.
    assert_eq!(app.count("notes", "").await, 2);

    app.undelete_customer(&ann.name).await.unwrap();
    let back = list_notes(&app, &ann.name, 0, "").await.unwrap();
    assert_eq!(back.notes, [second, first.clone()]);
    assert_eq!(get_note(&app, &first.name).await.unwrap(), first);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_note_write_waits_for_a_delete_of_its_customer_and_sees_it() {
    let app = TestApp::spawn().await;
    let ann = app.create("Ann", "Able").await;
    // A DeleteCustomer in flight holds the customer's update lock.
    let mut deleter = lock_customer(&app, &ann.name).await;
    let create = tokio::spawn({
        let mut client = app.client.clone();
        let parent = ann.name.clone();
        async move {
            client
                .create_note(pb::CreateNoteRequest {
                    parent,
                    note: Some(note("Too late")),
                    request_id: String::new(),
                })
                .await
        }
    });
    eventually("the note write waits for the customer row", || async {
        sessions_waiting_for_locks(&app).await == 1
    })
    .await;
    deleter
        .batch_execute(&format!(
            "UPDATE customers SET delete_time = now(), version = version + 1 \
             WHERE id = '{}'; COMMIT",
            ann.uid
        ))
        .await
        .unwrap();
    let status = create.await.unwrap().unwrap_err();
    assert_reason(&status, Code::FailedPrecondition, "CUSTOMER_DELETED");
    assert_eq!(app.count("notes", "").await, 0);
}

#[tokio::test]
async fn request_ids_make_note_writes_safe_to_retry() {
    let app = TestApp::spawn().await;
    let ann = app.create("Ann", "Able").await;
    let create = pb::CreateNoteRequest {
        parent: ann.name.clone(),
        note: Some(note("Once")),
        request_id: Uuid::new_v4().to_string(),
    };
    let first = app
        .client
        .clone()
        .create_note(create.clone())
        .await
        .unwrap()
        .into_inner();
    let again = app
        .client
        .clone()
        .create_note(create.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first);
    assert_eq!(app.count("notes", "").await, 1);
    let status = app
        .client
        .clone()
        .create_note(pb::CreateNoteRequest {
            note: Some(note("Twice")),
            ..create
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "REQUEST_ID_REUSED", &["request_id"]);

    let update = pb::UpdateNoteRequest {
        note: Some(pb::Note {
            name: first.name.clone(),
            etag: first.etag.clone(),
            text: "Edited".into(),
            ..Default::default()
        }),
        update_mask: None,
        request_id: Uuid::new_v4().to_string(),
    };
    let edited = app
        .client
        .clone()
        .update_note(update.clone())
        .await
        .unwrap()
        .into_inner();
    // The retry's etag is stale by now, yet it replays the first answer.
    let replayed = app
        .client
        .clone()
        .update_note(update)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replayed, edited);

    let delete = pb::DeleteNoteRequest {
        name: first.name.clone(),
        etag: edited.etag.clone(),
        request_id: Uuid::new_v4().to_string(),
    };
    app.client
        .clone()
        .delete_note(delete.clone())
        .await
        .unwrap();
    // The note is gone, yet the retry succeeds as the first call did.
    app.client.clone().delete_note(delete).await.unwrap();
    let status = delete_note(&app, &first.name, "").await.unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
    assert_eq!(
        app.count("events", &format!("aggregate = '{}'", first.name))
            .await,
        3
    );
}

#[tokio::test]
async fn note_changes_are_note_events_in_the_customers_stream() {
    let app = TestApp::spawn().await;
    let ann = app.create("Ann", "Able").await;
    let bob = app.create("Bob", "Baker").await;
    let mut stream = app.watch(&ann.name, "").await.unwrap();
    let added = create_note(&app, &ann.name, "Hello").await.unwrap();
    create_note(&app, &bob.name, "Not Ann's").await.unwrap();
    let edited = update_note(&app, &added.name, "", "Hello again")
        .await
        .unwrap();
    delete_note(&app, &added.name, "").await.unwrap();
    // The customer's own history keeps its numbering.
    let renamed = app
        .client
        .clone()
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: ann.name.clone(),
                given_name: "Anne".into(),
                ..Default::default()
            }),
            update_mask: None,
            request_id: String::new(),
            allow_missing: false,
        })
        .await
        .unwrap()
        .into_inner();

    let events = list_all(&app, &ann.name, "").await;
    assert_eq!(
        events.iter().map(kind).collect::<Vec<_>>(),
        [
            "registered",
            "note_added",
            "note_updated",
            "note_deleted",
            "updated"
        ]
    );
    let numbered: Vec<(&str, i64)> = events
        .iter()
        .map(|e| (e.resource.as_str(), e.sequence))
        .collect();
    assert_eq!(
        numbered,
        [
            (ann.name.as_str(), 1),
            (added.name.as_str(), 1),
            (added.name.as_str(), 2),
            (added.name.as_str(), 3),
            (ann.name.as_str(), 2),
        ]
    );
    for event in &events {
        assert_eq!(event.customer, ann.name);
    }
    assert_eq!(events[4].snapshot.as_ref(), Some(&renamed));
    let Some(Kind::NoteAdded(first)) = &events[1].kind else {
        panic!("{:?}", events[1]);
    };
    assert_eq!(first.note.as_ref(), Some(&added));
    assert_eq!(events[1].snapshot, None);
    let Some(Kind::NoteUpdated(change)) = &events[2].kind else {
        panic!("{:?}", events[2]);
    };
    assert_eq!(change.note.as_ref(), Some(&edited));
    assert_eq!(change.changed_fields.as_ref().unwrap().paths, ["text"]);
    assert_eq!(
        change.previous.as_ref(),
        Some(&pb::Note {
            text: "Hello".into(),
            ..Default::default()
        })
    );
    let Some(Kind::NoteDeleted(last)) = &events[3].kind else {
        panic!("{:?}", events[3]);
    };
    assert_eq!(last.note.as_ref(), Some(&edited));

    // Watching the customer sees the same events, Bob's note not among them.
    let watched = take(&mut stream, 5).await;
    assert_eq!(
        watched
            .iter()
            .map(|e| e.event_id.clone())
            .collect::<Vec<_>>(),
        events
            .iter()
            .map(|e| e.event_id.clone())
            .collect::<Vec<_>>()
    );
    // `customers/-` has everything, and the type filter knows the note types.
    assert_eq!(list_all(&app, "customers/-", "").await.len(), 7);
    assert_eq!(
        list_all(&app, "customers/-", "type = NoteAdded")
            .await
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn notes_over_rest() {
    let app = TestApp::spawn().await;
    let ann = app.create("Ann", "Able").await;
    let body = json!({"text": "Met at the fair."}).to_string();
    let (status, headers, created) = call(
        &app,
        false,
        Method::POST,
        &format!("/v1/{}/notes", ann.name),
        Some(&body),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let name = created["name"].as_str().unwrap().to_owned();
    assert_eq!(headers["location"], format!("/v1/{name}"));
    assert_eq!(headers["etag"], "W/\"1\"");
    let mut keys: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["author", "createTime", "etag", "name", "text", "updateTime"]
    );
    assert_eq!(created["author"], "test-user");

    let (status, _, got) = call(&app, true, Method::GET, &format!("/v1/{name}"), None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, created);
    let (status, _, list) = call(
        &app,
        false,
        Method::GET,
        &format!("/v1/{}/notes?pageSize=10", ann.name),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["notes"], json!([created]));

    // Edits: a stale If-Match is 412, the current one works.
    let edit = json!({"text": "Met at the fair; follow up in May."}).to_string();
    let (status, _, edited) = call(
        &app,
        false,
        Method::PATCH,
        &format!("/v1/{name}"),
        Some(&edit),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["etag"], "W/\"2\"");
    let (status, _, error) = call(
        &app,
        false,
        Method::PATCH,
        &format!("/v1/{name}"),
        Some(&edit),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{error}");
    assert_eq!(error_reason(&error), "ETAG_MISMATCH");
    // An etag in the body that is stale is the same 412 (ABORTED).
    let stale = json!({"text": "x", "etag": "W/\"1\""}).to_string();
    let (status, _, error) = call(
        &app,
        false,
        Method::PATCH,
        &format!("/v1/{name}"),
        Some(&stale),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{error}");
    assert_eq!(error["error"]["status"], "ABORTED");

    // PUT replaces the note, under the same lock: stale is 412, current succeeds; a PUT
    // body without the required text is 400, not a silent blanking.
    let put = json!({"text": "Follow-up booked for May 3."}).to_string();
    let (status, _, error) = call(
        &app,
        false,
        Method::PUT,
        &format!("/v1/{name}"),
        Some(&put),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{error}");
    assert_eq!(error_reason(&error), "ETAG_MISMATCH");
    let (status, _, error) = call(
        &app,
        false,
        Method::PUT,
        &format!("/v1/{name}"),
        Some("{}"),
        &[("if-match", "W/\"2\"")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(violations(&error), ["note.text"]);
    let (status, headers, replaced) = call(
        &app,
        false,
        Method::PUT,
        &format!("/v1/{name}"),
        Some(&put),
        &[("if-match", "W/\"2\"")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["text"], "Follow-up booked for May 3.");
    assert_eq!(replaced["etag"], "W/\"3\"");
    assert_eq!(headers["etag"], "W/\"3\"");
    assert_eq!(replaced["author"], "test-user");
    assert_eq!(replaced["createTime"], created["createTime"]);

    let blank = json!({"text": "  "}).to_string();
    let (status, _, error) = call(
        &app,
        false,
        Method::POST,
        &format!("/v1/{}/notes", ann.name),
        Some(&blank),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(violations(&error), ["note.text"]);

    let (status, _, deleted) = call(
        &app,
        false,
        Method::DELETE,
        &format!("/v1/{name}"),
        None,
        &[("if-match", "W/\"3\"")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted, json!({}));
    let (status, _, error) =
        call(&app, false, Method::GET, &format!("/v1/{name}"), None, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_reason(&error), "RESOURCE_NOT_FOUND");
}

#[tokio::test]
async fn note_rpcs_need_the_customer_scopes_and_keep_their_author() {
    let app = TestApp::spawn().await;
    let ann = app.create("Ann", "Able").await;
    let mut settings = customer_api::config::ServeSettings::for_database("unused");
    settings.auth.jwt_hs256_secret = Some(crate::helpers::TEST_SECRET.into());
    let token = |subject: &str, scopes: &[&str]| {
        format!(
            "Bearer {}",
            crate::helpers::mint(&settings, subject, scopes)
        )
    };
    let reader = token("reader", &["customers.read"]);
    let writer = token("editor", &["customers.write"]);
    let status = app
        .client_with(Some(&reader))
        .create_note(pb::CreateNoteRequest {
            parent: ann.name.clone(),
            note: Some(note("Hi")),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("customers.write"), "{status:?}");
    let status = app
        .client_with(Some(&writer))
        .list_notes(pb::ListNotesRequest {
            parent: ann.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Another writer may edit a note; its author stays who wrote it.
    let written = create_note(&app, &ann.name, "By the test user")
        .await
        .unwrap();
    let edited = app
        .client_with(Some(&writer))
        .update_note(pb::UpdateNoteRequest {
            note: Some(pb::Note {
                name: written.name.clone(),
                etag: written.etag.clone(),
                text: "Edited by someone else".into(),
                ..Default::default()
            }),
            update_mask: None,
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(edited.author, "test-user");
    let events = list_all(&app, &ann.name, "type = NoteUpdated").await;
    assert_eq!(events[0].actor, "editor");
}

/// The scenario: two companies with customers of mixed status, the customers of one
/// listed by status in family-name order (gRPC and REST), notes added, and an edit with a
/// stale etag refused while one with the current etag succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn the_seed_scenario_end_to_end() {
    let app = TestApp::spawn().await;
    let acme = create_company(
        &app,
        pb::Company {
            domain: "acme.example".into(),
            business_id: "GB-ACME".into(),
            ..company("Acme Ltd")
        },
    )
    .await
    .unwrap();
    let globex = create_company(
        &app,
        pb::Company {
            domain: "globex.example".into(),
            ..company("Globex")
        },
    )
    .await
    .unwrap();
    let mut acme_prospects = Vec::new();
    for (given, family, status) in [
        ("Ada", "Lovelace", CustomerStatus::Prospective),
        ("Alan", "Turing", CustomerStatus::Active),
        ("Grace", "Hopper", CustomerStatus::Prospective),
        ("Edsger", "Dijkstra", CustomerStatus::Inactive),
        ("Barbara", "Liskov", CustomerStatus::Prospective),
    ] {
        let customer = member(&app, &acme.name, given, family, status).await;
        if status == CustomerStatus::Prospective {
            acme_prospects.push(customer);
        }
    }
    for (given, family, status) in [
        ("Donald", "Knuth", CustomerStatus::Prospective),
        ("Margaret", "Hamilton", CustomerStatus::Active),
    ] {
        member(&app, &globex.name, given, family, status).await;
    }
    let expected = ["Lovelace", "Liskov", "Hopper"];

    let grpc = app
        .client
        .clone()
        .list_customers(pb::ListCustomersRequest {
            filter: format!("company=\"{}\" AND status=PROSPECTIVE", acme.name),
            order_by: "family_name desc".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        grpc.customers
            .iter()
            .map(|c| c.family_name.as_str())
            .collect::<Vec<_>>(),
        expected
    );
    let id = acme.name.strip_prefix("companies/").unwrap();
    let (status, _, rest) = call(
        &app,
        false,
        Method::GET,
        &format!(
            "/v1/companies/{id}/customers?filter=status%3DPROSPECTIVE&orderBy=family_name%20desc"
        ),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rest}");
    let families: Vec<&str> = rest["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["familyName"].as_str().unwrap())
        .collect();
    assert_eq!(families, expected);

    // Notes on a prospect; an edit from a stale read is refused, a fresh one succeeds.
    let ada = &acme_prospects[0];
    let first = create_note(
        &app,
        &ada.name,
        "Intro call: interested in the analytical engine.",
    )
    .await
    .unwrap();
    create_note(&app, &ada.name, "Sent the brochure.")
        .await
        .unwrap();
    let current = update_note(
        &app,
        &first.name,
        &first.etag,
        "Intro call: very interested in the analytical engine.",
    )
    .await
    .unwrap();
    let status = update_note(&app, &first.name, &first.etag, "Overwrite attempt")
        .await
        .unwrap_err();
    assert_reason(&status, Code::Aborted, "ETAG_MISMATCH");
    let latest = update_note(
        &app,
        &first.name,
        &current.etag,
        "Intro call done; demo booked.",
    )
    .await
    .unwrap();
    assert_eq!(latest.etag, "W/\"3\"");
    let notes = list_notes(&app, &ada.name, 0, "").await.unwrap();
    assert_eq!(
        texts(&notes.notes),
        ["Sent the brochure.", "Intro call done; demo booked."]
    );
}

#[tokio::test]
async fn customers_dash_lists_every_live_customers_notes_newest_first() {
    let app = TestApp::spawn().await;
    let ann = app.create("Ann", "Able").await;
    let bob = app.create("Bob", "Baker").await;
    let cid = app.create("Cid", "Gone").await;
    for (customer, text) in [
        (&ann, "ann 1"),
        (&bob, "bob 1"),
        (&cid, "cid 1"),
        (&ann, "ann 2"),
        (&bob, "bob 2"),
    ] {
        create_note(&app, &customer.name, text).await.unwrap();
    }
    app.delete_customer(&cid.name).await.unwrap();

    // Pages of two across customers; the deleted customer's notes are hidden with it.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list_notes(&app, "customers/-", 2, &token).await.unwrap();
        assert!(page.notes.len() <= 2);
        seen.extend(texts(&page.notes));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["bob 2", "ann 2", "bob 1", "ann 1"]);
    // A token of one parent is refused for another.
    let first = list_notes(&app, "customers/-", 1, "").await.unwrap();
    let status = list_notes(&app, &ann.name, 1, &first.next_page_token)
        .await
        .unwrap_err();
    assert_invalid(&status, "INVALID_PAGE_TOKEN", &["page_token"]);
    // REST: GET /v1/customers/-/notes.
    let (status, _, page) = call(
        &app,
        false,
        Method::GET,
        "/v1/customers/-/notes?pageSize=10",
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let texts: Vec<&str> = page["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|note| note["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["bob 2", "ann 2", "bob 1", "ann 1"]);
    // Only the wildcard: a malformed parent is still INVALID_ARGUMENT.
    let status = list_notes(&app, "customers/*", 10, "").await.unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["parent"]);
}

//! Stored replays of request ids (AIP-155) and what issue 16 changed about them: a purged
//! customer's data leaves the replay store (a retry is NOT_FOUND, never a second write), and
//! UndeleteCustomer / UndeleteCompany take a `request_id` (REST: `Idempotency-Key`).

use customer_api::pb;
use http::{Method, StatusCode};
use tonic::Code;

use crate::{
    companies::create_company,
    delete::soft_delete,
    helpers::{TestApp, assert_reason, eventually, new_customer},
    rest::call,
};

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purged_customer_leaves_no_data_in_stored_replays_and_a_retry_is_not_found() {
    let app = TestApp::spawn_with(|s| {
        s.customer_purge_after = std::time::Duration::from_millis(1);
        s.customer_purge_interval = std::time::Duration::from_millis(20);
    })
    .await;
    let mut client = app.client.clone();
    let mut customer = new_customer("Gone", "Soon");
    customer.phone = "+14155550123".into();
    let create = pb::CreateCustomerRequest {
        duplicate_policy: 0,
        customer: Some(customer.clone()),
        request_id: request_id(),
    };
    let gone = client
        .create_customer(create.clone())
        .await
        .unwrap()
        .into_inner();
    let note = pb::CreateNoteRequest {
        parent: gone.name.clone(),
        note: Some(pb::Note {
            text: "Asked to be forgotten.".into(),
            ..Default::default()
        }),
        request_id: request_id(),
    };
    client.create_note(note.clone()).await.unwrap();
    let kept_create = pb::CreateCustomerRequest {
        duplicate_policy: 0,
        customer: Some(new_customer("Kept", "Live")),
        request_id: request_id(),
    };
    let kept = client
        .create_customer(kept_create.clone())
        .await
        .unwrap()
        .into_inner();
    let delete = pb::DeleteCustomerRequest {
        name: gone.name.clone(),
        etag: String::new(),
        request_id: request_id(),
    };
    client.delete_customer(delete.clone()).await.unwrap();

    eventually("the deleted customer is purged", || async {
        app.count("customers", &format!("id = '{}'", gone.uid))
            .await
            == 0
    })
    .await;

    // No stored response holds its email, phone or note any more…
    for text in [
        customer.email.as_str(),
        "4155550123",
        "Asked to be forgotten",
    ] {
        let holding = format!(
            "position(convert_to('{text}', 'UTF8') in coalesce(response_pb, ''::bytea)) > 0 \
             OR coalesce(response::text, '') LIKE '%{text}%'"
        );
        assert_eq!(app.count("request_ids", &holding).await, 0, "{text}");
    }
    // …but the claims stay, with why their responses went: a retry is not a second write,
    // and it is told the customer is gone instead of being given it.
    let owned = format!("customer_id = '{}'", gone.uid);
    assert_eq!(app.count("request_ids", &owned).await, 3);
    assert_eq!(
        app.count(
            "request_ids",
            &format!("{owned} AND forgotten_reason = 'purged'")
        )
        .await,
        3
    );
    for status in [
        client.create_customer(create).await.unwrap_err(),
        client.create_note(note).await.unwrap_err(),
        client.delete_customer(delete).await.unwrap_err(),
    ] {
        assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
        let info = crate::helpers::details(&status)
            .resource_info()
            .cloned()
            .unwrap();
        assert_eq!(info.resource_name, gone.name);
    }
    let email = customer.email.to_lowercase();
    assert_eq!(
        app.count("customers", &format!("lower(email) = '{email}'"))
            .await,
        0
    );
    // Another customer's replay is untouched.
    let replayed = client
        .create_customer(kept_create)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replayed, kept);
}

/// Rows an older release forgot carry no reason: its purge kept the owner, its erasure
/// cleared it. The reader answers them as that release did.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_of_a_request_an_older_release_forgot_is_answered_by_what_it_left() {
    use diesel_async::RunQueryDsl as _;

    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let create = |given: &str| pb::CreateCustomerRequest {
        customer: Some(new_customer(given, "Older")),
        request_id: request_id(),
        ..Default::default()
    };
    let (purged, erased) = (create("Purged"), create("Erased"));
    let purged_customer = client
        .create_customer(purged.clone())
        .await
        .unwrap()
        .into_inner();
    client.create_customer(erased.clone()).await.unwrap();
    // What the older purge and erasure left of the two replays.
    let mut conn = app.db().await;
    for (request, owner) in [
        (&purged.request_id, "customer_id"),
        (&erased.request_id, "NULL"),
    ] {
        let changed = diesel::sql_query(format!(
            "UPDATE request_ids SET response = NULL, response_pb = NULL, \
             customer_id = {owner}, forgotten_reason = NULL WHERE request_id = '{request}'"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        assert_eq!(changed, 1);
    }

    let status = client.create_customer(purged).await.unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
    let info = crate::helpers::details(&status)
        .resource_info()
        .cloned()
        .unwrap();
    assert_eq!(info.resource_name, purged_customer.name);
    let status = client.create_customer(erased).await.unwrap_err();
    assert_reason(&status, Code::FailedPrecondition, "REQUEST_ERASED");
    assert_eq!(app.count("customers", "").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_undelete_with_its_request_id_replays_the_first_answer_on_grpc_and_rest() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let customer = app.create("Back", "Again").await;
    soft_delete(&app, &customer.name).await;
    let undelete = pb::UndeleteCustomerRequest {
        name: customer.name.clone(),
        etag: String::new(),
        request_id: request_id(),
    };

    let first = client
        .undelete_customer(undelete.clone())
        .await
        .unwrap()
        .into_inner();
    let again = client
        .undelete_customer(undelete.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first);
    // One undelete happened: one event of it.
    let undeleted = format!(
        "aggregate = '{}' AND event_type = 'CustomerUndeleted'",
        customer.name
    );
    assert_eq!(app.count("events", &undeleted).await, 1);
    // The same id for another request is refused; without an id a second undelete is 409.
    let other = pb::UndeleteCustomerRequest {
        etag: "W/\"1\"".into(),
        ..undelete.clone()
    };
    let status = client.undelete_customer(other).await.unwrap_err();
    assert_reason(&status, Code::InvalidArgument, "REQUEST_ID_REUSED");
    let status = client
        .undelete_customer(pb::UndeleteCustomerRequest {
            request_id: String::new(),
            ..undelete
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);

    // REST: Idempotency-Key.
    let customer = app.create("Rest", "Again").await;
    soft_delete(&app, &customer.name).await;
    let path = format!("/v1/{}:undelete", customer.name);
    let key = request_id();
    let headers = [("idempotency-key", key.as_str())];
    let (status, _, first) = call(&app, false, Method::POST, &path, Some("{}"), &headers).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, _, again) = call(&app, false, Method::POST, &path, Some("{}"), &headers).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, first);
    let (status, _, _) = call(&app, false, Method::POST, &path, Some("{}"), &[]).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // UndeleteCompany too.
    let company = create_company(
        &app,
        pb::Company {
            display_name: "Acme".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    client
        .delete_company(pb::DeleteCompanyRequest {
            name: company.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let undelete = pb::UndeleteCompanyRequest {
        name: company.name.clone(),
        etag: String::new(),
        request_id: request_id(),
    };
    let first = client
        .undelete_company(undelete.clone())
        .await
        .unwrap()
        .into_inner();
    let again = client
        .undelete_company(undelete)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first);
}

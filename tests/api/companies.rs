//! Companies: CRUD over gRPC and REST, validation, business-id uniqueness, etags, request
//! ids, soft delete with (and without) `force`, customer references to companies, listing
//! the customers of a company, and the company events.

use customer_api::pb::{self, customer::Status as CustomerStatus, customer_event::Kind};
use diesel_async::SimpleAsyncConnection;
use http::{Method, StatusCode};
use prost_types::FieldMask;
use serde_json::json;
use tonic::Code;
use uuid::Uuid;

use crate::{
    events::{kind, list_all},
    helpers::{
        TestApp, assert_invalid, assert_reason, eventually, labels, new_customer,
        sessions_waiting_for_locks,
    },
    rest::{call, error_reason, violations},
};

pub(crate) fn company(display_name: &str) -> pb::Company {
    pb::Company {
        display_name: display_name.into(),
        ..Default::default()
    }
}

pub(crate) async fn create_company(
    app: &TestApp,
    company: pb::Company,
) -> Result<pb::Company, tonic::Status> {
    app.client
        .clone()
        .create_company(pb::CreateCompanyRequest {
            duplicate_policy: 0,
            company: Some(company),
            request_id: String::new(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn update_company(
    app: &TestApp,
    company: pb::Company,
    paths: &[&str],
) -> Result<pb::Company, tonic::Status> {
    app.client
        .clone()
        .update_company(pb::UpdateCompanyRequest {
            company: Some(company),
            update_mask: Some(FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
            request_id: String::new(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn delete_company(
    app: &TestApp,
    name: &str,
    force: bool,
) -> Result<pb::Company, tonic::Status> {
    app.client
        .clone()
        .delete_company(pb::DeleteCompanyRequest {
            name: name.into(),
            force,
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// A customer of `company` with `status`.
pub(crate) async fn member(
    app: &TestApp,
    company: &str,
    given: &str,
    family: &str,
    status: CustomerStatus,
) -> pb::Customer {
    let mut customer = new_customer(given, family);
    customer.company = company.into();
    customer.status = status as i32;
    app.create_customer(customer).await.unwrap()
}

async fn get_customer(app: &TestApp, name: &str) -> pb::Customer {
    app.get_customer(name).await.unwrap()
}

#[tokio::test]
async fn a_company_is_created_read_updated_and_soft_deleted() {
    let app = TestApp::spawn().await;
    let created = create_company(
        &app,
        pb::Company {
            display_name: "  Acme Ltd ".into(),
            domain: "Acme.Example.COM".into(),
            business_id: "GB-0001".into(),
            labels: labels(&[("tier", "gold")]),
            // Output-only and server-assigned fields are ignored.
            name: "companies/ignored".into(),
            etag: "W/\"9\"".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let id = created.name.strip_prefix("companies/").unwrap();
    assert_eq!(Uuid::parse_str(id).unwrap().get_version_num(), 7);
    assert_eq!(created.uid, id);
    assert_eq!(created.display_name, "Acme Ltd");
    assert_eq!(created.domain, "acme.example.com");
    assert_eq!(created.business_id, "GB-0001");
    assert_eq!(created.labels, labels(&[("tier", "gold")]));
    assert_eq!(created.etag, "W/\"1\"");
    assert!(created.create_time.is_some());
    assert_eq!(created.create_time, created.update_time);
    assert_eq!(created.delete_time, None);

    let got = app
        .client
        .clone()
        .get_company(pb::GetCompanyRequest {
            name: created.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, created);

    let updated = update_company(
        &app,
        pb::Company {
            name: created.name.clone(),
            etag: created.etag.clone(),
            display_name: "Acme plc".into(),
            labels: labels(&[("region", "eu")]),
            ..Default::default()
        },
        &["display_name", "labels.region"],
    )
    .await
    .unwrap();
    assert_eq!(updated.display_name, "Acme plc");
    assert_eq!(updated.domain, "acme.example.com");
    assert_eq!(
        updated.labels,
        labels(&[("region", "eu"), ("tier", "gold")])
    );
    assert_eq!(updated.etag, "W/\"2\"");

    // `*` replaces every field: unset ones are cleared.
    let replaced = update_company(
        &app,
        pb::Company {
            name: created.name.clone(),
            display_name: "Acme".into(),
            ..Default::default()
        },
        &["*"],
    )
    .await
    .unwrap();
    assert_eq!(replaced.domain, "");
    assert_eq!(replaced.business_id, "");
    assert!(replaced.labels.is_empty());

    // No mask: the fields that are set. The same values again change nothing.
    let unchanged = app
        .client
        .clone()
        .update_company(pb::UpdateCompanyRequest {
            company: Some(pb::Company {
                name: created.name.clone(),
                display_name: "Acme".into(),
                ..Default::default()
            }),
            update_mask: None,
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unchanged, replaced);

    let deleted = delete_company(&app, &created.name, false).await.unwrap();
    assert!(deleted.delete_time.is_some());
    assert_eq!(deleted.etag, "W/\"4\"");
    // Still readable, but no longer listed by default.
    let got = app
        .client
        .clone()
        .get_company(pb::GetCompanyRequest {
            name: created.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, deleted);
    let live = app
        .client
        .clone()
        .list_companies(pb::ListCompaniesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(live.companies.is_empty());
    let all = app
        .client
        .clone()
        .list_companies(pb::ListCompaniesRequest {
            show_deleted: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.companies, std::slice::from_ref(&deleted));

    // Writes to a deleted company fail with FAILED_PRECONDITION.
    let status = delete_company(&app, &created.name, false)
        .await
        .unwrap_err();
    assert_reason(&status, Code::FailedPrecondition, "COMPANY_DELETED");
    let status = update_company(
        &app,
        pb::Company {
            name: created.name.clone(),
            display_name: "Ghost".into(),
            ..Default::default()
        },
        &["display_name"],
    )
    .await
    .unwrap_err();
    assert_reason(&status, Code::FailedPrecondition, "COMPANY_DELETED");
}

#[tokio::test]
async fn invalid_companies_are_refused_with_every_violation() {
    let app = TestApp::spawn().await;
    let status = app
        .client
        .clone()
        .create_company(pb::CreateCompanyRequest {
            duplicate_policy: 0,
            company: Some(pb::Company {
                display_name: "   ".into(),
                domain: "not a domain".into(),
                business_id: "has space".into(),
                labels: labels(&[("Bad", "x")]),
                ..Default::default()
            }),
            request_id: "retry-1".into(),
        })
        .await
        .unwrap_err();
    assert_invalid(
        &status,
        "INVALID_FIELDS",
        &[
            "request_id",
            "company.display_name",
            "company.domain",
            "company.business_id",
            "company.labels[\"Bad\"]",
        ],
    );
    // An absent company is an empty one: its required display name is missing.
    let status = app
        .client
        .clone()
        .create_company(pb::CreateCompanyRequest::default())
        .await
        .unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["company.display_name"]);
    for domain in [
        "localhost",
        "a..b.com",
        "192.168.0.1",
        "bücher.de",
        "-x.com",
    ] {
        let status = create_company(
            &app,
            pb::Company {
                domain: domain.into(),
                ..company("Acme")
            },
        )
        .await
        .unwrap_err();
        assert_invalid(&status, "INVALID_FIELDS", &["company.domain"]);
    }
    let created = create_company(&app, company("Acme")).await.unwrap();

    // Update: the name, the mask and the masked values are all checked up front.
    let status = app
        .client
        .clone()
        .update_company(pb::UpdateCompanyRequest {
            company: Some(pb::Company {
                name: "companies/acme".into(),
                display_name: String::new(),
                domain: "x".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec![
                    "display_name".into(),
                    "domain".into(),
                    "uid".into(),
                    "email".into(),
                ],
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(
        &status,
        "INVALID_FIELDS",
        &[
            "company.name",
            "update_mask.paths[2]",
            "update_mask.paths[3]",
            "company.display_name",
            "company.domain",
        ],
    );
    for name in [
        "",
        "companies/",
        "customers/0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e",
    ] {
        let status = app
            .client
            .clone()
            .get_company(pb::GetCompanyRequest { name: name.into() })
            .await
            .unwrap_err();
        assert_invalid(&status, "INVALID_FIELDS", &["name"]);
    }
    // Nothing was written by any refused call.
    assert_eq!(app.count("companies", "").await, 1);
    assert_eq!(
        app.count(
            "companies",
            &format!("version = 1 AND id = '{}'", created.uid)
        )
        .await,
        1
    );
}

#[tokio::test]
async fn missing_companies_are_not_found() {
    let app = TestApp::spawn().await;
    let name = format!("companies/{}", Uuid::now_v7());
    let status = app
        .client
        .clone()
        .get_company(pb::GetCompanyRequest { name: name.clone() })
        .await
        .unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
    let info = crate::helpers::details(&status);
    let resource = info.resource_info().unwrap();
    assert_eq!(resource.resource_type, "customer.example.com/Company");
    assert_eq!(resource.resource_name, name);
    let status = update_company(
        &app,
        pb::Company {
            name: name.clone(),
            display_name: "X".into(),
            ..Default::default()
        },
        &["display_name"],
    )
    .await
    .unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
    let status = delete_company(&app, &name, true).await.unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
}

#[tokio::test]
async fn business_ids_are_unique_among_live_companies() {
    let app = TestApp::spawn().await;
    let first = create_company(
        &app,
        pb::Company {
            business_id: "DE-42".into(),
            ..company("First")
        },
    )
    .await
    .unwrap();
    let status = create_company(
        &app,
        pb::Company {
            business_id: "DE-42".into(),
            ..company("Second")
        },
    )
    .await
    .unwrap_err();
    assert_reason(&status, Code::AlreadyExists, "BUSINESS_ID_ALREADY_EXISTS");
    let second = create_company(&app, company("Second")).await.unwrap();
    let status = update_company(
        &app,
        pb::Company {
            name: second.name.clone(),
            business_id: "DE-42".into(),
            ..Default::default()
        },
        &["business_id"],
    )
    .await
    .unwrap_err();
    assert_reason(&status, Code::AlreadyExists, "BUSINESS_ID_ALREADY_EXISTS");

    // A deleted company's business id is free again.
    delete_company(&app, &first.name, false).await.unwrap();
    let moved = update_company(
        &app,
        pb::Company {
            name: second.name.clone(),
            business_id: "DE-42".into(),
            ..Default::default()
        },
        &["business_id"],
    )
    .await
    .unwrap();
    assert_eq!(moved.business_id, "DE-42");
}

#[tokio::test]
async fn a_stale_etag_is_aborted_and_the_current_one_succeeds() {
    let app = TestApp::spawn().await;
    let created = create_company(&app, company("Acme")).await.unwrap();
    let renamed = update_company(
        &app,
        pb::Company {
            name: created.name.clone(),
            etag: created.etag.clone(),
            display_name: "Acme 2".into(),
            ..Default::default()
        },
        &["display_name"],
    )
    .await
    .unwrap();
    let status = update_company(
        &app,
        pb::Company {
            name: created.name.clone(),
            etag: created.etag.clone(),
            display_name: "Acme 3".into(),
            ..Default::default()
        },
        &["display_name"],
    )
    .await
    .unwrap_err();
    assert_reason(&status, Code::Aborted, "ETAG_MISMATCH");
    let status = app
        .client
        .clone()
        .delete_company(pb::DeleteCompanyRequest {
            name: created.name.clone(),
            etag: created.etag.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_reason(&status, Code::Aborted, "ETAG_MISMATCH");
    let deleted = app
        .client
        .clone()
        .delete_company(pb::DeleteCompanyRequest {
            name: created.name.clone(),
            etag: renamed.etag.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.delete_time.is_some());
}

#[tokio::test]
async fn request_ids_make_company_writes_safe_to_retry() {
    let app = TestApp::spawn().await;
    let request_id = Uuid::new_v4().to_string();
    let create = pb::CreateCompanyRequest {
        duplicate_policy: 0,
        company: Some(company("Acme")),
        request_id: request_id.clone(),
    };
    let first = app
        .client
        .clone()
        .create_company(create.clone())
        .await
        .unwrap()
        .into_inner();
    let again = app
        .client
        .clone()
        .create_company(create)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first);
    assert_eq!(app.count("companies", "").await, 1);
    let status = app
        .client
        .clone()
        .create_company(pb::CreateCompanyRequest {
            duplicate_policy: 0,
            company: Some(company("Other")),
            request_id: request_id.clone(),
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "REQUEST_ID_REUSED", &["request_id"]);

    let update = pb::UpdateCompanyRequest {
        company: Some(pb::Company {
            name: first.name.clone(),
            etag: first.etag.clone(),
            display_name: "Acme 2".into(),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["display_name".into()],
        }),
        request_id: Uuid::new_v4().to_string(),
    };
    let updated = app
        .client
        .clone()
        .update_company(update.clone())
        .await
        .unwrap()
        .into_inner();
    // The retry carries the now-stale etag, yet replays the first answer.
    let replayed = app
        .client
        .clone()
        .update_company(update)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replayed, updated);

    let delete = pb::DeleteCompanyRequest {
        name: first.name.clone(),
        request_id: Uuid::new_v4().to_string(),
        ..Default::default()
    };
    let deleted = app
        .client
        .clone()
        .delete_company(delete.clone())
        .await
        .unwrap()
        .into_inner();
    let replayed = app
        .client
        .clone()
        .delete_company(delete)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replayed, deleted);
    // One event per change, none per replay.
    assert_eq!(
        app.count("events", &format!("aggregate = '{}'", first.name))
            .await,
        3
    );
}

#[tokio::test]
async fn a_company_with_live_customers_is_deleted_only_by_force_which_detaches_them() {
    let app = TestApp::spawn().await;
    let acme = create_company(&app, company("Acme")).await.unwrap();
    let other = create_company(&app, company("Other")).await.unwrap();
    let ann = member(&app, &acme.name, "Ann", "Able", CustomerStatus::Active).await;
    let bob = member(
        &app,
        &acme.name,
        "Bob",
        "Baker",
        CustomerStatus::Prospective,
    )
    .await;
    let cid = member(&app, &other.name, "Cid", "Cole", CustomerStatus::Active).await;

    let status = delete_company(&app, &acme.name, false).await.unwrap_err();
    assert_reason(&status, Code::FailedPrecondition, "COMPANY_HAS_CUSTOMERS");
    assert!(status.message().contains("2 live customer"), "{status:?}");
    assert!(status.message().contains("force"), "{status:?}");
    let failure = crate::helpers::details(&status);
    assert_eq!(
        failure.precondition_failure().unwrap().violations[0].subject,
        acme.name
    );

    let deleted = delete_company(&app, &acme.name, true).await.unwrap();
    assert!(deleted.delete_time.is_some());
    for before in [&ann, &bob] {
        let after = get_customer(&app, &before.name).await;
        assert_eq!(after.company, "");
        assert_eq!(after.etag, "W/\"2\"");
        assert_eq!(after.given_name, before.given_name);
        let events = list_all(&app, &before.name, "").await;
        assert_eq!(
            events.iter().map(kind).collect::<Vec<_>>(),
            ["registered", "updated"]
        );
        assert_eq!(events[1].sequence, 2);
        assert_eq!(events[1].snapshot.as_ref(), Some(&after));
        let Some(Kind::Updated(diff)) = &events[1].kind else {
            panic!("an update: {:?}", events[1]);
        };
        assert_eq!(diff.changed_fields.as_ref().unwrap().paths, ["company"]);
        assert_eq!(diff.previous.as_ref().unwrap().company, acme.name);
    }
    // A customer of another company is untouched.
    assert_eq!(get_customer(&app, &cid.name).await, cid);
}

#[tokio::test]
async fn only_live_customers_hold_a_company_back() {
    let app = TestApp::spawn().await;
    let acme = create_company(&app, company("Acme")).await.unwrap();
    let ann = member(&app, &acme.name, "Ann", "Able", CustomerStatus::Active).await;
    app.delete_customer(&ann.name).await.unwrap();
    delete_company(&app, &acme.name, false).await.unwrap();

    // Undeleted, the customer comes back without the company that is gone.
    let back = app.undelete_customer(&ann.name).await.unwrap();
    assert_eq!(back.company, "");
    assert_eq!(back.delete_time, None);
    assert_eq!(back.etag, "W/\"3\"");
}

#[tokio::test]
async fn a_customer_must_refer_to_a_live_company() {
    let app = TestApp::spawn().await;
    let missing = format!("companies/{}", Uuid::now_v7());
    let mut customer = new_customer("Ann", "Able");
    customer.company = missing.clone();
    let status = app.create_customer(customer).await.unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["customer.company"]);
    assert!(status.message().contains("does not exist"), "{status:?}");

    let gone = create_company(&app, company("Gone")).await.unwrap();
    delete_company(&app, &gone.name, false).await.unwrap();
    let mut customer = new_customer("Ann", "Able");
    customer.company = gone.name.clone();
    let status = app.create_customer(customer).await.unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["customer.company"]);
    assert!(status.message().contains("is deleted"), "{status:?}");
    assert_eq!(app.count("customers", "").await, 0);

    // Update: a new reference is checked the same way.
    let acme = create_company(&app, company("Acme")).await.unwrap();
    let ann = member(&app, &acme.name, "Ann", "Able", CustomerStatus::Active).await;
    for target in [&missing, &gone.name] {
        let status = app
            .client
            .clone()
            .update_customer(pb::UpdateCustomerRequest {
                customer: Some(pb::Customer {
                    name: ann.name.clone(),
                    company: target.clone(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["company".into()],
                }),
                request_id: String::new(),
                allow_missing: false,
            })
            .await
            .unwrap_err();
        assert_invalid(&status, "INVALID_FIELDS", &["customer.company"]);
    }
    // Other changes keep the reference; clearing it is always allowed.
    let moved = app
        .client
        .clone()
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: ann.name.clone(),
                given_name: "Anne".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["given_name".into(), "company".into()],
            }),
            request_id: String::new(),
            allow_missing: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.company, "");
    assert_eq!(moved.given_name, "Anne");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_waits_for_a_customer_write_that_refers_to_the_company() {
    let app = TestApp::spawn().await;
    let acme = create_company(&app, company("Acme")).await.unwrap();
    // A customer write in flight: it holds the company's share lock, as CreateCustomer
    // does between checking the company and committing.
    let mut writer = app.db().await;
    writer
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM companies WHERE id = '{}' FOR SHARE",
            acme.uid
        ))
        .await
        .unwrap();
    let delete = tokio::spawn({
        let client = app.client.clone();
        let name = acme.name.clone();
        async move {
            client
                .clone()
                .delete_company(pb::DeleteCompanyRequest {
                    name,
                    ..Default::default()
                })
                .await
        }
    });
    eventually("the delete waits for the company row", || async {
        sessions_waiting_for_locks(&app).await == 1
    })
    .await;
    // The writer adds a live customer of the company and commits.
    writer
        .batch_execute(&format!(
            "INSERT INTO customers (id, given_name, family_name, email, status, company) \
             VALUES ('{}', 'Late', 'Comer', 'late@example.com', 1, '{}'); COMMIT",
            Uuid::now_v7(),
            acme.name
        ))
        .await
        .unwrap();
    let status = delete.await.unwrap().unwrap_err();
    assert_reason(&status, Code::FailedPrecondition, "COMPANY_HAS_CUSTOMERS");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_customer_write_waits_for_a_delete_of_its_company_and_sees_it() {
    let app = TestApp::spawn().await;
    let acme = create_company(&app, company("Acme")).await.unwrap();
    // A DeleteCompany in flight: it holds the company's update lock.
    let mut deleter = app.db().await;
    deleter
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM companies WHERE id = '{}' FOR UPDATE",
            acme.uid
        ))
        .await
        .unwrap();
    let create = tokio::spawn({
        let client = app.client.clone();
        let mut customer = new_customer("Ann", "Able");
        customer.company = acme.name.clone();
        async move {
            client
                .clone()
                .create_customer(pb::CreateCustomerRequest {
                    duplicate_policy: 0,
                    customer: Some(customer),
                    request_id: String::new(),
                })
                .await
        }
    });
    eventually("the create waits for the company row", || async {
        sessions_waiting_for_locks(&app).await == 1
    })
    .await;
    deleter
        .batch_execute(&format!(
            "UPDATE companies SET delete_time = now(), version = version + 1 \
             WHERE id = '{}'; COMMIT",
            acme.uid
        ))
        .await
        .unwrap();
    let status = create.await.unwrap().unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["customer.company"]);
    assert_eq!(app.count("customers", "").await, 0);
}

/// Every live company.
async fn page_of_all(app: &TestApp) -> Vec<pb::Company> {
    app.client
        .clone()
        .list_companies(pb::ListCompaniesRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .companies
}

#[tokio::test]
async fn companies_are_filtered_ordered_and_paged() {
    let app = TestApp::spawn().await;
    for (name, domain, tier) in [
        ("Acme", "acme.com", "gold"),
        ("Beta Corp", "beta.io", "silver"),
        ("Acorn", "acorn.org", "gold"),
        ("Zeta", "zeta.com", "bronze"),
    ] {
        create_company(
            &app,
            pb::Company {
                domain: domain.into(),
                labels: labels(&[("tier", tier)]),
                ..company(name)
            },
        )
        .await
        .unwrap();
    }
    let list = |filter: &str, order_by: &str, page_size: i32, page_token: String| {
        let mut client = app.client.clone();
        let request = pb::ListCompaniesRequest {
            page_size,
            page_token,
            filter: filter.into(),
            order_by: order_by.into(),
            show_deleted: false,
        };
        async move { client.list_companies(request).await }
    };
    let names = |page: &pb::ListCompaniesResponse| -> Vec<String> {
        page.companies
            .iter()
            .map(|c| c.display_name.clone())
            .collect()
    };
    let page = list("", "display_name desc", 0, String::new())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&page), ["Zeta", "Beta Corp", "Acorn", "Acme"]);
    let page = list(r#"display_name:"ac""#, "", 0, String::new())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&page), ["Acme", "Acorn"]);
    // By resource name or uid (several with OR).
    let zeta = page_of_all(&app)
        .await
        .into_iter()
        .find(|c| c.display_name == "Zeta")
        .unwrap();
    let by_name = format!(r#"name = "{}" OR display_name = "Acme""#, zeta.name);
    let page = list(&by_name, "display_name", 0, String::new())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&page), ["Acme", "Zeta"]);
    let page = list(
        &format!("uid != {}", zeta.uid),
        "display_name",
        0,
        String::new(),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(names(&page), ["Acme", "Acorn", "Beta Corp"]);
    let page = list(
        r#"labels.tier = "gold" AND domain = "ACME.com""#,
        "",
        0,
        String::new(),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(names(&page), ["Acme"]);

    // Pages of two, in display_name order, following the tokens.
    let first = list("", "display_name", 2, String::new())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&first), ["Acme", "Acorn"]);
    let second = list("", "display_name", 2, first.next_page_token.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&second), ["Beta Corp", "Zeta"]);
    assert_eq!(second.next_page_token, "");
    // A token belongs to its query.
    let status = list("", "display_name desc", 2, first.next_page_token)
        .await
        .unwrap_err();
    assert_invalid(&status, "INVALID_PAGE_TOKEN", &["page_token"]);

    let status = list("email = x", "family_name", -1, String::new())
        .await
        .unwrap_err();
    assert_invalid(
        &status,
        "INVALID_FIELDS",
        &["page_size", "filter", "order_by"],
    );
}

#[tokio::test]
async fn customers_of_a_company_are_listed_by_status_in_family_name_order() {
    let app = TestApp::spawn().await;
    let acme = create_company(&app, company("Acme")).await.unwrap();
    let beta = create_company(&app, company("Beta")).await.unwrap();
    for (given, family, status) in [
        ("Ann", "Adams", CustomerStatus::Prospective),
        ("Bob", "Brown", CustomerStatus::Active),
        ("Cid", "Clark", CustomerStatus::Prospective),
        ("Dan", "Davis", CustomerStatus::Inactive),
        ("Eve", "Evans", CustomerStatus::Prospective),
    ] {
        member(&app, &acme.name, given, family, status).await;
    }
    member(&app, &beta.name, "Fay", "Fox", CustomerStatus::Prospective).await;
    member(&app, &beta.name, "Gus", "Green", CustomerStatus::Active).await;
    let expected = ["Evans", "Clark", "Adams"];
    let families = |customers: &[pb::Customer]| -> Vec<String> {
        customers.iter().map(|c| c.family_name.clone()).collect()
    };

    // By filter, as ListCustomers always allowed.
    let by_filter = app
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
    assert_eq!(families(&by_filter.customers), expected);

    // By parent, combined with a filter, paged.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .client
            .clone()
            .list_customers(pb::ListCustomersRequest {
                parent: acme.name.clone(),
                filter: "status = PROSPECTIVE".into(),
                order_by: "family_name desc".into(),
                page_size: 2,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(families(&page.customers));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, expected);

    // REST: the company's customers collection.
    let id = acme.name.strip_prefix("companies/").unwrap();
    let (status, _, body) = call(
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
    assert_eq!(status, StatusCode::OK, "{body}");
    let rest: Vec<&str> = body["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["familyName"].as_str().unwrap())
        .collect();
    assert_eq!(rest, expected);
    let (status, _, body) = call(
        &app,
        true,
        Method::GET,
        &format!("/v1/companies/{id}/customers"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["customers"].as_array().unwrap().len(), 5);

    // The customers of a company that does not exist are NOT_FOUND; a malformed parent is
    // INVALID_ARGUMENT.
    let status = app
        .client
        .clone()
        .list_customers(pb::ListCustomersRequest {
            parent: format!("companies/{}", Uuid::now_v7()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
    let status = app
        .client
        .clone()
        .list_customers(pb::ListCustomersRequest {
            parent: "customers/x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["parent"]);
}

async fn undelete_company(
    app: &TestApp,
    name: &str,
    etag: &str,
) -> Result<pb::Company, tonic::Status> {
    app.client
        .clone()
        .undelete_company(pb::UndeleteCompanyRequest {
            name: name.into(),
            etag: etag.into(),
            request_id: String::new(),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_deleted_company_comes_back_unless_its_business_id_was_taken() {
    let app = TestApp::spawn().await;
    let acme = create_company(
        &app,
        pb::Company {
            business_id: "GB-1".into(),
            ..company("Acme")
        },
    )
    .await
    .unwrap();
    let status = undelete_company(&app, &acme.name, "").await.unwrap_err();
    assert_reason(&status, Code::AlreadyExists, "COMPANY_NOT_DELETED");
    let deleted = delete_company(&app, &acme.name, false).await.unwrap();
    // While Acme is deleted its business id is free, and another company takes it.
    let heir = create_company(
        &app,
        pb::Company {
            business_id: "GB-1".into(),
            ..company("Acme Heir")
        },
    )
    .await
    .unwrap();
    let status = undelete_company(&app, &acme.name, "").await.unwrap_err();
    assert_reason(&status, Code::AlreadyExists, "BUSINESS_ID_ALREADY_EXISTS");
    let still = app
        .client
        .clone()
        .get_company(pb::GetCompanyRequest {
            name: acme.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(still, deleted, "a refused undelete changes nothing");

    delete_company(&app, &heir.name, false).await.unwrap();
    let status = undelete_company(&app, &acme.name, &acme.etag)
        .await
        .unwrap_err();
    assert_reason(&status, Code::Aborted, "ETAG_MISMATCH");
    let restored = undelete_company(&app, &acme.name, &deleted.etag)
        .await
        .unwrap();
    assert_eq!(restored.delete_time, None);
    assert_eq!(restored.business_id, "GB-1");
    assert_eq!(restored.etag, "W/\"3\"");
    // Live again: customers may refer to it.
    let customer = member(&app, &acme.name, "Ann", "Able", CustomerStatus::Active).await;
    assert_eq!(customer.company, acme.name);

    let status = undelete_company(&app, &format!("companies/{}", Uuid::now_v7()), "")
        .await
        .unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
    let status = undelete_company(&app, "customers/x", "").await.unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["name"]);

    let events = list_all(&app, "customers/-", "").await;
    let acme_events: Vec<&str> = events
        .iter()
        .filter(|e| e.resource == acme.name)
        .map(kind)
        .collect();
    assert_eq!(
        acme_events,
        ["company_created", "company_deleted", "company_undeleted"]
    );
    let undeleted = events
        .iter()
        .find(|e| kind(e) == "company_undeleted")
        .unwrap();
    assert_eq!(undeleted.sequence, 3);
    let Some(Kind::CompanyUndeleted(change)) = &undeleted.kind else {
        panic!("{undeleted:?}");
    };
    assert_eq!(change.company.as_ref(), Some(&restored));

    // Over REST: POST …:undelete, 200 with the company; again is 409 ALREADY_EXISTS.
    delete_company(&app, &acme.name, true).await.unwrap();
    let path = format!("/v1/{}:undelete", acme.name);
    let (status, headers, body) = call(&app, false, Method::POST, &path, Some("{}"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("deleteTime").is_none(), "{body}");
    assert_eq!(headers["etag"], "W/\"5\"");
    let (status, _, error) = call(&app, false, Method::POST, &path, Some("{}"), &[]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert_eq!(error_reason(&error), "COMPANY_NOT_DELETED");
    // The customer a forced delete detached stays detached.
    assert_eq!(get_customer(&app, &customer.name).await.company, "");
}

#[tokio::test]
async fn company_changes_are_recorded_as_company_events() {
    let app = TestApp::spawn().await;
    let request_id = Uuid::new_v4().to_string();
    let created = app
        .client
        .clone()
        .create_company(pb::CreateCompanyRequest {
            duplicate_policy: 0,
            company: Some(pb::Company {
                domain: "acme.com".into(),
                ..company("Acme")
            }),
            request_id: request_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let updated = update_company(
        &app,
        pb::Company {
            name: created.name.clone(),
            display_name: "Acme plc".into(),
            domain: "acme.co.uk".into(),
            ..Default::default()
        },
        &["display_name", "domain"],
    )
    .await
    .unwrap();
    let deleted = delete_company(&app, &created.name, false).await.unwrap();

    let events = list_all(&app, "customers/-", "").await;
    assert_eq!(
        events.iter().map(kind).collect::<Vec<_>>(),
        ["company_created", "company_updated", "company_deleted"]
    );
    assert_eq!(
        events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    for event in &events {
        assert_eq!(event.resource, created.name);
        assert_eq!(event.customer, "");
        assert_eq!(event.snapshot, None);
        assert_eq!(event.actor, "test-user");
    }
    assert_eq!(events[0].request_id, request_id);
    let Some(Kind::CompanyCreated(first)) = &events[0].kind else {
        panic!("{:?}", events[0]);
    };
    assert_eq!(first.company.as_ref(), Some(&created));
    let Some(Kind::CompanyUpdated(change)) = &events[1].kind else {
        panic!("{:?}", events[1]);
    };
    assert_eq!(change.company.as_ref(), Some(&updated));
    assert_eq!(
        change.changed_fields.as_ref().unwrap().paths,
        ["display_name", "domain"]
    );
    let previous = change.previous.as_ref().unwrap();
    assert_eq!(previous.display_name, "Acme");
    assert_eq!(previous.domain, "acme.com");
    assert_eq!(previous.name, "");
    let Some(Kind::CompanyDeleted(last)) = &events[2].kind else {
        panic!("{:?}", events[2]);
    };
    assert_eq!(last.company.as_ref(), Some(&deleted));

    // The event type filter knows the company types.
    let updates = list_all(&app, "customers/-", "type = CompanyUpdated").await;
    assert_eq!(updates.len(), 1);
    // A customer's own stream does not include company events.
    let ann = app.create("Ann", "Able").await;
    assert_eq!(list_all(&app, &ann.name, "").await.len(), 1);

    // One company's stream: its events only, listed (gRPC and REST) and watched live.
    let other = create_company(&app, company("Other")).await.unwrap();
    assert_eq!(list_all(&app, &created.name, "").await, events);
    assert_eq!(
        list_all(&app, &other.name, "")
            .await
            .iter()
            .map(kind)
            .collect::<Vec<_>>(),
        ["company_created"]
    );
    let (status, _, page) = call(
        &app,
        true,
        Method::GET,
        &format!("/v1/{}/events", created.name),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["events"].as_array().unwrap().len(), 3);
    let mut stream = app.watch(&other.name, "").await.unwrap();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(kind(&first), "company_created");
    update_company(
        &app,
        pb::Company {
            name: other.name.clone(),
            display_name: "Other plc".into(),
            ..Default::default()
        },
        &["display_name"],
    )
    .await
    .unwrap();
    // Another company's change in between is not this stream's.
    create_company(&app, company("Third")).await.unwrap();
    let next = stream.message().await.unwrap().unwrap();
    assert_eq!(kind(&next), "company_updated");
    assert_eq!(next.resource, other.name);
    assert_eq!(next.sequence, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn companies_over_rest() {
    let app = TestApp::spawn().await;
    let body =
        json!({"displayName": "Acme", "domain": "acme.com", "businessId": "US-1"}).to_string();
    let (status, headers, created) =
        call(&app, false, Method::POST, "/v1/companies", Some(&body), &[]).await;
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
        [
            "businessId",
            "createTime",
            "displayName",
            "domain",
            "etag",
            "labels",
            "name",
            "uid",
            "updateTime"
        ]
    );

    let (status, _, got) = call(&app, true, Method::GET, &format!("/v1/{name}"), None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, created);

    // PATCH derives the mask from the keys sent; a stale If-Match is 412.
    let patch = json!({"displayName": "Acme plc"}).to_string();
    let (status, _, patched) = call(
        &app,
        false,
        Method::PATCH,
        &format!("/v1/{name}"),
        Some(&patch),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["displayName"], "Acme plc");
    assert_eq!(patched["domain"], "acme.com");
    let (status, _, error) = call(
        &app,
        false,
        Method::PATCH,
        &format!("/v1/{name}"),
        Some(&patch),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{error}");
    assert_eq!(error_reason(&error), "ETAG_MISMATCH");

    // PUT replaces the whole company: what the body leaves out is cleared. Stale is 412.
    let put = json!({"displayName": "Acme Group", "labels": {"tier": "gold"}}).to_string();
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
    assert_eq!(replaced["displayName"], "Acme Group");
    assert_eq!(replaced["domain"], "");
    assert_eq!(replaced["businessId"], "");
    assert_eq!(replaced["labels"], json!({"tier": "gold"}));
    assert_eq!(headers["etag"], "W/\"3\"");
    assert_eq!(replaced["createTime"], created["createTime"]);
    // A PUT must still make a valid company: no display name is 400.
    let (status, _, error) = call(
        &app,
        false,
        Method::PUT,
        &format!("/v1/{name}"),
        Some(&json!({"domain": "acme.com"}).to_string()),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(violations(&error), ["company.display_name"]);
    // Put the business id back for the duplicate check below.
    let restore = json!({"businessId": "US-1"}).to_string();
    let (status, _, _) = call(
        &app,
        false,
        Method::PATCH,
        &format!("/v1/{name}"),
        Some(&restore),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Validation errors are 400 with every field; a duplicate business id is 409.
    let bad = json!({"displayName": "", "domain": "nope"}).to_string();
    let (status, _, error) =
        call(&app, false, Method::POST, "/v1/companies", Some(&bad), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        violations(&error),
        ["company.display_name", "company.domain"]
    );
    let duplicate = json!({"displayName": "Copy", "businessId": "US-1"}).to_string();
    let (status, _, error) = call(
        &app,
        false,
        Method::POST,
        "/v1/companies",
        Some(&duplicate),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_reason(&error), "BUSINESS_ID_ALREADY_EXISTS");

    let (status, _, list) = call(
        &app,
        false,
        Method::GET,
        "/v1/companies?filter=display_name%3A%22acme%22&orderBy=display_name%20desc",
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["companies"].as_array().unwrap().len(), 1);
    assert_eq!(list["nextPageToken"], "");

    // DELETE with customers: 400 FAILED_PRECONDITION, then `force`.
    let customer = json!({
        "givenName": "Ann", "familyName": "Able", "email": "ann@example.com", "company": name
    })
    .to_string();
    let (status, _, ann) = call(
        &app,
        false,
        Method::POST,
        "/v1/customers",
        Some(&customer),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{ann}");
    let (status, _, error) = call(
        &app,
        false,
        Method::DELETE,
        &format!("/v1/{name}"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"]["status"], "FAILED_PRECONDITION");
    assert_eq!(error_reason(&error), "COMPANY_HAS_CUSTOMERS");
    let (status, _, deleted) = call(
        &app,
        false,
        Method::DELETE,
        &format!("/v1/{name}?force=true"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert!(deleted["deleteTime"].is_string());
    let (_, _, ann) = call(
        &app,
        false,
        Method::GET,
        &format!("/v1/{}", ann["name"].as_str().unwrap()),
        None,
        &[],
    )
    .await;
    assert_eq!(ann["company"], "");

    let (status, _, error) = call(
        &app,
        false,
        Method::GET,
        &format!("/v1/companies/{}", Uuid::now_v7()),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_reason(&error), "RESOURCE_NOT_FOUND");
}

#[tokio::test]
async fn company_rpcs_need_the_customer_scopes() {
    let app = TestApp::spawn().await;
    let mut settings = customer_api::config::ServeSettings::for_database("unused");
    settings.auth.jwt_hs256_secret = Some(crate::helpers::TEST_SECRET.into());
    let reader = format!(
        "Bearer {}",
        crate::helpers::mint(&settings, "reader", &["customers.read"])
    );
    let writer = format!(
        "Bearer {}",
        crate::helpers::mint(&settings, "writer", &["customers.write"])
    );
    let status = app
        .client_with(Some(&reader))
        .create_company(pb::CreateCompanyRequest {
            duplicate_policy: 0,
            company: Some(company("Acme")),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("customers.write"), "{status:?}");
    let created = app
        .client_with(Some(&writer))
        .create_company(pb::CreateCompanyRequest {
            duplicate_policy: 0,
            company: Some(company("Acme")),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let status = app
        .client_with(Some(&writer))
        .get_company(pb::GetCompanyRequest {
            name: created.name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let got = app
        .client_with(Some(&reader))
        .get_company(pb::GetCompanyRequest {
            name: created.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, created);
    let status = app
        .client_with(None)
        .list_companies(pb::ListCompaniesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

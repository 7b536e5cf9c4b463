//! The gRPC adapter: `customer.v1.CustomerService` over the service layer (and, in
//! [`api_keys`], `customer.v1.ApiKeyService`).
//!
//! Each RPC takes its request apart, calls one use case and answers with the resource's
//! contract message ([`Resource::to_message`]); errors become statuses through [`status`].
//! The writes and lists of every resource go through the same generic functions below, over
//! the request traits of [`requests`]. No business rule lives here. gRPC-web and the REST gateway reach the same trait
//! implementation, so this is the only adapter there is.

pub mod api_keys;
pub mod body;
pub mod codec;
pub mod content_type;
pub mod deadline;
pub mod middleware;
pub mod operations;
mod requests;
pub mod status;

use futures_util::StreamExt as _;
use tonic::{Request, Response, Status};

use self::requests::{Create, Delete, Get, List, Message, Undelete, Update};
use crate::{
    auth::Principal,
    convert::{self, events::event_to_proto, timestamp},
    core::{
        list::ListRequest,
        store::{Repository, Restore, Store},
    },
    db::store::PgStore,
    domain::customer::Customer,
    pb,
    resources::{Resource, customers},
    service::{CustomerService, events::WatchItem},
};

/// The server-streaming response of WatchCustomerEvents.
pub type EventStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::CustomerEvent, Status>> + Send>>;

/// The server-streaming response of ExportCustomers.
pub type CustomerStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::Customer, Status>> + Send>>;

/// Response metadata of ExportCustomers (and header of its REST form): the sources of the
/// external ids in the export's snapshot, comma-separated and sorted — the
/// `external_ids.<source>` columns of a CSV export ([`crate::convert::csv`]).
pub const EXTERNAL_ID_SOURCES_HEADER: &str = "export-external-id-sources";

/// The tonic service implementation.
#[derive(Debug, Clone)]
pub struct CustomerApi {
    service: CustomerService,
}

type RpcResult<T> = Result<Response<T>, Status>;

/// The connection type resources are stored through.
type Conn = <PgStore as Store>::Conn;

impl CustomerApi {
    /// The adapter over `service`.
    pub fn new(service: CustomerService) -> Self {
        Self { service }
    }

    async fn create<Q: Create>(&self, request: Request<Q>) -> RpcResult<Message<Q::Resource>>
    where
        Conn: Repository<Q::Resource>,
    {
        let (actor, mut request) = (actor(&request), request.into_inner());
        let input = request.take_resource().map(Q::Resource::input_from);
        let writer = self.service.writer();
        let created = writer
            .create::<Q::Resource>(
                request.parent(),
                input.unwrap_or_default(),
                request.request_id(),
                &actor,
            )
            .await?;
        Ok(Response::new(created.to_message()))
    }

    async fn get<Q: Get>(&self, request: Request<Q>) -> RpcResult<Message<Q::Resource>>
    where
        Conn: Repository<Q::Resource>,
    {
        let name = request.get_ref().name();
        let found = self.service.writer().get::<Q::Resource>(name).await?;
        Ok(Response::new(found.to_message()))
    }

    async fn update<Q: Update>(&self, request: Request<Q>) -> RpcResult<Message<Q::Resource>>
    where
        Conn: Repository<Q::Resource>,
    {
        let (actor, request) = (actor(&request), request.into_inner().into_core());
        let writer = self.service.writer();
        let updated = writer.update::<Q::Resource>(request, &actor).await?;
        Ok(Response::new(updated.to_message()))
    }

    async fn delete<Q: Delete>(&self, request: Request<Q>) -> RpcResult<Q::Reply>
    where
        Conn: Repository<Q::Resource>,
    {
        let (actor, request) = (actor(&request), request.into_inner().into_core());
        let writer = self.service.writer();
        let deleted = writer.delete::<Q::Resource>(request, &actor).await?;
        Ok(Response::new(Q::reply(deleted)))
    }

    async fn undelete<Q: Undelete>(&self, request: Request<Q>) -> RpcResult<Message<Q::Resource>>
    where
        Conn: Restore<Q::Resource>,
    {
        let (actor, request) = (actor(&request), request.get_ref());
        let writer = self.service.writer();
        let restored = writer
            .undelete::<Q::Resource>(request.name(), request.etag(), request.request_id(), &actor)
            .await?;
        Ok(Response::new(restored.to_message()))
    }

    async fn list<Q: List>(&self, request: Request<Q>) -> RpcResult<Q::Response> {
        let privileged = privileged(&request);
        let request = ListRequest {
            privileged,
            ..request.into_inner().into()
        };
        let page = Q::page(&self.service, request).await?;
        Ok(Response::new(Q::respond(page)))
    }
}

/// The service trait, each RPC one call: `rpc(Request) -> Response = method;` answers
/// `rpc` with `self.method(request)` — a generic write or list above, or one of the RPCs
/// only one resource has below; `streams` names the types of the streaming responses.
macro_rules! customer_service {
    (streams { $($stream:ident = $item:ty;)* } $($rpc:ident($request:ty) -> $response:ty = $method:ident;)*) => {
        #[tonic::async_trait]
        impl pb::customer_service_server::CustomerService for CustomerApi {
            $(type $stream = $item;)*
            $(
                async fn $rpc(&self, request: Request<$request>) -> RpcResult<$response> {
                    self.$method(request).await
                }
            )*
        }
    };
}

customer_service! {
    streams {
        ExportCustomersStream = CustomerStream;
        WatchCustomerEventsStream = EventStream;
    }
    // The writes and lists, one generic call each.
    list_customers(pb::ListCustomersRequest) -> pb::ListCustomersResponse = list;
    update_customer(pb::UpdateCustomerRequest) -> pb::Customer = update;
    delete_customer(pb::DeleteCustomerRequest) -> pb::Customer = delete;
    undelete_customer(pb::UndeleteCustomerRequest) -> pb::Customer = undelete;
    list_customer_events(pb::ListCustomerEventsRequest) -> pb::ListCustomerEventsResponse = list;
    get_company(pb::GetCompanyRequest) -> pb::Company = get;
    list_companies(pb::ListCompaniesRequest) -> pb::ListCompaniesResponse = list;
    update_company(pb::UpdateCompanyRequest) -> pb::Company = update;
    delete_company(pb::DeleteCompanyRequest) -> pb::Company = delete;
    undelete_company(pb::UndeleteCompanyRequest) -> pb::Company = undelete;
    create_note(pb::CreateNoteRequest) -> pb::Note = create;
    get_note(pb::GetNoteRequest) -> pb::Note = get;
    list_notes(pb::ListNotesRequest) -> pb::ListNotesResponse = list;
    update_note(pb::UpdateNoteRequest) -> pb::Note = update;
    delete_note(pb::DeleteNoteRequest) -> () = delete;
    // What only customers have.
    create_customer(pb::CreateCustomerRequest) -> pb::Customer = create_customer;
    create_company(pb::CreateCompanyRequest) -> pb::Company = create_company;
    get_customer(pb::GetCustomerRequest) -> pb::Customer = get_customer_in_view;
    batch_get_customers(pb::BatchGetCustomersRequest) -> pb::BatchGetCustomersResponse = batch_get;
    upsert_customer(pb::UpsertCustomerRequest) -> pb::Customer = upsert;
    lookup_customer(pb::LookupCustomerRequest) -> pb::Customer = lookup;
    export_customers(pb::ExportCustomersRequest) -> CustomerStream = export;
    import_customers(tonic::Streaming<pb::ImportCustomersRequest>) -> crate::longrunning::Operation = import;
    watch_customer_events(pb::WatchCustomerEventsRequest) -> EventStream = watch;
    get_business_info(pb::GetBusinessInfoRequest) -> pb::BusinessInfo = business_info;
    erase_customer(pb::EraseCustomerRequest) -> pb::CustomerErasure = erase;
    export_customer_data(pb::ExportCustomerDataRequest) -> pb::CustomerDataExport = export_data;
    find_duplicate_customers(pb::FindDuplicateCustomersRequest) -> pb::FindDuplicateCustomersResponse = find_duplicates;
    merge_customers(pb::MergeCustomersRequest) -> pb::MergeCustomersResponse = merge;
    unmerge_customers(pb::UnmergeCustomersRequest) -> pb::UnmergeCustomersResponse = unmerge;
}

/// The RPCs only one resource has.
impl CustomerApi {
    /// CreateCustomer: the generic create, or under a duplicate policy (WARN names the
    /// likely duplicates in response metadata, REJECT refuses while there are any).
    async fn create_customer(
        &self,
        request: Request<pb::CreateCustomerRequest>,
    ) -> RpcResult<pb::Customer> {
        if matches!(request.get_ref().duplicate_policy, 0 | 1) {
            return self.create(request).await;
        }
        let (actor, request) = (actor(&request), request.into_inner());
        let input = request
            .customer
            .map(Customer::input_from)
            .unwrap_or_default();
        let (created, candidates) = self
            .service
            .create_customer(input, &request.request_id, request.duplicate_policy, &actor)
            .await?;
        Ok(with_candidates(
            Response::new(created.to_message()),
            &candidates,
        ))
    }

    /// CreateCompany: the generic create, or under a duplicate policy (live companies with
    /// the same domain).
    async fn create_company(
        &self,
        request: Request<pb::CreateCompanyRequest>,
    ) -> RpcResult<pb::Company> {
        if matches!(request.get_ref().duplicate_policy, 0 | 1) {
            return self.create(request).await;
        }
        let (actor, request) = (actor(&request), request.into_inner());
        let input = request
            .company
            .map(crate::domain::company::Company::input_from)
            .unwrap_or_default();
        let (created, candidates) = self
            .service
            .create_company(input, &request.request_id, request.duplicate_policy, &actor)
            .await?;
        Ok(with_candidates(
            Response::new(created.to_message()),
            &candidates,
        ))
    }

    /// MergeCustomers: duplicates merged into one customer, in one transaction.
    async fn merge(
        &self,
        request: Request<pb::MergeCustomersRequest>,
    ) -> RpcResult<pb::MergeCustomersResponse> {
        let (actor, request) = (actor(&request), request.into_inner());
        let outcome = self
            .service
            .merge(
                crate::service::merge::MergeRequest {
                    target: request.target,
                    sources: request.sources,
                    choices: request
                        .field_policy
                        .map(|policy| policy.choices.into_iter().collect())
                        .unwrap_or_default(),
                    etag: request.etag,
                    request_id: request.request_id,
                },
                &actor,
            )
            .await?;
        Ok(Response::new(convert::merge::outcome_to_proto(outcome)))
    }

    /// UnmergeCustomers: a merge undone from its record.
    async fn unmerge(
        &self,
        request: Request<pb::UnmergeCustomersRequest>,
    ) -> RpcResult<pb::UnmergeCustomersResponse> {
        let (actor, request) = (actor(&request), request.into_inner());
        let outcome = self
            .service
            .unmerge(
                crate::service::merge::UnmergeRequest {
                    name: request.name,
                    request_id: request.request_id,
                },
                &actor,
            )
            .await?;
        Ok(Response::new(convert::merge::unmerge_to_proto(outcome)))
    }

    /// GetCustomer: the BASIC view is the generic get; FULL adds the registry's answer.
    async fn get_customer_in_view(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> RpcResult<pb::Customer> {
        // prost maps an unknown enum number to the default; a number outside the enum is
        // refused, as an unknown `status` is.
        if pb::CustomerView::try_from(request.get_ref().view).is_err() {
            return Err(crate::service::Error::invalid_field(
                crate::service::error::reason::INVALID_FIELDS,
                "view",
                format!("unknown view {}: use BASIC or FULL", request.get_ref().view),
            )
            .into());
        }
        if request.get_ref().view() != pb::CustomerView::Full {
            return self.get(request).await;
        }
        let (customer, business) = self.service.get_full(&request.get_ref().name).await?;
        Ok(Response::new(pb::Customer {
            business_info: business.map(business_to_proto),
            ..customer.to_message()
        }))
    }

    /// BatchGetCustomers: all or nothing, in the order asked.
    async fn batch_get(
        &self,
        request: Request<pb::BatchGetCustomersRequest>,
    ) -> RpcResult<pb::BatchGetCustomersResponse> {
        let customers = self.service.batch_get(&request.get_ref().names).await?;
        Ok(Response::new(pb::BatchGetCustomersResponse { customers }))
    }

    /// UpsertCustomer: a create or an update addressed by an external key.
    async fn upsert(&self, request: Request<pb::UpsertCustomerRequest>) -> RpcResult<pb::Customer> {
        let (actor, request) = (actor(&request), request.into_inner());
        let upsert = customers::UpsertRequest {
            input: request
                .customer
                .map(Customer::input_from)
                .unwrap_or_default(),
            source: request.source,
            external_id: request.external_id,
            update_mask: request.update_mask.map(|mask| mask.paths),
            request_id: request.request_id,
        };
        let upserted = customers::upsert(self.service.writer(), upsert, &actor).await?;
        Ok(Response::new(upserted.to_message()))
    }

    /// LookupCustomer: the customer an external key names.
    async fn lookup(&self, request: Request<pb::LookupCustomerRequest>) -> RpcResult<pb::Customer> {
        let request = request.get_ref();
        let found =
            customers::lookup(self.service.writer(), &request.source, &request.external_id).await?;
        Ok(Response::new(found.to_message()))
    }

    /// ExportCustomers: every matching customer, streamed.
    async fn export(
        &self,
        request: Request<pb::ExportCustomersRequest>,
    ) -> RpcResult<CustomerStream> {
        let request = request.get_ref();
        let export = self
            .service
            .export(&request.filter, request.show_deleted)
            .await?;
        let stream = futures_util::stream::unfold(export.customers, |mut receiver| async move {
            let item = receiver.recv().await?;
            Some((
                item.map(Resource::to_message).map_err(Status::from),
                receiver,
            ))
        });
        let mut response = Response::new(Box::pin(stream) as CustomerStream);
        // Sources match `[a-z][a-z0-9_]*`, so the comma-separated list is a valid value.
        if let Ok(sources) = export.external_id_sources.join(",").parse() {
            response
                .metadata_mut()
                .insert(EXTERNAL_ID_SOURCES_HEADER, sources);
        }
        Ok(response)
    }

    /// ImportCustomers: the settings from the first message, the rest streamed into the
    /// import; the operation as it ended.
    async fn import(
        &self,
        request: Request<tonic::Streaming<pb::ImportCustomersRequest>>,
    ) -> RpcResult<crate::longrunning::Operation> {
        let actor = actor(&request);
        let mut stream = request.into_inner();
        let (settings, first) = operations::first_message(stream.message().await?)?;
        let rest = stream.map(operations::later_message);
        let parts =
            futures_util::stream::iter(first.into_iter().map(Ok::<_, crate::service::Error>))
                .chain(rest.flat_map(futures_util::stream::iter));
        let operation = self
            .service
            .import(settings, &actor, Box::pin(parts))
            .await?;
        Ok(Response::new(convert::operations::operation_to_proto(
            &operation,
        )))
    }

    /// WatchCustomerEvents: the change stream from a resume token.
    async fn watch(
        &self,
        request: Request<pb::WatchCustomerEventsRequest>,
    ) -> RpcResult<EventStream> {
        // Each caller has a share of the open watches, held until the stream is dropped.
        let permit = self
            .service
            .events()
            .watch_limits()
            .admit(&caller(&request))?;
        let privileged = privileged(&request);
        let request = request.get_ref();
        let watch = self
            .service
            .events()
            .watch(&request.parent, &request.start_after, privileged)
            .await?;
        let stream = futures_util::stream::unfold(Some((watch, permit)), |state| async move {
            let (mut watch, permit) = state?;
            let item = match watch.next().await? {
                WatchItem::Event(event) => event
                    .map(|event| event_to_proto(event, true))
                    .map_err(Status::from),
                WatchItem::SlowConsumer { resume_after } => {
                    return Some((Err(slow_consumer(resume_after)), None));
                }
            };
            Some((item, Some((watch, permit))))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    /// GetBusinessInfo: the registry's answer for a business id.
    async fn business_info(
        &self,
        request: Request<pb::GetBusinessInfoRequest>,
    ) -> RpcResult<pb::BusinessInfo> {
        let info = self.service.business_info(&request.get_ref().name).await?;
        Ok(Response::new(business_to_proto(info)))
    }

    /// EraseCustomer: the customer and its personal data gone at once, for good.
    async fn erase(
        &self,
        request: Request<pb::EraseCustomerRequest>,
    ) -> RpcResult<pb::CustomerErasure> {
        let (actor, request) = (actor(&request), request.into_inner());
        let erasure = self
            .service
            .erase(
                crate::service::privacy::EraseRequest {
                    name: request.name,
                    reason: request.reason,
                    reference: request.reference,
                    request_id: request.request_id,
                },
                &actor,
            )
            .await?;
        Ok(Response::new(convert::privacy::erasure_to_proto(erasure)))
    }

    /// ExportCustomerData: everything held about one person, as one document.
    async fn export_data(
        &self,
        request: Request<pb::ExportCustomerDataRequest>,
    ) -> RpcResult<pb::CustomerDataExport> {
        let export = self.service.export_data(&request.get_ref().name).await?;
        // REST passes response metadata on as headers: the document is a download.
        let disposition = format!(
            "attachment; filename=\"customer-{}.json\"",
            export.customer.stored.id
        );
        let mut response = Response::new(pb::CustomerDataExport {
            customer: Some(pb::Customer {
                business_info: export.business.map(business_to_proto),
                ..export.customer.to_message()
            }),
            notes: export.notes.into_iter().map(Resource::to_message).collect(),
            events: export
                .events
                .into_iter()
                .map(|event| event_to_proto(event, false))
                .collect(),
            export_time: Some(timestamp(export.export_time)),
        });
        if let Ok(value) = disposition.parse() {
            response.metadata_mut().insert("content-disposition", value);
        }
        Ok(response)
    }

    /// FindDuplicateCustomers: the live customers most like a probe, best first.
    async fn find_duplicates(
        &self,
        request: Request<pb::FindDuplicateCustomersRequest>,
    ) -> RpcResult<pb::FindDuplicateCustomersResponse> {
        let request = request.into_inner();
        let page = self
            .service
            .find_duplicates(crate::service::duplicates::DuplicatesRequest {
                name: request.name,
                customer: request.customer.map(Customer::input_from),
                page_size: request.page_size,
                page_token: request.page_token,
            })
            .await?;
        Ok(Response::new(pb::FindDuplicateCustomersResponse {
            candidates: page
                .items
                .into_iter()
                .map(|candidate| pb::DuplicateCandidate {
                    customer: Some(candidate.customer),
                    score: candidate.score,
                    reasons: candidate.reasons.iter().map(|r| r.number()).collect(),
                })
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }
}

/// `response` naming the likely duplicates, when there are any, in its metadata (REST: a
/// header) `duplicate-candidates`, comma-separated.
fn with_candidates<T>(mut response: Response<T>, candidates: &[String]) -> Response<T> {
    // Resource names are ASCII: always a valid value.
    if !candidates.is_empty()
        && let Ok(value) = candidates.join(",").parse()
    {
        response.metadata_mut().insert(
            crate::service::duplicates::DUPLICATE_CANDIDATES_HEADER,
            value,
        );
    }
    response
}

/// A registry answer as its proto message.
fn business_to_proto(info: crate::registry::BusinessInfo) -> pb::BusinessInfo {
    use crate::registry::RegistrationStatus as S;
    use pb::business_info::RegistrationStatus as P;
    let status = match info.registration_status {
        S::Active => P::Active,
        S::Inactive => P::Inactive,
        S::InLiquidation => P::InLiquidation,
        S::Dissolved => P::Dissolved,
        S::Unknown => P::Unspecified,
    };
    pb::BusinessInfo {
        name: crate::registry::business_name(&info.business_id),
        business_id: info.business_id,
        legal_name: info.legal_name,
        registration_status: status as i32,
        address: info.address.map(convert::address_to_proto),
        source: info.source,
        fetch_time: Some(timestamp(info.fetch_time)),
    }
}

/// The status ending a watch whose client did not read: UNAVAILABLE, retry, with the resume
/// token of the last event it was sent in `ErrorInfo.metadata.resumeToken`.
fn slow_consumer(resume_after: i64) -> Status {
    use tonic_types::{ErrorDetails, StatusExt};
    let mut details = ErrorDetails::new();
    details.set_error_info(
        crate::service::error::reason::SLOW_CONSUMER,
        crate::service::error::ERROR_DOMAIN,
        [(
            "resumeToken".to_owned(),
            crate::service::events::resume_token(resume_after),
        )],
    );
    details.set_retry_info(Some(std::time::Duration::from_secs(1)));
    Status::with_error_details(
        tonic::Code::Unavailable,
        "the watch was ended because its client did not read for WATCH_SLOW_CONSUMER_TIMEOUT; \
         watch again from the resumeToken",
        details,
    )
}

/// Whether the caller holds `customers.admin`, which shows soft-deleted customers' history
/// with its personal data.
pub(crate) fn privileged<T>(request: &Request<T>) -> bool {
    request
        .extensions()
        .get::<std::sync::Arc<Principal>>()
        .is_some_and(|principal| principal.has(crate::auth::scopes::ADMIN))
}

/// Who is calling: set by the auth layer, which runs before every protected method.
pub(crate) fn actor<T>(request: &Request<T>) -> String {
    caller(request).to_string()
}

/// [`actor`], shared rather than copied (the key of the per-caller limits).
fn caller<T>(request: &Request<T>) -> std::sync::Arc<str> {
    request
        .extensions()
        .get::<std::sync::Arc<Principal>>()
        .map_or_else(|| "unknown".into(), |principal| principal.subject.clone())
}

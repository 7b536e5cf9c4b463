//! The gRPC adapter: `customer.v1.CustomerService` over the service layer.
//!
//! Each RPC takes its request apart, calls one use case and answers with the resource's
//! contract message ([`Resource::to_message`]); errors become statuses through [`status`].
//! The writes of every resource go through the same five generic functions below. No
//! business rule lives here. gRPC-web and the REST gateway reach the same trait
//! implementation, so this is the only adapter there is.

pub mod codec;
pub mod content_type;
pub mod deadline;
pub mod middleware;
pub mod status;

use prost_types::FieldMask;
use tonic::{Request, Response, Status};

use crate::{
    auth::Principal,
    convert::{self, events::event_to_proto, timestamp},
    core::{
        store::{Repository, Restore, Store},
        write::{DeleteRequest, UpdateRequest},
    },
    db::store::PgStore,
    domain::{company::Company, customer::Customer, note::Note},
    pb,
    resources::Resource,
    service::{
        CustomerService, ListRequest, companies::CompanyListRequest, events::EventListRequest,
        notes::NoteListRequest,
    },
};

/// The server-streaming response of WatchCustomerEvents.
pub type EventStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::CustomerEvent, Status>> + Send>>;

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

    async fn create<R: Resource>(
        &self,
        actor: &str,
        parent: &str,
        message: Option<&R::Message>,
        request_id: &str,
    ) -> RpcResult<R::Message>
    where
        Conn: Repository<R>,
    {
        let input = message.map(R::input_from).unwrap_or_default();
        let writer = self.service.writer();
        let created = writer.create::<R>(parent, input, request_id, actor).await?;
        Ok(Response::new(created.to_message()))
    }

    async fn get<R: Resource>(&self, name: &str) -> RpcResult<R::Message>
    where
        Conn: Repository<R>,
    {
        let found = self.service.writer().get::<R>(name).await?;
        Ok(Response::new(found.to_message()))
    }

    /// An update; `name` and `etag` are those of the message (AIP-134).
    async fn update<R: Resource>(
        &self,
        actor: &str,
        (name, etag): (String, String),
        message: Option<&R::Message>,
        update_mask: Option<FieldMask>,
        request_id: String,
    ) -> RpcResult<R::Message>
    where
        Conn: Repository<R>,
    {
        let request = UpdateRequest {
            input: message.map(R::input_from).unwrap_or_default(),
            name,
            etag,
            update_mask: update_mask.map(|mask| mask.paths),
            request_id,
        };
        let updated = self.service.writer().update::<R>(request, actor).await?;
        Ok(Response::new(updated.to_message()))
    }

    async fn delete<R: Resource>(&self, actor: &str, request: DeleteRequest) -> Result<R, Status>
    where
        Conn: Repository<R>,
    {
        Ok(self.service.writer().delete::<R>(request, actor).await?)
    }

    async fn undelete<R: Resource>(
        &self,
        actor: &str,
        name: &str,
        etag: &str,
    ) -> RpcResult<R::Message>
    where
        Conn: Restore<R>,
    {
        let restored = self
            .service
            .writer()
            .undelete::<R>(name, etag, actor)
            .await?;
        Ok(Response::new(restored.to_message()))
    }
}

/// The name and etag a client sent in the resource of an update.
macro_rules! name_and_etag {
    ($message:expr) => {
        $message
            .as_ref()
            .map(|message| (message.name.clone(), message.etag.clone()))
            .unwrap_or_default()
    };
}

/// A delete request as the core's (only DeleteCompany has `force`).
macro_rules! delete_request {
    ($request:expr) => {
        delete_request!($request, force: false)
    };
    ($request:expr, force: $force:expr) => {
        DeleteRequest {
            name: $request.name,
            etag: $request.etag,
            request_id: $request.request_id,
            force: $force,
        }
    };
}

#[tonic::async_trait]
impl pb::customer_service_server::CustomerService for CustomerApi {
    async fn create_customer(
        &self,
        request: Request<pb::CreateCustomerRequest>,
    ) -> RpcResult<pb::Customer> {
        let (actor, request) = (actor(&request), request.into_inner());
        self.create::<Customer>(&actor, "", request.customer.as_ref(), &request.request_id)
            .await
    }

    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> RpcResult<pb::Customer> {
        let request = request.get_ref();
        if request.view() != pb::CustomerView::Full {
            return self.get::<Customer>(&request.name).await;
        }
        let (customer, business) = self.service.get_full(&request.name).await?;
        Ok(Response::new(pb::Customer {
            business_info: business.map(business_to_proto),
            ..customer.to_message()
        }))
    }

    async fn batch_get_customers(
        &self,
        request: Request<pb::BatchGetCustomersRequest>,
    ) -> RpcResult<pb::BatchGetCustomersResponse> {
        let customers = self.service.batch_get(&request.get_ref().names).await?;
        Ok(Response::new(pb::BatchGetCustomersResponse {
            customers: customers.into_iter().map(Resource::to_message).collect(),
        }))
    }

    async fn list_customers(
        &self,
        request: Request<pb::ListCustomersRequest>,
    ) -> RpcResult<pb::ListCustomersResponse> {
        let request = request.into_inner();
        let page = self
            .service
            .list(&ListRequest {
                page_size: request.page_size,
                page_token: request.page_token,
                filter: request.filter,
                order_by: request.order_by,
                show_deleted: request.show_deleted,
                parent: request.parent,
            })
            .await?;
        Ok(Response::new(pb::ListCustomersResponse {
            customers: page.items.into_iter().map(Resource::to_message).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_customer(
        &self,
        request: Request<pb::UpdateCustomerRequest>,
    ) -> RpcResult<pb::Customer> {
        let (actor, request) = (actor(&request), request.into_inner());
        let name_and_etag = name_and_etag!(request.customer);
        let customer = request.customer.as_ref();
        self.update::<Customer>(
            &actor,
            name_and_etag,
            customer,
            request.update_mask,
            request.request_id,
        )
        .await
    }

    async fn delete_customer(
        &self,
        request: Request<pb::DeleteCustomerRequest>,
    ) -> RpcResult<pb::Customer> {
        let (actor, request) = (actor(&request), request.into_inner());
        let deleted: Customer = self.delete(&actor, delete_request!(request)).await?;
        Ok(Response::new(deleted.to_message()))
    }

    async fn undelete_customer(
        &self,
        request: Request<pb::UndeleteCustomerRequest>,
    ) -> RpcResult<pb::Customer> {
        let (actor, request) = (actor(&request), request.get_ref());
        self.undelete::<Customer>(&actor, &request.name, &request.etag)
            .await
    }

    async fn list_customer_events(
        &self,
        request: Request<pb::ListCustomerEventsRequest>,
    ) -> RpcResult<pb::ListCustomerEventsResponse> {
        let request = request.into_inner();
        let page = self
            .service
            .events()
            .list(&EventListRequest {
                parent: request.parent,
                page_size: request.page_size,
                page_token: request.page_token,
                filter: request.filter,
            })
            .await?;
        Ok(Response::new(pb::ListCustomerEventsResponse {
            events: page
                .items
                .into_iter()
                .map(|event| event_to_proto(event, true))
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    type WatchCustomerEventsStream = EventStream;

    async fn watch_customer_events(
        &self,
        request: Request<pb::WatchCustomerEventsRequest>,
    ) -> RpcResult<EventStream> {
        let request = request.get_ref();
        let receiver = self
            .service
            .events()
            .watch(&request.parent, &request.start_after)
            .await?;
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let item = receiver.recv().await?;
            Some((
                item.map(|event| event_to_proto(event, true))
                    .map_err(Status::from),
                receiver,
            ))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn create_company(
        &self,
        request: Request<pb::CreateCompanyRequest>,
    ) -> RpcResult<pb::Company> {
        let (actor, request) = (actor(&request), request.into_inner());
        self.create::<Company>(&actor, "", request.company.as_ref(), &request.request_id)
            .await
    }

    async fn get_company(&self, request: Request<pb::GetCompanyRequest>) -> RpcResult<pb::Company> {
        self.get::<Company>(&request.get_ref().name).await
    }

    async fn list_companies(
        &self,
        request: Request<pb::ListCompaniesRequest>,
    ) -> RpcResult<pb::ListCompaniesResponse> {
        let request = request.into_inner();
        let page = self
            .service
            .list_companies(&CompanyListRequest {
                page_size: request.page_size,
                page_token: request.page_token,
                filter: request.filter,
                order_by: request.order_by,
                show_deleted: request.show_deleted,
            })
            .await?;
        Ok(Response::new(pb::ListCompaniesResponse {
            companies: page.items.into_iter().map(Resource::to_message).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_company(
        &self,
        request: Request<pb::UpdateCompanyRequest>,
    ) -> RpcResult<pb::Company> {
        let (actor, request) = (actor(&request), request.into_inner());
        let name_and_etag = name_and_etag!(request.company);
        let company = request.company.as_ref();
        self.update::<Company>(
            &actor,
            name_and_etag,
            company,
            request.update_mask,
            request.request_id,
        )
        .await
    }

    async fn delete_company(
        &self,
        request: Request<pb::DeleteCompanyRequest>,
    ) -> RpcResult<pb::Company> {
        let (actor, request) = (actor(&request), request.into_inner());
        let deleted: Company = self
            .delete(&actor, delete_request!(request, force: request.force))
            .await?;
        Ok(Response::new(deleted.to_message()))
    }

    async fn undelete_company(
        &self,
        request: Request<pb::UndeleteCompanyRequest>,
    ) -> RpcResult<pb::Company> {
        let (actor, request) = (actor(&request), request.get_ref());
        self.undelete::<Company>(&actor, &request.name, &request.etag)
            .await
    }

    async fn create_note(&self, request: Request<pb::CreateNoteRequest>) -> RpcResult<pb::Note> {
        let (actor, request) = (actor(&request), request.into_inner());
        self.create::<Note>(
            &actor,
            &request.parent,
            request.note.as_ref(),
            &request.request_id,
        )
        .await
    }

    async fn get_note(&self, request: Request<pb::GetNoteRequest>) -> RpcResult<pb::Note> {
        self.get::<Note>(&request.get_ref().name).await
    }

    async fn list_notes(
        &self,
        request: Request<pb::ListNotesRequest>,
    ) -> RpcResult<pb::ListNotesResponse> {
        let request = request.into_inner();
        let page = self
            .service
            .list_notes(&NoteListRequest {
                parent: request.parent,
                page_size: request.page_size,
                page_token: request.page_token,
            })
            .await?;
        Ok(Response::new(pb::ListNotesResponse {
            notes: page.items.into_iter().map(Resource::to_message).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_note(&self, request: Request<pb::UpdateNoteRequest>) -> RpcResult<pb::Note> {
        let (actor, request) = (actor(&request), request.into_inner());
        let name_and_etag = name_and_etag!(request.note);
        let note = request.note.as_ref();
        self.update::<Note>(
            &actor,
            name_and_etag,
            note,
            request.update_mask,
            request.request_id,
        )
        .await
    }

    async fn delete_note(&self, request: Request<pb::DeleteNoteRequest>) -> RpcResult<()> {
        let (actor, request) = (actor(&request), request.into_inner());
        self.delete::<Note>(&actor, delete_request!(request))
            .await?;
        Ok(Response::new(()))
    }

    async fn get_business_info(
        &self,
        request: Request<pb::GetBusinessInfoRequest>,
    ) -> RpcResult<pb::BusinessInfo> {
        let info = self.service.business_info(&request.get_ref().name).await?;
        Ok(Response::new(business_to_proto(info)))
    }
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

/// Who is calling: set by the auth layer, which runs before every protected method.
fn actor<T>(request: &Request<T>) -> String {
    request.extensions().get::<Principal>().map_or_else(
        || "unknown".to_owned(),
        |principal| principal.subject.clone(),
    )
}

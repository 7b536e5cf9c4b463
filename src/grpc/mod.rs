//! The gRPC adapter: `customer.v1.CustomerService` over the service layer.
//!
//! Each RPC converts its request into service-layer input, calls one use case and converts
//! the result back; errors become statuses through [`status`]. No business rule lives
//! here. gRPC-web and the REST gateway reach the same trait implementation, so this is the
//! only adapter there is.

pub mod codec;
pub mod deadline;
pub mod events;
pub mod resources;
pub mod status;

use prost_types::Timestamp;
use tonic::{Request, Response, Status};

use self::resources::{company_input, company_to_proto, note_input, note_to_proto};
use crate::{
    auth::Principal,
    domain::customer::{Customer, CustomerInput, PostalAddress},
    pb,
    service::{
        CustomerService, ListRequest, UpdateRequest,
        companies::{CompanyDeleteRequest, CompanyListRequest, CompanyUpdateRequest},
        events::EventListRequest,
        notes::{NoteListRequest, NoteUpdateRequest},
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

impl CustomerApi {
    /// The adapter over `service`.
    pub fn new(service: CustomerService) -> Self {
        Self { service }
    }
}

type RpcResult<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::customer_service_server::CustomerService for CustomerApi {
    async fn create_customer(
        &self,
        request: Request<pb::CreateCustomerRequest>,
    ) -> RpcResult<pb::Customer> {
        let actor = actor(&request);
        let request = request.into_inner();
        let input = request.customer.as_ref().map(input_of).unwrap_or_default();
        let customer = self
            .service
            .create(input, &request.request_id, &actor)
            .await?;
        Ok(Response::new(to_proto(customer)))
    }

    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> RpcResult<pb::Customer> {
        let request = request.get_ref();
        if request.view() != pb::CustomerView::Full {
            let customer = self.service.get(&request.name).await?;
            return Ok(Response::new(to_proto(customer)));
        }
        let (customer, business) = self.service.get_full(&request.name).await?;
        Ok(Response::new(pb::Customer {
            business_info: business.map(business_to_proto),
            ..to_proto(customer)
        }))
    }

    async fn batch_get_customers(
        &self,
        request: Request<pb::BatchGetCustomersRequest>,
    ) -> RpcResult<pb::BatchGetCustomersResponse> {
        let customers = self.service.batch_get(&request.get_ref().names).await?;
        Ok(Response::new(pb::BatchGetCustomersResponse {
            customers: customers.into_iter().map(to_proto).collect(),
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
            customers: page.customers.into_iter().map(to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_customer(
        &self,
        request: Request<pb::UpdateCustomerRequest>,
    ) -> RpcResult<pb::Customer> {
        let actor = actor(&request);
        let request = request.into_inner();
        let customer = request.customer.unwrap_or_default();
        let customer = self
            .service
            .update(
                UpdateRequest {
                    input: input_of(&customer),
                    name: customer.name,
                    etag: customer.etag,
                    update_mask: request.update_mask.map(|mask| mask.paths),
                    request_id: request.request_id,
                },
                &actor,
            )
            .await?;
        Ok(Response::new(to_proto(customer)))
    }

    async fn delete_customer(
        &self,
        request: Request<pb::DeleteCustomerRequest>,
    ) -> RpcResult<pb::Customer> {
        let actor = actor(&request);
        let request = request.get_ref();
        let customer = self
            .service
            .delete(&request.name, &request.etag, &request.request_id, &actor)
            .await?;
        Ok(Response::new(to_proto(customer)))
    }

    async fn undelete_customer(
        &self,
        request: Request<pb::UndeleteCustomerRequest>,
    ) -> RpcResult<pb::Customer> {
        let actor = actor(&request);
        let request = request.get_ref();
        let customer = self
            .service
            .undelete(&request.name, &request.etag, &actor)
            .await?;
        Ok(Response::new(to_proto(customer)))
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
                .events
                .into_iter()
                .map(|event| events::event_to_proto(event, true))
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
                item.map(|event| events::event_to_proto(event, true))
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
        let actor = actor(&request);
        let request = request.into_inner();
        let input = request
            .company
            .as_ref()
            .map(company_input)
            .unwrap_or_default();
        let company = self
            .service
            .create_company(input, &request.request_id, &actor)
            .await?;
        Ok(Response::new(company_to_proto(company)))
    }

    async fn get_company(&self, request: Request<pb::GetCompanyRequest>) -> RpcResult<pb::Company> {
        let company = self.service.get_company(&request.get_ref().name).await?;
        Ok(Response::new(company_to_proto(company)))
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
            companies: page.companies.into_iter().map(company_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_company(
        &self,
        request: Request<pb::UpdateCompanyRequest>,
    ) -> RpcResult<pb::Company> {
        let actor = actor(&request);
        let request = request.into_inner();
        let company = request.company.unwrap_or_default();
        let company = self
            .service
            .update_company(
                CompanyUpdateRequest {
                    input: company_input(&company),
                    name: company.name,
                    etag: company.etag,
                    update_mask: request.update_mask.map(|mask| mask.paths),
                    request_id: request.request_id,
                },
                &actor,
            )
            .await?;
        Ok(Response::new(company_to_proto(company)))
    }

    async fn delete_company(
        &self,
        request: Request<pb::DeleteCompanyRequest>,
    ) -> RpcResult<pb::Company> {
        let actor = actor(&request);
        let request = request.into_inner();
        let company = self
            .service
            .delete_company(
                CompanyDeleteRequest {
                    name: request.name,
                    etag: request.etag,
                    force: request.force,
                    request_id: request.request_id,
                },
                &actor,
            )
            .await?;
        Ok(Response::new(company_to_proto(company)))
    }

    async fn undelete_company(
        &self,
        request: Request<pb::UndeleteCompanyRequest>,
    ) -> RpcResult<pb::Company> {
        let actor = actor(&request);
        let request = request.into_inner();
        let company = self
            .service
            .undelete_company(&request.name, &request.etag, &actor)
            .await?;
        Ok(Response::new(company_to_proto(company)))
    }

    async fn create_note(&self, request: Request<pb::CreateNoteRequest>) -> RpcResult<pb::Note> {
        let actor = actor(&request);
        let request = request.into_inner();
        let input = request.note.as_ref().map(note_input).unwrap_or_default();
        let note = self
            .service
            .create_note(&request.parent, input, &request.request_id, &actor)
            .await?;
        Ok(Response::new(note_to_proto(note)))
    }

    async fn get_note(&self, request: Request<pb::GetNoteRequest>) -> RpcResult<pb::Note> {
        let note = self.service.get_note(&request.get_ref().name).await?;
        Ok(Response::new(note_to_proto(note)))
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
            notes: page.notes.into_iter().map(note_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_note(&self, request: Request<pb::UpdateNoteRequest>) -> RpcResult<pb::Note> {
        let actor = actor(&request);
        let request = request.into_inner();
        let note = request.note.unwrap_or_default();
        let note = self
            .service
            .update_note(
                NoteUpdateRequest {
                    input: note_input(&note),
                    name: note.name,
                    etag: note.etag,
                    update_mask: request.update_mask.map(|mask| mask.paths),
                    request_id: request.request_id,
                },
                &actor,
            )
            .await?;
        Ok(Response::new(note_to_proto(note)))
    }

    async fn delete_note(&self, request: Request<pb::DeleteNoteRequest>) -> RpcResult<()> {
        let actor = actor(&request);
        let request = request.get_ref();
        self.service
            .delete_note(&request.name, &request.etag, &request.request_id, &actor)
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
        address: info.address.map(|address| pb::PostalAddress {
            lines: address.lines,
            locality: address.locality,
            region: address.region,
            postal_code: address.postal_code,
            country_code: address.country_code,
        }),
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

/// The client-settable fields of a proto customer. Output-only fields are ignored (AIP-203).
fn input_of(customer: &pb::Customer) -> CustomerInput {
    CustomerInput {
        given_name: customer.given_name.clone(),
        family_name: customer.family_name.clone(),
        email: customer.email.clone(),
        phone: customer.phone.clone(),
        address: customer.address.as_ref().map(|address| PostalAddress {
            lines: address.lines.clone(),
            locality: address.locality.clone(),
            region: address.region.clone(),
            postal_code: address.postal_code.clone(),
            country_code: address.country_code.clone(),
        }),
        status: customer.status,
        company: customer.company.clone(),
        business_id: customer.business_id.clone(),
        labels: customer.labels.clone(),
    }
}

/// A stored customer as its proto message.
pub fn to_proto(customer: Customer) -> pb::Customer {
    let name = customer.name().to_string();
    let etag = customer.etag();
    let data = customer.data;
    pb::Customer {
        name,
        uid: customer.id.to_string(),
        given_name: data.given_name,
        family_name: data.family_name,
        email: data.email,
        phone: data.phone.unwrap_or_default(),
        address: data.address.map(|address| pb::PostalAddress {
            lines: address.lines,
            locality: address.locality,
            region: address.region,
            postal_code: address.postal_code,
            country_code: address.country_code,
        }),
        status: i32::from(data.status.number()),
        company: data.company.unwrap_or_default(),
        business_id: data.business_id.unwrap_or_default(),
        labels: data.labels,
        etag,
        create_time: Some(timestamp(customer.create_time)),
        update_time: Some(timestamp(customer.update_time)),
        delete_time: customer.delete_time.map(timestamp),
        expire_time: customer.expire_time.map(timestamp),
        business_info: None,
    }
}

pub(crate) fn timestamp(time: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

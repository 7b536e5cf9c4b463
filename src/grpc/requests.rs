//! What the generic RPC functions of [`super::CustomerApi`] read from each request message.
//!
//! A resource's write RPCs differ only in their messages: which resource they are about, the
//! request field holding it, whether a create has a parent and a delete a `force`. `writes!`
//! states that once per resource and implements the request traits below for its messages;
//! `lists!` does the same for the List RPCs. The RPCs themselves are then one generic call
//! each.

use crate::{
    convert::events::event_to_proto,
    core::{
        list::{ListRequest, Page},
        write,
    },
    domain::{company::Company, customer::Customer, event::Event, note::Note},
    pb,
    resources::Resource,
    service::{CustomerService, Result},
};

/// The contract message of a resource.
pub(super) type Message<R> = <R as Resource>::Message;

/// A Create request.
pub(super) trait Create {
    /// What it creates.
    type Resource: Resource;
    /// The parent it creates under; empty for a top-level resource.
    fn parent(&self) -> &str;
    /// The resource as the client sent it, moved out of the request.
    fn take_resource(&mut self) -> Option<Message<Self::Resource>>;
    /// The idempotency key.
    fn request_id(&self) -> &str;
}

/// A Get request.
pub(super) trait Get {
    /// What it reads.
    type Resource: Resource;
    /// The name of the resource.
    fn name(&self) -> &str;
}

/// An Update request.
pub(super) trait Update {
    /// What it updates.
    type Resource: Resource;
    /// The core's request: the name and etag are those of the message (AIP-134).
    fn into_core(self) -> write::UpdateRequest<<Self::Resource as Resource>::Input>;
}

/// A Delete request.
pub(super) trait Delete {
    /// What it deletes.
    type Resource: Resource;
    /// What the RPC answers: the deleted resource, or nothing for a hard delete.
    type Reply;
    /// The core's request.
    fn into_core(self) -> write::DeleteRequest;
    /// The answer about `deleted`.
    fn reply(deleted: Self::Resource) -> Self::Reply;
}

/// An Undelete request.
pub(super) trait Undelete {
    /// What it restores.
    type Resource: Resource;
    /// The name of the resource.
    fn name(&self) -> &str;
    /// The etag the client read, or empty.
    fn etag(&self) -> &str;
    /// The idempotency key.
    fn request_id(&self) -> &str;
}

/// Implements the request traits for the messages of the write RPCs of `$resource`, held
/// in field `$field` of creates and updates: a create with `parent` reads that field, a
/// delete with `force` reads it, and the delete answers `$reply`, made by `$respond`.
macro_rules! writes {
    (
        $resource:ident in $field:ident:
        create $create:ty $(, parent $parent:ident)?;
        get $get:ty;
        update $update:ty $(, allow_missing $allow:ident)?;
        delete $delete:ty $(, force $force:ident)? => $reply:ty = $respond:expr;
        $(undelete $undelete:ty;)?
    ) => {
        impl Create for $create {
            type Resource = $resource;

            fn parent(&self) -> &str {
                writes!(@or "" $(, &self.$parent)?)
            }

            fn take_resource(&mut self) -> Option<Message<$resource>> {
                self.$field.take()
            }

            fn request_id(&self) -> &str {
                &self.request_id
            }
        }

        impl Get for $get {
            type Resource = $resource;

            fn name(&self) -> &str {
                &self.name
            }
        }

        impl Update for $update {
            type Resource = $resource;

            fn into_core(self) -> write::UpdateRequest<<$resource as Resource>::Input> {
                let (input, name, etag) = match self.$field {
                    Some(mut message) => {
                        let (name, etag) = (
                            std::mem::take(&mut message.name),
                            std::mem::take(&mut message.etag),
                        );
                        ($resource::input_from(message), name, etag)
                    }
                    None => Default::default(),
                };
                write::UpdateRequest {
                    name,
                    etag,
                    input,
                    update_mask: self.update_mask.map(|mask| mask.paths),
                    request_id: self.request_id,
                    allow_missing: writes!(@or false $(, self.$allow)?),
                }
            }
        }

        impl Delete for $delete {
            type Resource = $resource;
            type Reply = $reply;

            fn into_core(self) -> write::DeleteRequest {
                write::DeleteRequest {
                    name: self.name,
                    etag: self.etag,
                    request_id: self.request_id,
                    force: writes!(@or false $(, self.$force)?),
                }
            }

            fn reply(deleted: $resource) -> $reply {
                $respond(deleted)
            }
        }

        $(
            impl Undelete for $undelete {
                type Resource = $resource;

                fn name(&self) -> &str {
                    &self.name
                }

                fn etag(&self) -> &str {
                    &self.etag
                }

                fn request_id(&self) -> &str {
                    &self.request_id
                }
            }
        )?
    };
    (@or $default:expr) => {
        $default
    };
    (@or $default:expr, $value:expr) => {
        $value
    };
}

writes!(Customer in customer:
    create pb::CreateCustomerRequest;
    get pb::GetCustomerRequest;
    update pb::UpdateCustomerRequest, allow_missing allow_missing;
    delete pb::DeleteCustomerRequest => pb::Customer = Resource::to_message;
    undelete pb::UndeleteCustomerRequest;
);

writes!(Company in company:
    create pb::CreateCompanyRequest;
    get pb::GetCompanyRequest;
    update pb::UpdateCompanyRequest;
    delete pb::DeleteCompanyRequest, force force => pb::Company = Resource::to_message;
    undelete pb::UndeleteCompanyRequest;
);

// Notes are deleted for good: DeleteNote answers `google.protobuf.Empty`.
writes!(Note in note:
    create pb::CreateNoteRequest, parent parent;
    get pb::GetNoteRequest;
    update pb::UpdateNoteRequest;
    delete pb::DeleteNoteRequest => () = drop;
);

/// A List RPC: its request, as the list path's, and its page, as its response.
pub(super) trait List: Into<ListRequest> {
    /// What it lists.
    type Item;
    /// Its response message.
    type Response;
    /// One page for `request`.
    fn page(
        service: &CustomerService,
        request: ListRequest,
    ) -> impl Future<Output = Result<Page<Self::Item>>> + Send;
    /// The response of `page`.
    fn respond(page: Page<Self::Item>) -> Self::Response;
}

/// Implements [`List`] for `$request`, whose fields `$field` are those of the list path's
/// request, listing `$item`s with `$page` into the repeated field `$items` of `$response`,
/// each as `$message` makes it.
macro_rules! lists {
    (
        $request:ty { $($field:ident),+ } => $page:expr,
        $response:ident { $items:ident: $item:ty = $message:expr }
    ) => {
        impl From<$request> for ListRequest {
            // ListCustomers has every field.
            #[allow(clippy::needless_update)]
            fn from(request: $request) -> Self {
                Self {
                    $($field: request.$field,)+
                    ..Self::default()
                }
            }
        }

        impl List for $request {
            type Item = $item;
            type Response = pb::$response;

            fn page(
                service: &CustomerService,
                request: ListRequest,
            ) -> impl Future<Output = Result<Page<$item>>> + Send {
                async move { $page(service, &request).await }
            }

            fn respond(page: Page<$item>) -> pb::$response {
                pb::$response {
                    $items: page.items.into_iter().map($message).collect(),
                    next_page_token: page.next_page_token,
                }
            }
        }
    };
}

lists!(
    pb::ListCustomersRequest { page_size, page_token, filter, order_by, show_deleted, parent }
        => CustomerService::list,
    ListCustomersResponse { customers: pb::Customer = std::convert::identity }
);

lists!(
    pb::ListCompaniesRequest { page_size, page_token, filter, order_by, show_deleted }
        => CustomerService::list_companies,
    ListCompaniesResponse { companies: pb::Company = std::convert::identity }
);

lists!(
    pb::ListNotesRequest { parent, page_size, page_token } => CustomerService::list_notes,
    ListNotesResponse { notes: pb::Note = std::convert::identity }
);

lists!(
    pb::ListCustomerEventsRequest { parent, page_size, page_token, filter }
        => CustomerService::list_events,
    ListCustomerEventsResponse { events: Event = |event| event_to_proto(event, true) }
);

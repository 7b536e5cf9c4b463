//! The gRPC adapter of `customer.v1.ApiKeyService`: each RPC takes its request apart, calls
//! one use case of [`crate::service::api_keys`] and answers its message. The admin scope is
//! checked before any of this, by the auth layer, as for every RPC.
//!
//! What only an adapter can do: after a revocation or rotation, this instance stops trusting
//! the key's cached verifications ([`Authenticator::forget`]), so the old secret is refused
//! from the very next call here.

use tonic::{Request, Response, Status};

use super::actor;
use crate::{
    auth::{Authenticator, api_keys::subject},
    pb::{self, api_key_service_server::ApiKeyService},
    service::{
        CustomerService,
        api_keys::{Answer, NewApiKey},
    },
};

/// The tonic service implementation.
#[derive(Debug, Clone)]
pub struct ApiKeyApi {
    service: CustomerService,
    authenticator: Authenticator,
}

type RpcResult<T> = Result<Response<T>, Status>;

impl ApiKeyApi {
    /// The adapter over `service`, forgetting changed keys in `authenticator`'s cache.
    pub fn new(service: CustomerService, authenticator: Authenticator) -> Self {
        Self {
            service,
            authenticator,
        }
    }

    /// Answers the key `change` changed once no cached verification of it is trusted any
    /// more.
    async fn changed(
        &self,
        change: impl Future<Output = crate::service::Result<Answer>>,
    ) -> RpcResult<pb::ApiKey> {
        let answer = change.await?;
        if let Ok(id) = answer.0.uid.parse() {
            self.authenticator.forget(&subject(id));
        }
        Ok(Response::new(answer.0))
    }
}

#[tonic::async_trait]
impl ApiKeyService for ApiKeyApi {
    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> RpcResult<pb::ApiKey> {
        let (actor, request) = (actor(&request), request.into_inner());
        let input = request.api_key.map(|key| NewApiKey {
            display_name: key.display_name,
            scopes: key.scopes,
            expire_time: key.expire_time,
        });
        let created = self
            .service
            .create_api_key(input, &request.request_id, &actor)
            .await?;
        Ok(Response::new(created.0))
    }

    async fn get_api_key(&self, request: Request<pb::GetApiKeyRequest>) -> RpcResult<pb::ApiKey> {
        let found = self.service.get_api_key(&request.get_ref().name).await?;
        Ok(Response::new(found))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> RpcResult<pb::ListApiKeysResponse> {
        let request = request.into_inner();
        let page = self
            .service
            .list_api_keys(request.page_size, &request.page_token, request.show_revoked)
            .await?;
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys: page.items,
            next_page_token: page.next_page_token,
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> RpcResult<pb::ApiKey> {
        let (actor, request) = (actor(&request), request.into_inner());
        let (name, request_id) = (&request.name, &request.request_id);
        self.changed(self.service.revoke_api_key(name, request_id, &actor))
            .await
    }

    async fn rotate_api_key(
        &self,
        request: Request<pb::RotateApiKeyRequest>,
    ) -> RpcResult<pb::ApiKey> {
        let (actor, request) = (actor(&request), request.into_inner());
        let (name, grace, request_id) = (&request.name, request.grace_period, &request.request_id);
        self.changed(self.service.rotate_api_key(name, grace, request_id, &actor))
            .await
    }
}

//! The gRPC services: decode, authenticate, call the store, encode. No rules live here.

mod contractor;
mod identity;
mod permission;

use std::sync::Arc;

use mandate_domain::lockout::PinLockout;
use mandate_domain::pin::Pin;
use mandate_store::{Error as StoreError, SealedPin, Store};
use tokio::sync::watch;
use tonic::{Response, Status};

pub use contractor::ContractorApi;
pub use identity::IdentityApi;
pub use permission::PermissionApi;

use crate::error::ApiResult;
use crate::secrets::PinVault;

/// What every service shares: the store and the PIN keys. Nothing here is per-replica state
/// but the shutdown signal.
pub struct State {
    pub store: Store,
    pub vault: PinVault,
    /// How many wrong PINs a customer may enter.
    pub lockout: PinLockout,
    /// Turns `true` when the server begins to stop: long-lived streams end then, so that the
    /// graceful shutdown does not wait on consumers that never leave.
    pub stopping: watch::Sender<bool>,
}

pub type Shared = Arc<State>;

impl State {
    /// A new random PIN for the account `contractor_id`, with its sealed form.
    fn new_pin(&self, contractor_id: &str) -> Result<(Pin, SealedPin), StoreError> {
        let pin = self
            .vault
            .generate()
            .map_err(|e| StoreError::Internal(format!("no random PIN: {e}")))?;
        let sealed = self
            .vault
            .seal(contractor_id, &pin)
            .map_err(StoreError::Internal)?;
        Ok((pin, sealed))
    }
}

/// An RPC's outcome on the wire.
fn reply<T>(result: ApiResult<T>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

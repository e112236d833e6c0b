//! The gRPC services: decode, authenticate, call the store, encode. No rules live here.

pub mod alerts;
pub mod caller;
pub mod codec;
mod contractor;
pub mod convert;
pub mod denials;
pub mod error;
mod identity;
mod permission;
mod redact;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};

use mandate_domain::Error as Rule;
use mandate_domain::lockout::{ClientPinBudget, PinLockout};
use mandate_domain::pin::Pin;
use mandate_store::{Error as StoreError, SealedPin, Store};
use tonic::{Response, Status};

pub use contractor::ContractorApi;
pub use identity::IdentityApi;
pub use permission::PermissionApi;

use crate::api::alerts::PinFailures;
use crate::api::denials::Denials;
use crate::api::error::{ApiError, ApiResult};
use crate::credentials::keys::KeyRing;
use crate::credentials::vault::PinVault;
use crate::shutdown::Signal;
use crate::telemetry::metrics::{Metrics, PinRefusal};

/// What every service shares: the store and the PIN keys. Nothing here is per-replica state
/// but the shutdown signal.
pub struct State {
    pub store: Store,
    pub vault: PinVault,
    /// How many wrong PINs a customer may enter.
    pub lockout: PinLockout,
    /// How many wrong PINs the customers of one client system may enter between them.
    pub client_budget: ClientPinBudget,
    /// The change feeds open, per client system.
    pub feeds: Arc<Feeds>,
    /// Wrong PINs per client system, reported every window.
    pub pin_failures: Arc<PinFailures>,
    /// The server's stop: long-lived streams end as it drains, so that the graceful shutdown
    /// does not wait on consumers that never leave.
    pub shutdown: Signal,
    /// Denied checks on their way to the trail.
    pub denials: Arc<Denials>,
    /// What the operator watches.
    pub metrics: Arc<Metrics>,
    /// Whether the database answered the last health probe.
    pub database_answers: Arc<AtomicBool>,
    /// The live credentials: open streams ask it whether theirs still holds.
    pub keys: Arc<KeyRing>,
}

pub type Shared = Arc<State>;

/// The `WatchChanges` feeds each client system holds open, bounded.
pub struct Feeds {
    max: u32,
    open: Mutex<HashMap<String, u32>>,
}

impl Feeds {
    pub fn new(max: u32) -> Self {
        Self {
            max,
            open: Mutex::default(),
        }
    }

    /// How many feeds are open, across client systems.
    pub fn open_count(&self) -> u32 {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.values().sum()
    }

    /// A place for one more feed of `client`, held until the feed ends; `RESOURCE_EXHAUSTED`
    /// when the client has its maximum open.
    pub fn open(self: &Arc<Self>, client: &str) -> ApiResult<FeedSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(client.to_owned()).or_default();
        if *count >= self.max {
            return Err(ApiError::Exhausted(format!(
                "client `{client}` has {} change feeds open, its maximum; close one first",
                self.max
            )));
        }
        *count += 1;
        Ok(FeedSlot {
            feeds: self.clone(),
            client: client.to_owned(),
        })
    }
}

/// One open feed's place; given back when dropped.
pub struct FeedSlot {
    feeds: Arc<Feeds>,
    client: String,
}

impl Drop for FeedSlot {
    fn drop(&mut self) {
        let mut open = self
            .feeds
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

impl State {
    /// Enters a PIN for `acting`, guarded by its client system's wrong-PIN budget and then by
    /// the customer's lockout: a token of the budget and an attempt of the customer's are taken
    /// before `enter` looks at the PIN, both kept when `enter` answers `NOT_FOUND` (a wrong PIN,
    /// counted per client system too), and given back otherwise.
    async fn enter_pin<T>(
        &self,
        acting: &crate::api::caller::ActingCustomer,
        enter: impl Future<Output = Result<T, StoreError>>,
    ) -> ApiResult<T> {
        let client = &acting.actor.client;
        let age = (chrono::Utc::now() - acting.since)
            .to_std()
            .unwrap_or_default();
        let standing = self.client_budget.has_standing(age);
        self.store
            .take_client_pin_token(client, self.client_budget, standing)
            .await
            .inspect_err(|err| {
                if matches!(err, StoreError::Domain(Rule::Throttled { .. })) {
                    self.pin_failures.client_throttled(client);
                    self.metrics.pin_refused(PinRefusal::ClientThrottled);
                    tracing::debug!(
                        customer_id = %acting.customer_id,
                        %client,
                        "PIN entry refused: the client system's wrong-PIN budget is spent"
                    );
                }
            })?;
        let mut taken = Taken {
            store: self.store.clone(),
            budget: self.client_budget,
            client: client.clone(),
            customer: None,
            settled: false,
        };
        if let Err(err) = self
            .store
            .take_pin_attempt(&acting.customer_id, self.lockout)
            .await
        {
            // Not looked at: the client system's token goes back.
            taken.give_back().await;
            if matches!(err, StoreError::Domain(Rule::Throttled { .. })) {
                self.pin_failures.locked_out(client);
                self.metrics.pin_refused(PinRefusal::LockedOut);
                tracing::warn!(
                    customer_id = %acting.customer_id,
                    %client,
                    "PIN entry refused: the customer is locked out"
                );
            }
            return Err(err.into());
        }
        taken.customer = Some(acting.customer_id.clone());
        let entered = enter.await;
        match &entered {
            Err(StoreError::Domain(Rule::NotFound(_))) => {
                taken.keep();
                self.pin_failures.wrong(client);
                self.metrics.pin_refused(PinRefusal::Wrong);
                tracing::info!(
                    customer_id = %acting.customer_id,
                    %client,
                    "a wrong PIN was entered"
                );
            }
            // A correct PIN, or a failure that is not the customer's: the attempt and the token
            // are given back.
            _ => taken.give_back().await,
        }
        Ok(entered?)
    }

    /// A new random PIN for the account `contractor_id`, with its sealed form.
    fn new_pin(&self, contractor_id: &str) -> Result<(Pin, SealedPin), StoreError> {
        self.vault.account_pin(contractor_id)
    }
}

/// What a PIN entry took before its PIN was looked at: a token of the client system's budget
/// and, once taken, an attempt of the customer's. Given back unless the PIN was wrong, also when
/// the call is dropped before the PIN was judged (a client's deadline, a client gone, the
/// database wait): then from a task of its own, since a drop cannot wait.
struct Taken {
    store: Store,
    budget: ClientPinBudget,
    client: String,
    customer: Option<String>,
    settled: bool,
}

impl Taken {
    /// The PIN was wrong: what was taken stays taken.
    fn keep(mut self) {
        self.settled = true;
    }

    /// The PIN was right, or not looked at: what was taken is given back.
    async fn give_back(mut self) {
        self.settled = true;
        give_back(
            &self.store,
            self.budget,
            &self.client,
            self.customer.as_deref(),
        )
        .await;
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (store, budget) = (self.store.clone(), self.budget);
        let (client, customer) = (std::mem::take(&mut self.client), self.customer.take());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                give_back(&store, budget, &client, customer.as_deref()).await;
            });
        }
    }
}

/// Gives `customer`'s attempt (when one was taken) and a token of `client`'s budget back.
async fn give_back(store: &Store, budget: ClientPinBudget, client: &str, customer: Option<&str>) {
    if let Some(customer) = customer
        && let Err(err) = store.refund_pin_attempt(customer).await
    {
        tracing::warn!(error = %err, "cannot give a PIN attempt back");
    }
    if let Err(err) = store.refund_client_pin_token(client, budget).await {
        tracing::warn!(error = %err, "cannot give a client system's PIN token back");
    }
}

/// An RPC's outcome on the wire.
fn reply<T>(result: ApiResult<T>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

/// A count for an `int32` field of a response; counts here are bounded far below its maximum.
fn count(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

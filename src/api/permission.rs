use std::pin::Pin;

use mandate_domain::Error as Rule;
use mandate_domain::application::parse_application_id;
use mandate_domain::membership::Grant;
use mandate_domain::paging::{PageRequest, parse_id};
use mandate_domain::permission::Permission;
use mandate_store::{
    AccountCheck, ApplicationCheck, ApplicationCursor, AuditEvent, CheckOutcome, CheckTarget,
    DeniedCheck, Error as StoreError, Result as StoreResult,
};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{FeedSlot, Shared, count, reply};
use crate::api::caller;
use crate::api::convert;
use crate::api::error::{ApiError, ApiResult, check_error};
use crate::credentials::keys::Client;
use crate::pb::permission_service_server::PermissionService;
use crate::pb::{
    AccessibleApplication, CheckPermissionRequest, CheckPermissionResponse,
    CheckPermissionsRequest, CheckPermissionsResponse, CheckPermissionsResult,
    LinkApplicationRequest, LinkApplicationResponse, ListAccessibleApplicationsRequest,
    ListAccessibleApplicationsResponse, ListAssociatesRequest, ListAssociatesResponse,
    ListAuditEventsRequest, ListAuditEventsResponse, RemoveAssociateRequest,
    RemoveAssociateResponse, SetPermissionsRequest, SetPermissionsResponse,
    UnlinkApplicationRequest, UnlinkApplicationResponse, WatchChangesRequest, WatchChangesResponse,
    check_permissions_result::Outcome,
};
use crate::shutdown::Stage;

/// The most checks one `CheckPermissions` call decides.
const MAX_BATCH: usize = 100;
/// How many changes the feed reads from the database at a time.
const FEED_BATCH: u64 = 100;

/// `mandate.v1.PermissionService`.
pub struct PermissionApi(pub Shared);

type ChangeStream = Pin<Box<dyn Stream<Item = Result<WatchChangesResponse, Status>> + Send>>;

impl PermissionApi {
    async fn check(
        &self,
        asker: &str,
        item: &CheckPermissionRequest,
    ) -> ApiResult<CheckPermissionResponse> {
        let parsed = parse_check(item)?;
        let outcome = self
            .0
            .store
            .check(
                &parsed.customer_id,
                parsed.permission,
                CheckTarget {
                    contractor_id: parsed.contractor_id.as_deref(),
                    application_id: parsed.application_id.as_deref(),
                },
                parsed.at_least,
            )
            .await?;
        self.answer(asker, &parsed, outcome)
    }

    /// A check's answer from its outcome (see `answer`); a denial is queued for the denied-check
    /// trail as the answer of `asker`, the client system.
    fn answer(
        &self,
        asker: &str,
        parsed: &ParsedCheck,
        outcome: CheckOutcome,
    ) -> ApiResult<CheckPermissionResponse> {
        let reason = outcome.reason;
        let answered = answer(parsed, outcome)?;
        self.0.metrics.decided(
            convert::permission(parsed.permission).as_str_name(),
            convert::reason(reason).as_str_name(),
        );
        if !answered.allowed {
            self.0.denials.record(DeniedCheck {
                time: chrono::Utc::now(),
                client: asker.to_owned(),
                customer_id: parsed.customer_id.clone(),
                permission: parsed.permission,
                contractor_id: parsed.contractor_id.clone(),
                application_id: parsed.application_id.clone(),
                reason,
            });
        }
        Ok(answered)
    }

    /// A batch's answers, in order: the checks that name only an account are decided together,
    /// in a few statements; the others one by one. What is wrong with one item is that item's
    /// answer; a database that cannot answer fails the batch, so that callers retry.
    async fn check_batch(
        &self,
        asker: &str,
        items: &[CheckPermissionRequest],
    ) -> ApiResult<Vec<Outcome>> {
        let parsed: Vec<ApiResult<ParsedCheck>> = items.iter().map(parse_check).collect();
        // The well-formed items `keep` picks, with their places in the batch.
        let picked = |keep: fn(&ParsedCheck) -> bool| -> Vec<(usize, &ParsedCheck)> {
            parsed
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.as_ref().ok().map(|p| (i, p)))
                .filter(|(_, p)| keep(p))
                .collect()
        };
        let mut decided: Vec<Option<ApiResult<CheckPermissionResponse>>> =
            items.iter().map(|_| None).collect();
        let mut settle = |on: &[(usize, &ParsedCheck)],
                          outcomes: Vec<StoreResult<CheckOutcome>>| {
            for ((i, p), outcome) in on.iter().zip(outcomes) {
                decided[*i] = Some(
                    outcome
                        .map_err(ApiError::from)
                        .and_then(|o| self.answer(asker, p, o)),
                );
            }
        };
        // Those on an account alone, together; then those on an application alone.
        let on_accounts = picked(|p| p.application_id.is_none());
        let together: Vec<AccountCheck<'_>> = on_accounts
            .iter()
            .filter_map(|(_, p)| {
                Some(AccountCheck {
                    customer_id: &p.customer_id,
                    permission: p.permission,
                    contractor_id: p.contractor_id.as_deref()?,
                    at_least: p.at_least,
                })
            })
            .collect();
        settle(&on_accounts, self.0.store.check_accounts(&together).await?);
        let on_applications = picked(|p| p.contractor_id.is_none());
        let together: Vec<ApplicationCheck<'_>> = on_applications
            .iter()
            .filter_map(|(_, p)| {
                Some(ApplicationCheck {
                    customer_id: &p.customer_id,
                    permission: p.permission,
                    application_id: p.application_id.as_deref()?,
                    at_least: p.at_least,
                })
            })
            .collect();
        settle(
            &on_applications,
            self.0.store.check_applications(&together).await?,
        );
        let mut answers = Vec::with_capacity(items.len());
        for ((item, parsed), decided) in items.iter().zip(parsed).zip(decided) {
            let result = match (decided, parsed) {
                (Some(result), _) => result,
                (None, Err(err)) => Err(err),
                (None, Ok(_)) => self.check(asker, item).await,
            };
            answers.push(match result {
                Ok(decision) => Outcome::Decision(decision),
                Err(ApiError::Store(StoreError::Domain(rule))) => {
                    Outcome::Error(check_error(rule.into()))
                }
                Err(other) => return Err(other),
            });
        }
        Ok(answers)
    }

    /// Links or unlinks an application and an account, for `LinkApplication` and
    /// `UnlinkApplication`.
    async fn set_link<T>(
        &self,
        request: &Request<T>,
        application_id: &str,
        contractor_id: &str,
        linked: bool,
    ) -> ApiResult<(String, i64)> {
        let actor = caller::client(request)?;
        let application_id = parse_application_id("application_id", application_id)?;
        let named = &parse_id("contractor_id", contractor_id)?;
        let (contractor_id, revision) = self
            .0
            .store
            .set_application_link(&actor, &application_id, named, linked)
            .await?;
        tracing::info!(%application_id, %contractor_id, %named, linked, revision, "application link set");
        Ok((contractor_id, revision))
    }
}

#[tonic::async_trait]
impl PermissionService for PermissionApi {
    async fn list_associates(
        &self,
        request: Request<ListAssociatesRequest>,
    ) -> Result<Response<ListAssociatesResponse>, Status> {
        reply(
            async {
                let reader = caller::reader(&self.0.store, &request).await?;
                let body = request.get_ref();
                let contractor_id = &parse_id("contractor_id", &body.contractor_id)?;
                let page = PageRequest::parse(body.page_size, &body.page_token)?;
                let page = self
                    .0
                    .store
                    .associates(reader.viewer(), contractor_id, &page)
                    .await?;
                Ok(ListAssociatesResponse {
                    associates: page.items.into_iter().map(convert::associate).collect(),
                    next_page_token: page.next_page_token.unwrap_or_default(),
                })
            }
            .await,
        )
    }

    async fn set_permissions(
        &self,
        request: Request<SetPermissionsRequest>,
    ) -> Result<Response<SetPermissionsResponse>, Status> {
        reply(
            async {
                let acting = caller::acting_customer(&self.0.store, &request).await?;
                let body = request.get_ref();
                let contractor_id = &parse_id("contractor_id", &body.contractor_id)?;
                let customer_id = &parse_id("customer_id", &body.customer_id)?;
                let grant = Grant {
                    permissions: convert::parse_permissions("permissions", &body.permissions)?,
                    expire_time: convert::parse_time("expire_time", body.expire_time.as_ref())?,
                };
                let (associate, revision) = self
                    .0
                    .store
                    .set_permissions(
                        &acting.actor,
                        &acting.customer_id,
                        contractor_id,
                        customer_id,
                        grant,
                    )
                    .await?;
                tracing::info!(%contractor_id, %customer_id, revision, "permissions set");
                Ok(SetPermissionsResponse {
                    associate: Some(convert::associate(associate)),
                    revision,
                })
            }
            .await,
        )
    }

    async fn remove_associate(
        &self,
        request: Request<RemoveAssociateRequest>,
    ) -> Result<Response<RemoveAssociateResponse>, Status> {
        reply(
            async {
                let acting = caller::acting_customer(&self.0.store, &request).await?;
                let body = request.get_ref();
                let contractor_id = &parse_id("contractor_id", &body.contractor_id)?;
                let customer_id = &parse_id("customer_id", &body.customer_id)?;
                let new_pin = |id: &str| self.0.new_pin(id);
                let (pin, revision) = self
                    .0
                    .store
                    .remove_associate(
                        &acting.actor,
                        &acting.customer_id,
                        contractor_id,
                        customer_id,
                        body.rotate_pin.then_some(new_pin),
                    )
                    .await?;
                tracing::info!(
                    %contractor_id,
                    %customer_id,
                    revision,
                    pin_replaced = pin.is_some(),
                    "associate removed"
                );
                Ok(RemoveAssociateResponse {
                    revision,
                    retired_alias_pins: pin.as_ref().map_or(0, |new| count(new.aliases_retired)),
                    pin: pin
                        .map(|new| new.pin.expose_formatted())
                        .unwrap_or_default(),
                })
            }
            .await,
        )
    }

    async fn check_permission(
        &self,
        request: Request<CheckPermissionRequest>,
    ) -> Result<Response<CheckPermissionResponse>, Status> {
        reply(
            async {
                self.check(caller::client_name(&request)?, request.get_ref())
                    .await
            }
            .await,
        )
    }

    async fn check_permissions(
        &self,
        request: Request<CheckPermissionsRequest>,
    ) -> Result<Response<CheckPermissionsResponse>, Status> {
        reply(
            async {
                let items = &request.get_ref().items;
                if items.len() > MAX_BATCH {
                    return Err(Rule::invalid(
                        "items",
                        format!("must hold at most {MAX_BATCH} checks, not {}", items.len()),
                    )
                    .into());
                }
                let results = self
                    .check_batch(caller::client_name(&request)?, items)
                    .await?
                    .into_iter()
                    .map(|outcome| CheckPermissionsResult {
                        outcome: Some(outcome),
                    })
                    .collect();
                Ok(CheckPermissionsResponse { results })
            }
            .await,
        )
    }

    async fn link_application(
        &self,
        request: Request<LinkApplicationRequest>,
    ) -> Result<Response<LinkApplicationResponse>, Status> {
        let body = request.get_ref();
        reply(
            self.set_link(&request, &body.application_id, &body.contractor_id, true)
                .await
                .map(|(contractor_id, revision)| LinkApplicationResponse {
                    revision,
                    contractor_id,
                }),
        )
    }

    async fn unlink_application(
        &self,
        request: Request<UnlinkApplicationRequest>,
    ) -> Result<Response<UnlinkApplicationResponse>, Status> {
        let body = request.get_ref();
        reply(
            self.set_link(&request, &body.application_id, &body.contractor_id, false)
                .await
                .map(|(contractor_id, revision)| UnlinkApplicationResponse {
                    revision,
                    contractor_id,
                }),
        )
    }

    async fn list_accessible_applications(
        &self,
        request: Request<ListAccessibleApplicationsRequest>,
    ) -> Result<Response<ListAccessibleApplicationsResponse>, Status> {
        reply(
            async {
                let body = request.get_ref();
                let customer_id = &parse_id("customer_id", &body.customer_id)?;
                let permission = convert::parse_permission("permission", body.permission)?;
                let page = PageRequest::parse_with(body.page_size, &body.page_token, |token| {
                    ApplicationCursor::parse(token).is_some()
                })?;
                caller::may_list_for(&request, customer_id)?;
                let cursor = page.after.as_deref().and_then(ApplicationCursor::parse);
                let page = self
                    .0
                    .store
                    .accessible_applications(customer_id, permission, page.size, cursor.as_ref())
                    .await?;
                Ok(ListAccessibleApplicationsResponse {
                    applications: page
                        .items
                        .into_iter()
                        .map(|a| AccessibleApplication {
                            application_id: a.application_id,
                            contractor_id: a.contractor_id,
                        })
                        .collect(),
                    next_page_token: page.next_page_token.unwrap_or_default(),
                })
            }
            .await,
        )
    }

    type WatchChangesStream = ChangeStream;

    async fn watch_changes(
        &self,
        request: Request<WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        let after = request.get_ref().after_revision;
        if after < 0 {
            return reply(Err(
                Rule::invalid("after_revision", "must not be negative").into()
            ));
        }
        // A revision this database never reached (a consumer resuming after a restore from an
        // older backup) would wait in silence for changes that are not coming: refused, as for
        // checks, so that the consumer learns it and starts again.
        if after > self.0.store.applied_revision() {
            let store = &self.0.store;
            match store.within(store.latest_revision()).await {
                Ok(latest) if after > latest => {
                    return reply(Err(Rule::invalid(
                        "after_revision",
                        format!(
                            "is ahead of the latest revision, {latest}: pass a revision Mandate \
                             returned (after a restore, start again from {latest} or earlier)"
                        ),
                    )
                    .into()));
                }
                Ok(_) => {}
                Err(err) => return reply(Err(err.into())),
            }
        }
        let (caller, slot) = match caller::caller(&request)
            .and_then(|caller| Ok((caller.clone(), self.0.feeds.open(&caller.name)?)))
        {
            Ok(opened) => opened,
            Err(err) => return reply(Err(err)),
        };
        let (sender, receiver) = mpsc::channel(FEED_BATCH as usize);
        // The feed's lines carry the call's request id and client, as the call's own do.
        let (keys, held_by) = (self.0.keys.clone(), caller.clone());
        tokio::spawn(
            feed(self.0.clone(), caller, after, sender, slot).instrument(tracing::Span::current()),
        );
        // Changes already queued for the consumer are not handed over once the credential no
        // longer holds: the first becomes the feed's end.
        let stream: ChangeStream =
            Box::pin(ReceiverStream::new(receiver).map(move |item| match item {
                Ok(_) if !keys.holds(&held_by) => Err(Status::unauthenticated(format!(
                    "the credential of client `{}` was revoked or expired; reconnect with a \
                     valid one",
                    held_by.name
                ))),
                other => other,
            }));
        Ok(Response::new(stream))
    }

    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        reply(
            async {
                let reader = caller::reader(&self.0.store, &request).await?;
                let body = request.get_ref();
                let contractor_id = &parse_id("contractor_id", &body.contractor_id)?;
                let start = convert::parse_time("start_time", body.start_time.as_ref())?;
                let end = convert::parse_time("end_time", body.end_time.as_ref())?;
                let page = PageRequest::parse_with(body.page_size, &body.page_token, |token| {
                    token.parse::<i64>().is_ok_and(|revision| revision >= 0)
                })?;
                let page = self
                    .0
                    .store
                    .audit_events(reader.viewer(), contractor_id, start, end, &page)
                    .await?;
                Ok(ListAuditEventsResponse {
                    events: page.items.into_iter().map(convert::audit_event).collect(),
                    next_page_token: page.next_page_token.unwrap_or_default(),
                })
            }
            .await,
        )
    }
}

/// Sends the changes after `after` to `sender`, then each new change as it commits, until the
/// consumer goes away or the server stops. It reads the database only to catch up; from there it
/// hears each change from the replica's change tail, which reads every change once for all
/// feeds. Revisions are handed out in commit order, so reading `revision > last` neither skips
/// nor repeats a change, and the tail hands them on in that order. At each key reload it asks
/// whether the credential it was opened with still holds, and ends with UNAUTHENTICATED when it
/// was revoked or expired: an open stream is held to what a new call would be.
async fn feed(
    state: Shared,
    caller: Client,
    mut last: i64,
    sender: mpsc::Sender<Result<WatchChangesResponse, Status>>,
    _slot: FeedSlot,
) {
    let draining = state.shutdown.wait(Stage::Draining);
    tokio::pin!(draining);
    let mut reloads = state.keys.reloads();
    let send = |change: AuditEvent| {
        sender.send(Ok(WatchChangesResponse {
            change: Some(convert::audit_event(change)),
        }))
    };
    loop {
        // Subscribe before reading, so that no change falls between the two.
        let mut tail = state.store.subscribe_changes();
        while last < tail.applied {
            if state.shutdown.reached(Stage::Draining) {
                return stop_feed(&sender, last).await;
            }
            if !state.keys.holds(&caller) {
                return end_unauthenticated(&sender, &caller, last).await;
            }
            let batch = match state
                .store
                .within(state.store.changes_after(last, FEED_BATCH))
                .await
            {
                Ok(batch) => batch,
                Err(err) => {
                    let status = Status::from(ApiError::from(err));
                    let status = Status::new(
                        status.code(),
                        format!("{}; reconnect with after_revision {last}", status.message()),
                    );
                    let _ = sender.send(Err(status)).await;
                    return;
                }
            };
            let caught_up = (batch.len() as u64) < FEED_BATCH;
            for change in batch {
                if !state.keys.holds(&caller) {
                    return end_unauthenticated(&sender, &caller, last).await;
                }
                last = change.revision;
                if send(change).await.is_err() {
                    return;
                }
            }
            if caught_up {
                break;
            }
        }
        loop {
            tokio::select! {
                heard = tail.receiver.recv() => match heard {
                    Ok(change) if change.revision <= last => {}
                    // Asked before each change too (an in-memory lookup): a credential revoked
                    // by a reload that completed before the change hears no more.
                    Ok(_) if !state.keys.holds(&caller) => {
                        return end_unauthenticated(&sender, &caller, last).await;
                    }
                    Ok(change) => {
                        last = change.revision;
                        if send(AuditEvent::clone(&change)).await.is_err() {
                            return;
                        }
                    }
                    // Too slow to keep up with the tail: catch up from the database again.
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return stop_feed(&sender, last).await,
                },
                () = &mut draining => return stop_feed(&sender, last).await,
                _ = reloads.changed() => if !state.keys.holds(&caller) {
                    return end_unauthenticated(&sender, &caller, last).await;
                },
                () = sender.closed() => return,
            }
        }
    }
}

/// Tells a feed's consumer that the credential it opened the feed with was revoked or expired.
async fn end_unauthenticated(
    sender: &mpsc::Sender<Result<WatchChangesResponse, Status>>,
    caller: &Client,
    last: i64,
) {
    tracing::warn!(client = %caller.name, "a change feed ended: its credential was revoked or expired");
    let _ = sender
        .send(Err(Status::unauthenticated(format!(
            "the credential of client `{}` was revoked or expired; reconnect with a valid one and \
             after_revision {last}",
            caller.name
        ))))
        .await;
}

/// Tells a feed's consumer that the server is stopping, and where to pick up.
async fn stop_feed(sender: &mpsc::Sender<Result<WatchChangesResponse, Status>>, last: i64) {
    let _ = sender
        .send(Err(Status::unavailable(format!(
            "the server is stopping; reconnect with after_revision {last}"
        ))))
        .await;
}

/// A check whose fields are valid.
struct ParsedCheck {
    customer_id: String,
    permission: Permission,
    contractor_id: Option<String>,
    application_id: Option<String>,
    at_least: i64,
}

/// Checks every field of a check, naming each bad one.
fn parse_check(item: &CheckPermissionRequest) -> ApiResult<ParsedCheck> {
    let customer_id = parse_id("customer_id", &item.customer_id);
    let permission = convert::parse_permission("permission", item.permission);
    let contractor_id = match item.contractor_id.trim() {
        "" => Ok(None),
        id => parse_id("contractor_id", id).map(Some),
    };
    let application_id = match item.application_id.trim() {
        "" => Ok(None),
        id => parse_application_id("application_id", id).map(Some),
    };
    let target = if item.contractor_id.trim().is_empty() && item.application_id.trim().is_empty() {
        Err(Rule::invalid(
            "contractor_id",
            "a check names a contractor_id, an application_id, or both",
        ))
    } else {
        Ok(())
    };
    let at_least = if item.at_least_revision < 0 {
        Err(Rule::invalid("at_least_revision", "must not be negative"))
    } else {
        Ok(item.at_least_revision)
    };
    match (
        customer_id,
        permission,
        contractor_id,
        application_id,
        at_least,
        target,
    ) {
        (
            Ok(customer_id),
            Ok(permission),
            Ok(contractor_id),
            Ok(application_id),
            Ok(at_least),
            Ok(()),
        ) => Ok(ParsedCheck {
            customer_id,
            permission,
            contractor_id,
            application_id,
            at_least,
        }),
        (a, b, c, d, e, f) => {
            let errors = [a.err(), b.err(), c.err(), d.err(), e.err(), f.err()];
            Err(Rule::all_invalid(errors.into_iter().flatten()).into())
        }
    }
}

/// A check's answer from its outcome; refused when the caller asked for a revision not reached.
fn answer(parsed: &ParsedCheck, outcome: CheckOutcome) -> ApiResult<CheckPermissionResponse> {
    if parsed.at_least > outcome.revision {
        return Err(Rule::invalid(
            "at_least_revision",
            format!(
                "is ahead of the latest revision, {}: pass a revision Mandate returned",
                outcome.revision
            ),
        )
        .into());
    }
    Ok(CheckPermissionResponse {
        allowed: outcome.reason.allows(),
        reason: convert::reason(outcome.reason) as i32,
        revision: outcome.revision,
        contractor_id: outcome.contractor_id.unwrap_or_default(),
    })
}

//! The app's API rates: signed requests per second (`apps[].api_request_rate_per_sec`,
//! counted once a request's signature checked out, so nobody else can spend an app's
//! requests) and events published per second (`apps[].api_event_rate_per_sec`: every event
//! of a batch counts, an event to several channels counts once). Over either, `429` with a
//! JSON error and `Retry-After: 1`; nothing of a refused request is published. Counted per
//! one-second window across the cluster (`node::quotas`); a refused request spends nothing.

use std::num::NonZeroU32;

use super::error::ApiError;
use super::Api;
use crate::app::App;
use crate::cluster::RateCounter;
use crate::node::Rate;

/// Counts one signed request of `app`.
pub(super) async fn count_request(api: &Api, app: &App) -> Result<(), ApiError> {
    count(api, app, RateCounter::ApiRequests, app.api_request_rate, 1).await
}

/// Counts `events` events about to be published for `app`.
pub(super) async fn count_events(api: &Api, app: &App, events: usize) -> Result<(), ApiError> {
    let n = u32::try_from(events).unwrap_or(u32::MAX);
    count(api, app, RateCounter::ApiEvents, app.api_event_rate, n).await
}

async fn count(
    api: &Api,
    app: &App,
    counter: RateCounter,
    limit: Option<NonZeroU32>,
    n: u32,
) -> Result<(), ApiError> {
    let Some(limit) = limit else {
        return Ok(());
    };
    match api.node.take_rate(&app.id, counter, limit, n).await? {
        Rate::Within => Ok(()),
        Rate::Exceeded => Err(ApiError::too_many_requests(match counter {
            RateCounter::ApiRequests => {
                format!("Too many API requests: this app may make {limit} per second")
            }
            RateCounter::ApiEvents => format!(
                "Too many events: this app may publish {limit} per second through the API \
                 (this request has {n})"
            ),
        })),
    }
}

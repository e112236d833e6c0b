//! The series read at each scrape from the parts that keep them: the check cache, the pool, the
//! change tail, the open feeds, the denied-check trail.

use std::fmt;
use std::sync::Arc;

use mandate_store::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::api::Feeds;
use crate::api::denials::Denials;

/// The series read at each scrape from what keeps them.
pub struct Live {
    pub store: Store,
    pub feeds: Arc<Feeds>,
    pub denials: Arc<Denials>,
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let cache = self.store.cache_stats();
        counter(
            &mut encoder,
            "mandate_cache_hits",
            "Checks and lists of accessible applications answered from the check cache",
            cache.hits,
        )?;
        counter(
            &mut encoder,
            "mandate_cache_misses",
            "Checks and lists the check cache could not answer, read from the database",
            cache.misses,
        )?;
        gauge(
            &mut encoder,
            "mandate_cache_entries",
            "Grants held in the check cache",
            i64::try_from(cache.entries).unwrap_or(i64::MAX),
        )?;
        gauge(
            &mut encoder,
            "mandate_cache_applications",
            "Applications whose links are held in the check cache",
            i64::try_from(cache.applications).unwrap_or(i64::MAX),
        )?;
        gauge(
            &mut encoder,
            "mandate_cache_memberships",
            "Customers whose memberships are held in the check cache",
            i64::try_from(cache.memberships).unwrap_or(i64::MAX),
        )?;
        gauge(
            &mut encoder,
            "mandate_cache_account_applications",
            "Accounts whose applications are held in the check cache",
            i64::try_from(cache.account_apps).unwrap_or(i64::MAX),
        )?;
        let pool = self.store.pool_stats();
        let connections = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "mandate_db_pool_connections",
            "Database connections open, by state (in_use, idle)",
            None,
            connections.metric_type(),
        )?;
        for (state, count) in [
            ("in_use", pool.open.saturating_sub(pool.idle)),
            ("idle", pool.idle),
        ] {
            ConstGauge::new(i64::from(count)).encode(family.encode_family(&[("state", state)])?)?;
        }
        gauge(
            &mut encoder,
            "mandate_db_pool_max_connections",
            "The most database connections this server opens (--database-pool-size)",
            i64::from(pool.max),
        )?;
        gauge(
            &mut encoder,
            "mandate_watch_streams_open",
            "WatchChanges streams open",
            i64::from(self.feeds.open_count()),
        )?;
        gauge(
            &mut encoder,
            "mandate_change_tail_revision",
            "The latest revision this server's change tail has applied to its cache",
            self.store.applied_revision(),
        )?;
        let trail = self.denials.stats();
        counter(
            &mut encoder,
            "mandate_denied_checks_dropped",
            "Denied checks not written to the trail: its queue was full, or the database \
             refused their rows",
            trail.dropped,
        )?;
        counter(
            &mut encoder,
            "mandate_denied_check_rows_written",
            "Rows this server wrote to the denied-check trail (identical denials within a \
             window share one row)",
            trail.written,
        )?;
        counter(
            &mut encoder,
            "mandate_denied_checks_folded",
            "Denied checks written as part of an identical one's row instead of a row of their \
             own",
            trail.folded,
        )?;
        counter(
            &mut encoder,
            "mandate_denied_check_write_failures",
            "Writes to the denied-check trail the database refused (their rows are dropped)",
            trail.failures,
        )?;
        counter(
            &mut encoder,
            "mandate_denied_check_rows_pruned",
            "Rows this server deleted from the denied-check trail for being older than the \
             retention",
            trail.pruned,
        )?;
        gauge(
            &mut encoder,
            "mandate_denied_check_rows",
            "Rows in the denied-check trail: as counted at the last pruning (hourly), plus \
             those this server wrote since",
            i64::try_from(trail.rows).unwrap_or(i64::MAX),
        )
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), fmt::Error> {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

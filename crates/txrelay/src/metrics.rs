//! Prometheus metrics of the relay, served on `/metrics` by `svckit::serve`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels `{outcome}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `accepted`, `resubmitted`, `duplicate` or a rejection code.
    pub outcome: String,
}

/// Labels `{chain_id, result}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChainLabels {
    /// Chain id.
    pub chain_id: u64,
    /// What happened.
    pub result: String,
}

/// Labels `{channel, result}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// `webhook` or `account`.
    pub channel: String,
    /// `delivered`, `failed` or `dead`.
    pub result: String,
}

/// The relay's metric handles (clones share the same series).
#[derive(Debug, Clone)]
pub struct Metrics {
    /// `txrelay_submissions_total{outcome}`: API submissions by outcome.
    pub submissions: Family<OutcomeLabels, Counter>,
    /// `txrelay_broadcasts_total{chain_id,result}`: broadcast attempts (`sent`, `retry`,
    /// `rejected`, `conflict`, `known` when a re-claimed job found the node already holding
    /// the transaction).
    pub broadcasts: Family<ChainLabels, Counter>,
    /// `txrelay_chain_events_total{chain_id,result}`: tracker decisions (`included`,
    /// `mined`, `failed`, `reorged`, `dropped`, `finalized`).
    pub chain_events: Family<ChainLabels, Counter>,
    /// `txrelay_node_failovers_total{chain_id,result="failover"}`: switches to another node URL.
    pub failovers: Family<ChainLabels, Counter>,
    /// `txrelay_deliveries_total{channel,result}`: notification attempts.
    pub deliveries: Family<DeliveryLabels, Counter>,
    /// `txrelay_delivery_seconds`: from a result's creation to its delivery.
    pub delivery_seconds: Histogram,
}

impl Metrics {
    /// Fresh handles registered in `registry` under the `txrelay` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            submissions: Family::default(),
            broadcasts: Family::default(),
            chain_events: Family::default(),
            failovers: Family::default(),
            deliveries: Family::default(),
            delivery_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        };
        let sub = registry.sub_registry_with_prefix("txrelay");
        sub.register(
            "submissions",
            "API submissions by outcome",
            metrics.submissions.clone(),
        );
        sub.register(
            "broadcasts",
            "Broadcast attempts by chain and result",
            metrics.broadcasts.clone(),
        );
        sub.register(
            "chain_events",
            "Tracker decisions by chain",
            metrics.chain_events.clone(),
        );
        sub.register(
            "node_failovers",
            "Switches to another node URL",
            metrics.failovers.clone(),
        );
        sub.register(
            "deliveries",
            "Notification delivery attempts",
            metrics.deliveries.clone(),
        );
        sub.register(
            "delivery_seconds",
            "Time from a result's creation to its delivery, in seconds",
            metrics.delivery_seconds.clone(),
        );
        metrics
    }

    /// Counts a submission outcome.
    pub fn submission(&self, outcome: &str) {
        self.submissions
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts a chain-labelled event in `family`.
    pub fn chain(family: &Family<ChainLabels, Counter>, chain_id: u64, result: &str) {
        family
            .get_or_create(&ChainLabels {
                chain_id,
                result: result.to_owned(),
            })
            .inc();
    }

    /// Counts a delivery attempt.
    pub fn delivery(&self, channel: &str, result: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                channel: channel.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }
}

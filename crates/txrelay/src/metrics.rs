//! Prometheus metrics of the relay, served on the operations listener's `/metrics` by
//! `svckit::serve`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels `{outcome}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `accepted`, `duplicate`, a rejection code, or for authentication `ok`,
    /// `unauthorized`, `rate_limited`.
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

/// Labels `{chain_id, method}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// Chain id.
    pub chain_id: u64,
    /// JSON-RPC method.
    pub method: String,
}

/// Labels `{channel, result}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// `webhook` or `account`.
    pub channel: String,
    /// `delivered`, `failed`, `dead`, `probe`, `parked`.
    pub result: String,
}

/// Labels `{chain_id}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChainIdLabels {
    /// EIP-155 chain id.
    pub chain_id: u64,
}

/// Labels `{kind}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `broadcast_jobs` / `notifications` for the backlog, `transaction` / `notification`
    /// for the oldest pending age.
    pub kind: String,
}

/// The relay's metric handles (clones share the same series).
#[derive(Debug, Clone)]
pub struct Metrics {
    /// `txrelay_submissions_total{outcome}`: API submissions by outcome.
    pub submissions: Family<OutcomeLabels, Counter>,
    /// `txrelay_auth_total{outcome}`: authentication checks by outcome.
    pub auth: Family<OutcomeLabels, Counter>,
    /// `txrelay_broadcasts_total{chain_id,result}`: broadcast attempts (`sent`, `retry`,
    /// `rejected`, `conflict`, `known` when a re-claimed job found the node already holding
    /// the transaction).
    pub broadcasts: Family<ChainLabels, Counter>,
    /// `txrelay_chain_events_total{chain_id,result}`: tracker decisions (`included`,
    /// `mined`, `failed`, `reorged`, `dropped`, `finalized`, `stuck`, `replaced`, `expired`).
    pub chain_events: Family<ChainLabels, Counter>,
    /// `txrelay_follower_rows_total{chain_id,result}`: tracked rows the head follower read,
    /// `full` in its scans of every unfinished transaction, `block` for the transactions of
    /// the blocks it read and of those just sent, `timer` for pending rows whose rebroadcast
    /// timer ran out.
    pub follower_rows: Family<ChainLabels, Counter>,
    /// `txrelay_node_failovers_total{chain_id,result="failover"}`: switches to another node URL.
    pub failovers: Family<ChainLabels, Counter>,
    /// `txrelay_node_requests_total{chain_id,method}`: JSON-RPC requests to nodes, one per
    /// batch entry (receipt-related RPCs per transaction are read from this).
    pub node_requests: Family<MethodLabels, Counter>,
    /// `txrelay_deliveries_total{channel,result}`: notification attempts.
    pub deliveries: Family<DeliveryLabels, Counter>,
    /// `txrelay_delivery_claim_queries_total`: claim queries of the webhook worker (results
    /// of the head follower are handed over from memory and cost none).
    pub delivery_claims: Counter,
    /// `txrelay_delivery_seconds`: from a result's creation to its delivery.
    pub delivery_seconds: Histogram,
    /// `txrelay_inclusion_to_delivery_seconds`: from the relay first seeing the including
    /// block to the webhook's 2xx.
    pub inclusion_to_delivery_seconds: Histogram,
    /// `txrelay_backlog{kind}`: open broadcast jobs and pending notifications.
    pub backlog: Family<KindLabels, Gauge>,
    /// `txrelay_tracked_transactions`: transactions not yet final.
    pub tracked: Gauge,
    /// `txrelay_follower_head{chain_id}`: the newest block number the head follower has
    /// read and decided on (compare with the node's head for the follower's lag).
    pub follower_head: Family<ChainIdLabels, Gauge>,
    /// `txrelay_oldest_pending_seconds{kind}`: age of the oldest unfinished transaction and
    /// pending notification.
    pub oldest_pending_seconds: Family<KindLabels, Gauge>,
}

impl Metrics {
    /// Fresh handles registered in `registry` under the `txrelay` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            submissions: Family::default(),
            auth: Family::default(),
            broadcasts: Family::default(),
            chain_events: Family::default(),
            follower_rows: Family::default(),
            failovers: Family::default(),
            node_requests: Family::default(),
            deliveries: Family::default(),
            delivery_claims: Counter::default(),
            delivery_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            inclusion_to_delivery_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            backlog: Family::default(),
            tracked: Gauge::default(),
            follower_head: Family::default(),
            oldest_pending_seconds: Family::default(),
        };
        let sub = registry.sub_registry_with_prefix("txrelay");
        sub.register(
            "submissions",
            "API submissions by outcome",
            metrics.submissions.clone(),
        );
        sub.register(
            "auth",
            "Authentication checks by outcome",
            metrics.auth.clone(),
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
            "delivery_claim_queries",
            "Claim queries of the webhook worker",
            metrics.delivery_claims.clone(),
        );
        sub.register(
            "follower_head",
            "Newest block number the head follower has read and decided on",
            metrics.follower_head.clone(),
        );
        sub.register(
            "follower_rows",
            "Tracked rows the head follower read, by scan kind",
            metrics.follower_rows.clone(),
        );
        sub.register(
            "node_failovers",
            "Switches to another node URL",
            metrics.failovers.clone(),
        );
        sub.register(
            "node_requests",
            "JSON-RPC requests to nodes by method (batch entries counted one by one)",
            metrics.node_requests.clone(),
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
        sub.register(
            "inclusion_to_delivery_seconds",
            "Time from the relay seeing the including block to the webhook's 2xx, in seconds",
            metrics.inclusion_to_delivery_seconds.clone(),
        );
        sub.register(
            "backlog",
            "Open broadcast jobs and pending notifications",
            metrics.backlog.clone(),
        );
        sub.register(
            "tracked_transactions",
            "Transactions not yet final",
            metrics.tracked.clone(),
        );
        sub.register(
            "oldest_pending_seconds",
            "Age of the oldest unfinished transaction and pending notification, in seconds",
            metrics.oldest_pending_seconds.clone(),
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

    /// Counts an authentication outcome.
    pub fn auth(&self, outcome: &str) {
        self.auth
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

    /// Sets a `{kind}` gauge of `family`.
    pub fn set(family: &Family<KindLabels, Gauge>, kind: &str, value: i64) {
        family
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .set(value);
    }
}

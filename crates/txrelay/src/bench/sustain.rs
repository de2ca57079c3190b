//! The sustained row of `txrelay bench` (issue 11 item 3): transactions offered to the relay
//! at a fixed rate for a fixed time (open loop: the offer does not wait for answers, up to a
//! bound of requests in flight), with the relay's backlog (open broadcast jobs plus pending
//! notifications) sampled at the start, every [`SAMPLE_EVERY`] and at the end of the offer
//! (flat or growing), the delivered rate inside
//! the offer window, notification latency after inclusion, and how long the backlog took to
//! drain after the offer stopped.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use anyhow::bail;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::anvil::{BlockObserver, percentile_ms};
use crate::client::RelayClient;
use crate::receiver::ReceiverServer;
use crate::store::Store;

/// Most requests in flight during the sustained offer; an offer slot that finds them all busy
/// is counted as `not_offered` (the relay could not take the rate).
const MAX_IN_FLIGHT: usize = 512;

/// How often the backlog is sampled during the offer.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Most transactions one sustained row may sign (rate x seconds).
pub const MAX_SUSTAINED_TXS: u64 = 1_000_000;

/// What the sustained row asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sustain {
    /// Offered transactions per second.
    pub rate: u32,
    /// Seconds of offer.
    pub seconds: u64,
}

/// The sustained row's figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SustainReport {
    /// Offered rate, tx/s.
    pub offered_per_s: f64,
    /// Seconds of offer.
    pub seconds: f64,
    /// Transactions the relay answered 202 during the offer, per second.
    pub accepted_per_s: f64,
    /// Offer slots that found `MAX_IN_FLIGHT` requests still unanswered and waited for one
    /// (the offer fell behind its rate there; nothing is skipped, so no nonce gap is made).
    pub not_offered: u64,
    /// Submissions refused (non-202 answers or transport errors).
    pub refused: u64,
    /// The refused submissions by why: `"STATUS REASON"` (the answer's `error.reason`) or
    /// `"transport"`, with their counts.
    pub refusals: BTreeMap<String, u64>,
    /// Signed webhooks that arrived inside the offer window, per second.
    pub delivered_per_s: f64,
    /// Open broadcast jobs plus pending notifications when the offer began.
    pub backlog_start: u64,
    /// The same when the offer ended.
    pub backlog_end: u64,
    /// The same every [`SAMPLE_EVERY`] during the offer, in order.
    pub backlog_samples: Vec<u64>,
    /// The largest of `backlog_samples` and `backlog_end`.
    pub backlog_peak: u64,
    /// Seconds after the offer ended until every accepted transaction was notified
    /// (`None`: not within the drain limit).
    pub drained_after_s: Option<f64>,
    /// Notification after inclusion, median, ms (deliveries of this row).
    pub p50_ms: Option<f64>,
    /// The same, 99th percentile.
    pub p99_ms: Option<f64>,
}

/// The pieces of the benchmark the sustained row uses.
pub(super) struct Rig<'a> {
    pub(super) client: &'a RelayClient,
    pub(super) store: &'a Store,
    pub(super) receivers: &'a ReceiverServer,
    pub(super) observer: &'a BlockObserver,
    pub(super) chain_id: u64,
    pub(super) device: &'a str,
}

async fn backlog(store: &Store) -> anyhow::Result<u64> {
    let (jobs, pending, _, _) = store.backlog().await?;
    Ok(jobs + pending)
}

/// The backlog every [`SAMPLE_EVERY`] until `stop` (a failed read is left out).
async fn sample(store: Store, stop: tokio_util::sync::CancellationToken) -> Vec<u64> {
    let mut samples = Vec::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return samples,
            () = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
        if let Ok(n) = backlog(&store).await {
            samples.push(n);
        }
    }
}

/// Offers `load` (signed, in nonce order per account) at `sustain.rate` for
/// `sustain.seconds`, then waits up to `drain` for the rest to be notified.
///
/// # Errors
/// A database read of the backlog failed, or a webhook signature did not verify.
pub(super) async fn run(
    rig: &Rig<'_>,
    load: Vec<(Address, Vec<u8>)>,
    sustain: Sustain,
    drain: Duration,
) -> anyhow::Result<SustainReport> {
    let wanted: HashSet<B256> = load
        .iter()
        .map(|(_, raw)| alloy::primitives::keccak256(raw))
        .collect();
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let refusals = Arc::new(std::sync::Mutex::new(BTreeMap::<String, u64>::new()));
    let mut not_offered = 0_u64;
    let backlog_start = backlog(rig.store).await?;
    let stop = tokio_util::sync::CancellationToken::new();
    let sampler = tokio::spawn(sample(rig.store.clone(), stop.clone()));
    let started = Instant::now();
    let period = Duration::from_secs(1) / sustain.rate.max(1);
    let mut ticker = tokio::time::interval(period.max(Duration::from_micros(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for (sender, raw) in load {
        ticker.tick().await;
        // A full slot table waits for a free slot instead of skipping the transaction: a
        // skipped nonce would leave every later transaction of its account stuck in the
        // node's pool, and the row would measure that gap, not the relay.
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                not_offered += 1;
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    break;
                };
                slot
            }
        };
        let (client, device) = (rig.client.clone(), rig.device.to_owned());
        let (accepted, refused) = (Arc::clone(&accepted), Arc::clone(&refused));
        let refusals = Arc::clone(&refusals);
        let chain_id = rig.chain_id;
        tasks.spawn(async move {
            let _slot = slot;
            let why = match client.submit(chain_id, &raw, sender, &device, true).await {
                Ok(answer) if answer.accepted().is_some() => {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(answer) => format!("{} {}", answer.status, answer.reason().unwrap_or("-")),
                Err(_) => "transport".to_owned(),
            };
            refused.fetch_add(1, Ordering::Relaxed);
            *refusals
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(why)
                .or_default() += 1;
        });
        while tasks.try_join_next().is_some() {}
    }
    let offer = started.elapsed();
    let backlog_end = backlog(rig.store).await?;
    stop.cancel();
    let backlog_samples = sampler.await.unwrap_or_default();
    let backlog_peak = backlog_samples
        .iter()
        .copied()
        .chain([backlog_end])
        .max()
        .unwrap_or(backlog_end);
    let accepted_in_offer = accepted.load(Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    let delivered_in_offer = rig
        .receivers
        .deliveries()
        .iter()
        .filter(|d| wanted.contains(&d.event.tx_hash) && d.arrived <= started + offer)
        .count();
    let expected = accepted.load(Ordering::Relaxed) as usize;
    let ended = started + offer;
    let deadline = Instant::now() + drain;
    let drained_after_s = loop {
        if rig.receivers.count() >= expected
            && rig.receivers.first_arrivals(&wanted).len() >= expected
        {
            break Some(ended.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if rig.receivers.stats().bad_signatures > 0 {
        bail!("webhook signatures failed to verify");
    }
    let latency: Vec<Duration> = rig
        .receivers
        .deliveries()
        .iter()
        .filter(|d| wanted.contains(&d.event.tx_hash))
        .filter_map(|d| {
            let seen = rig.observer.first_seen(d.event.block_number?)?;
            Some(d.arrived.saturating_duration_since(seen))
        })
        .collect();
    let secs = offer.as_secs_f64().max(1e-9);
    let per_s = |n: f64| (n / secs * 10.0).round() / 10.0;
    Ok(SustainReport {
        offered_per_s: f64::from(sustain.rate),
        seconds: (secs * 100.0).round() / 100.0,
        accepted_per_s: per_s(accepted_in_offer as f64),
        not_offered,
        refused: refused.load(Ordering::Relaxed),
        refusals: refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone(),
        delivered_per_s: per_s(delivered_in_offer as f64),
        backlog_start,
        backlog_end,
        backlog_samples,
        backlog_peak,
        drained_after_s: drained_after_s.map(|s| (s * 10.0).round() / 10.0),
        p50_ms: (!latency.is_empty()).then(|| percentile_ms(&latency, 50.0)),
        p99_ms: (!latency.is_empty()).then(|| percentile_ms(&latency, 99.0)),
    })
}

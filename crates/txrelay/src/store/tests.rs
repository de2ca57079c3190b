//! Store tests on a temporary SQLite file (the PostgreSQL dialect runs in the integration
//! tests).

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use svckit::redact::SafeUrl;

use super::*;
use crate::core::Inclusion;
use crate::core::Step;
use crate::core::window::Admission;
use crate::event::{Event, EventStatus};
use crate::load::{Wallet, transfer};
use crate::rules::Receiver;
use crate::rules::{Registration, StoredRegistration};
use crate::validate::SignedTx;

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url: SafeUrl = format!("sqlite://{}", dir.path().join("t.db").display())
        .parse()
        .unwrap();
    let store = Store::open(&url, 1).await.unwrap();
    (dir, store)
}

fn signed(nonce: u64) -> SignedTx {
    let alice = Wallet::from_seed([9; 32]).unwrap();
    let raw = transfer(
        &alice,
        31337,
        nonce,
        Address::repeat_byte(7),
        U256::from(1),
        21_000,
    )
    .unwrap();
    crate::validate::check_transaction(
        &format!("0x{}", hex::encode(&raw)),
        alice.address(),
        31337,
        true,
    )
    .unwrap()
}

#[tokio::test]
async fn admission_claims_and_leases() {
    let (_dir, store) = store().await;
    let tx = signed(0);
    let window = Duration::from_secs(60);
    assert_eq!(
        store.submit(&tx, "d", true, 1_000, window).await.unwrap(),
        Admission::New
    );
    assert_eq!(
        store.submit(&tx, "d", true, 2_000, window).await.unwrap(),
        Admission::Duplicate
    );
    assert_eq!(
        store.submit(&tx, "e", false, 3_000, window).await.unwrap(),
        Admission::Resend
    );
    assert_eq!(store.accepted_at(tx.hash).await.unwrap(), Some(1_000));
    let devices: Vec<String> = store
        .devices_of(tx.hash)
        .await
        .unwrap()
        .into_iter()
        .map(|(device, _)| device)
        .collect();
    assert_eq!(devices, ["d", "e"]);
    let lease = Duration::from_secs(10);
    let jobs = store.claim_broadcasts("i", 5_000, lease, 10).await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j.attempts == 1));
    assert!(
        store
            .claim_broadcasts("i", 6_000, lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // After the lease, another worker takes them over; a restart releases at once.
    let again = store
        .claim_broadcasts("j", 15_001, lease, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|j| j.attempts == 2));
    assert_eq!(store.release_claims("j").await.unwrap(), 2);
    assert_eq!(
        store
            .claim_broadcasts("k", 15_002, lease, 1)
            .await
            .unwrap()
            .len(),
        1
    );
    // Outside the window an idempotent submission is sent again and restarts the window.
    assert_eq!(
        store.submit(&tx, "d", true, 70_000, window).await.unwrap(),
        Admission::Resend
    );
    assert_eq!(store.accepted_at(tx.hash).await.unwrap(), Some(70_000));
}

/// One webhook receiver at `http://127.0.0.1:9/hook`, its rules sealed by a fixed key.
fn hook_rules() -> (crate::secrets::SecretBox, StoredRegistration) {
    let registration = Registration {
        fixed: vec![Receiver {
            url: "http://127.0.0.1:9/hook".parse().unwrap(),
            secret: Some(svckit::redact::Secret::new("0123456789abcdef")),
            scheme: crate::rules::SignatureScheme::TxrelayV1,
        }],
        ..Registration::default()
    };
    let secrets = crate::secrets::SecretBox::from_config(&crate::config::SecretsConfig {
        key: "11".repeat(32),
        previous_keys: Vec::new(),
    })
    .unwrap();
    let stored = registration.sealed(&secrets);
    (secrets, stored)
}

/// The inclusion of a transaction in block 5.
fn included() -> Step {
    Step::Include {
        inclusion: Inclusion {
            block_number: 5,
            block_hash: B256::repeat_byte(5),
            gas_used: 21_000,
            success: true,
        },
        reorged_from: None,
        notify_reorg: false,
        confirm: true,
    }
}

/// `tx` of device `d` accepted at 1,000 ms and sent to the node at 1,100 ms: its record.
async fn sent(store: &Store, tx: &SignedTx) -> TxRecord {
    store
        .submit(tx, "d", true, 1_000, Duration::from_secs(60))
        .await
        .unwrap();
    let job = store
        .claim_broadcasts("i", 1_000, Duration::from_secs(10), 1)
        .await
        .unwrap()
        .remove(0);
    store
        .finish_broadcast(&job, &BroadcastOutcome::Sent, 1_100)
        .await
        .unwrap();
    store.transaction(tx.hash).await.unwrap().unwrap()
}

#[tokio::test]
async fn results_go_through_the_outbox() {
    let (_dir, store) = store().await;
    let (secrets, stored) = hook_rules();
    assert_eq!(
        store.put_device("acme", "d", &stored, 10, 0).await.unwrap(),
        devices::PutDevice::Stored
    );
    // Another tenant cannot take the device over; the owner can replace its rules.
    assert_eq!(
        store.put_device("evil", "d", &stored, 10, 0).await.unwrap(),
        devices::PutDevice::OwnedByOther
    );
    assert_eq!(
        store.put_device("acme", "d", &stored, 10, 1).await.unwrap(),
        devices::PutDevice::Stored
    );
    assert_eq!(
        store.put_device("acme", "d2", &stored, 1, 1).await.unwrap(),
        devices::PutDevice::TooMany
    );
    let record = store.device("d").await.unwrap().unwrap();
    assert_eq!(record.tenant.as_deref(), Some("acme"));
    // The secret is sealed at rest: not in the rules text.
    let raw: String = sqlx::query_scalar("SELECT rules FROM devices WHERE device = 'd'")
        .fetch_one(&store.read)
        .await
        .unwrap();
    assert!(!raw.contains("0123456789abcdef"), "{raw}");
    let tx = signed(0);
    let record = sent(&store, &tx).await;
    assert_eq!(record.status, TxStatus::Pending);
    assert_eq!(record.broadcast_count, 1);
    let step = included();
    let Step::Include { inclusion, .. } = step else {
        unreachable!()
    };
    let applied = store
        .apply_step(&record, &step, None, 1, 2_000)
        .await
        .unwrap();
    assert!(applied.changed);
    assert_eq!(applied.notifications, 1);
    // The same decision from a stale read (another instance) changes nothing.
    let stale = store
        .apply_step(&record, &step, None, 1, 2_000)
        .await
        .unwrap();
    assert_eq!(stale, Applied::default());
    let webhooks = store
        .claim_webhooks("i", 2_000, Duration::from_secs(10), 10)
        .await
        .unwrap();
    assert_eq!(webhooks.len(), 1);
    let event: Event = serde_json::from_str(&webhooks[0].payload).unwrap();
    assert_eq!(event.status, EventStatus::Mined);
    assert_eq!(
        secrets.open(&webhooks[0].sealed_secret).unwrap(),
        "0123456789abcdef"
    );
    assert_eq!(event.block_number, Some(5));
    store
        .delivery_failed(webhooks[0].id, None, "HTTP 500")
        .await
        .unwrap();
    let dead = store.notifications(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(store.replay(Some(dead[0].id), 3_000).await.unwrap(), 1);
    let retried = store
        .claim_webhooks("i", 3_000, Duration::from_secs(10), 10)
        .await
        .unwrap();
    assert_eq!(retried[0].attempts, 1);
    store.delivered(retried[0].id, 3_100).await.unwrap();
    assert_eq!(store.backlog().await.unwrap(), (0, 0, 1, 0));
    // A reorg puts it back to pending with a rebroadcast job.
    let mined = store.transaction(tx.hash).await.unwrap().unwrap();
    let reorg = Step::Reorged {
        from: inclusion,
        notify: true,
    };
    let applied = store
        .apply_step(&mined, &reorg, None, 1, 4_000)
        .await
        .unwrap();
    assert!(applied.changed && applied.rebroadcast);
    assert_eq!(applied.notifications, 1);
    let record = store.transaction(tx.hash).await.unwrap().unwrap();
    assert_eq!((record.status, record.reorgs), (TxStatus::Pending, 1));
    assert_eq!(store.backlog().await.unwrap().0, 1);
}

/// A block's inclusion updates are written together (one statement per batch): a row
/// changes only while it is as the follower read it, a transaction repeated in the batch
/// changes once, and the block is stored for each.
#[tokio::test]
async fn a_batch_of_inclusions_changes_only_rows_still_as_read() {
    let (_dir, store) = store().await;
    let mut records = Vec::new();
    for nonce in 0..3 {
        records.push(sent(&store, &signed(nonce)).await);
    }
    // Another instance recorded the third one already: this read of it is stale.
    let first = store
        .apply_step(&records[2], &included(), None, 1, 1_500)
        .await
        .unwrap();
    assert!(first.changed);
    let decision = |record| Decision {
        record,
        step: included(),
        receipt: None,
        revert_reason: None,
        seen_at_ms: Some(1_900),
    };
    let decisions = [
        decision(&records[0]),
        decision(&records[1]),
        decision(&records[0]),
        decision(&records[2]),
    ];
    let applied = store.apply_steps(&decisions, 1, 2_000).await.unwrap();
    let changed: Vec<bool> = applied.iter().map(|a| a.changed).collect();
    assert_eq!(changed, [true, true, false, false]);
    for record in &records {
        let stored = store.transaction(record.tx_hash).await.unwrap().unwrap();
        assert_eq!(stored.status, TxStatus::Mined);
        assert_eq!(
            stored
                .inclusion
                .map(|i| (i.block_number, i.block_hash, i.gas_used, i.success)),
            Some((5, B256::repeat_byte(5), 21_000, true))
        );
    }
}

#[tokio::test]
async fn tracked_pages_see_every_transaction_once() {
    let (_dir, store) = store().await;
    let window = Duration::from_secs(60);
    // Seven transactions, five accepted in the same millisecond (ties ordered by hash).
    for nonce in 0..7 {
        let at = if nonce < 5 { 1_000 } else { 1_000 + nonce };
        store
            .submit(&signed(nonce), "d", false, at, window)
            .await
            .unwrap();
    }
    let jobs = store
        .claim_broadcasts("i", 2_000, Duration::from_secs(10), 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 7);
    for job in &jobs {
        store
            .finish_broadcast(job, &BroadcastOutcome::Sent, 2_100)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.tracked_page(31337, after, 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else {
            break;
        };
        after = Some((last.accepted_at_ms, last.tx_hash));
        seen.extend(page.iter().map(|r| r.tx_hash));
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert_eq!(unique.len(), 7);
}

fn queued(nonce: u64) -> Submission {
    Submission {
        signed: signed(nonce),
        device: "d".to_owned(),
        idempotent: true,
        now_ms: 1_000,
        window: Duration::from_secs(60),
    }
}

/// A batch writes its new transactions with multi-row statements and the others (stored
/// already, or repeated in the batch) one by one: every submission gets its row, every new
/// transaction one broadcast job and one device link.
#[tokio::test]
async fn a_batch_writes_new_transactions_together_and_the_rest_in_order() {
    let (_dir, store) = store().await;
    let first = store.submit_batch(&[queued(0), queued(1)]).await.unwrap();
    assert_eq!(first, vec![Admission::New, Admission::New]);
    let second = store
        .submit_batch(&[queued(1), queued(2), queued(2)])
        .await
        .unwrap();
    assert_eq!(
        second,
        vec![Admission::Duplicate, Admission::New, Admission::Duplicate]
    );
    let count = |sql: &'static str| {
        let store = store.clone();
        async move {
            let n: i64 = sqlx::query_scalar(sql)
                .fetch_one(&store.read)
                .await
                .unwrap();
            n
        }
    };
    assert_eq!(count("SELECT COUNT(*) FROM submissions").await, 5);
    assert_eq!(
        count("SELECT COUNT(*) FROM submissions WHERE duplicate = 1").await,
        2
    );
    assert_eq!(count("SELECT COUNT(*) FROM tx_devices").await, 3);
    assert_eq!(
        count("SELECT COUNT(*) FROM broadcast_jobs WHERE reason = 'accepted'").await,
        3
    );
    let record = store.transaction(signed(2).hash).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.nonce, record.accepted_at_ms),
        (TxStatus::Queued, 2, 1_000)
    );
}

/// A group-commit writer on `store` (16 per batch, lingering `linger`) that hands jobs,
/// leased to instance `i` for 10 s, to an inbox of `inbox` batches.
fn handing_writer(
    store: &Store,
    inbox: usize,
    linger: Duration,
) -> (
    GroupCommit,
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::Receiver<HandedJobs>,
    tokio_util::sync::CancellationToken,
) {
    let cancel = tokio_util::sync::CancellationToken::new();
    let settings = GroupSettings {
        max_batch: 16,
        linger,
        queue: 64,
    };
    let (jobs, handed) = tokio::sync::mpsc::channel(inbox);
    let handoff = Handoff {
        instance: "i".to_owned(),
        lease: Duration::from_secs(10),
        jobs,
    };
    let (group, writer) =
        GroupCommit::start(store.clone(), settings, Some(handoff), cancel.clone());
    (group, writer, handed, cancel)
}

/// With a handoff the writer commits new transactions' jobs claimed by this instance and
/// hands them over with their bytes: nobody else can claim them until the lease ends.
#[tokio::test]
async fn committed_jobs_are_handed_over_claimed() {
    let (_dir, store) = store().await;
    let (group, writer, mut handed, cancel) = handing_writer(&store, 4, Duration::from_millis(2));
    let items: Vec<Submission> = (0..3).map(queued).collect();
    let answers =
        futures::future::join_all(items.iter().cloned().map(|item| group.submit(item))).await;
    assert!(answers.into_iter().all(|a| a.unwrap() == Admission::New));
    let mut got = Vec::new();
    while got.len() < 3 {
        got.extend(handed.recv().await.unwrap());
    }
    let hashes: Vec<B256> = got.iter().map(|(job, _)| job.tx_hash).collect();
    let want: Vec<B256> = items.iter().map(|i| i.signed.hash).collect();
    assert_eq!(hashes, want);
    for ((job, facts), item) in got.iter().zip(&items) {
        assert_eq!((job.attempts, job.reason.as_str()), (1, "accepted"));
        assert_eq!(facts.raw, item.signed.raw.to_vec());
        assert_eq!(facts.sender, item.signed.sender);
    }
    // Leased: not claimable now (1,000 ms + 10 s), claimable once the lease is over.
    let claim = |at| {
        let store = store.clone();
        async move {
            store
                .claim_broadcasts("j", at, Duration::from_secs(10), 10)
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(claim(5_000).await, 0);
    assert_eq!(claim(20_000).await, 3);
    cancel.cancel();
    writer.await.unwrap();
}

/// The handoff is bounded: with the broadcaster's inbox full the writer waits before it
/// takes the next batch, so jobs reach the broadcaster in commit order and none is left
/// unclaimed for a claim to send ahead of earlier nonces.
#[tokio::test]
async fn a_full_handoff_holds_the_writer_and_keeps_commit_order() {
    let (_dir, store) = store().await;
    let (group, writer, mut handed, cancel) = handing_writer(&store, 1, Duration::ZERO);
    // The first batch fills the inbox; the second is committed and waits to be handed.
    assert_eq!(group.submit(queued(0)).await.unwrap(), Admission::New);
    assert_eq!(group.submit(queued(1)).await.unwrap(), Admission::New);
    let third = tokio::spawn({
        let group = group.clone();
        async move { group.submit(queued(2)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        store.transaction(signed(2).hash).await.unwrap().is_none(),
        "the writer took another batch while the inbox was full"
    );
    let claimable = store
        .claim_broadcasts("j", 2_000, Duration::from_secs(10), 10)
        .await
        .unwrap();
    assert!(claimable.is_empty(), "{claimable:?}");
    let mut order = Vec::new();
    while order.len() < 3 {
        order.extend(
            handed
                .recv()
                .await
                .unwrap()
                .into_iter()
                .map(|(j, _)| j.tx_hash),
        );
    }
    assert_eq!(order, [signed(0).hash, signed(1).hash, signed(2).hash]);
    assert_eq!(third.await.unwrap().unwrap(), Admission::New);
    cancel.cancel();
    writer.await.unwrap();
}

#[tokio::test]
async fn concurrent_submissions_share_commits() {
    const K: u64 = 200;
    let (_dir, store) = store().await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let settings = GroupSettings {
        max_batch: 256,
        linger: Duration::from_millis(2),
        queue: 1_024,
    };
    let (group, writer) = GroupCommit::start(store.clone(), settings, None, cancel.clone());
    let before = store.commits().get();
    let mut items: Vec<Submission> = (0..K).map(queued).collect();
    // The same transaction twice in one batch: the second sees the first.
    items.push(queued(0));
    let answers = futures::future::join_all(items.into_iter().map(|item| group.submit(item))).await;
    let commits = store.commits().get() - before;
    let admissions: Vec<Admission> = answers.into_iter().map(Result::unwrap).collect();
    assert!(
        admissions[..K as usize]
            .iter()
            .all(|a| *a == Admission::New)
    );
    assert_eq!(admissions[K as usize], Admission::Duplicate);
    assert!(
        commits * 10 < K,
        "{commits} commits for {K} concurrent submissions"
    );
    // Every answered submission is committed: its broadcast job is there.
    let jobs = store
        .claim_broadcasts("i", 2_000, Duration::from_secs(10), 1_000)
        .await
        .unwrap();
    assert_eq!(jobs.len(), K as usize);
    cancel.cancel();
    writer.await.unwrap();
}

#[tokio::test]
async fn a_full_submission_queue_refuses_at_once() {
    let (_dir, store) = store().await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let settings = GroupSettings {
        max_batch: 1,
        linger: Duration::ZERO,
        queue: 2,
    };
    let (group, writer) = GroupCommit::start(store.clone(), settings, None, cancel.clone());
    // On this single-threaded runtime the writer cannot run while the five submissions are
    // first polled together: two fit in the queue, three are refused.
    let answers = futures::future::join_all((0..5).map(|nonce| group.submit(queued(nonce)))).await;
    let full = answers
        .iter()
        .filter(|a| matches!(a, Err(QueueError::Full)))
        .count();
    assert_eq!(full, 3, "{answers:?}");
    assert_eq!(
        answers
            .iter()
            .filter(|a| matches!(a, Ok(Admission::New)))
            .count(),
        2
    );
    // After a stop, queued work is committed and new work is refused.
    cancel.cancel();
    writer.await.unwrap();
    assert!(matches!(
        group.submit(queued(9)).await,
        Err(QueueError::Closed)
    ));
}

#[tokio::test]
async fn a_broadcast_batch_is_recorded_in_one_commit() {
    let (_dir, store) = store().await;
    let items: Vec<Submission> = (0..20).map(queued).collect();
    store.submit_batch(&items).await.unwrap();
    let jobs = store
        .claim_broadcasts("i", 2_000, Duration::from_secs(10), 100)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 20);
    let finished: Vec<(BroadcastJob, BroadcastOutcome)> = jobs
        .into_iter()
        .map(|job| (job, BroadcastOutcome::Sent))
        .collect();
    let before = store.commits().get();
    let created = store.finish_broadcasts(&finished, 2_100).await.unwrap();
    assert_eq!(store.commits().get() - before, 1);
    assert_eq!(created, vec![0; 20]);
    for (job, _) in &finished {
        let record = store.transaction(job.tx_hash).await.unwrap().unwrap();
        assert_eq!(
            (record.status, record.broadcast_count),
            (TxStatus::Pending, 1)
        );
    }
    assert!(
        store
            .claim_broadcasts("i", 60_000, Duration::from_secs(10), 100)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Sent and skipped outcomes are written together, the others one by one, in order: a
/// transaction sent twice in one batch counts two broadcasts, a retried job stays open and
/// a skipped one closes without touching its transaction.
#[tokio::test]
async fn a_broadcast_batch_mixes_outcomes_and_repeats() {
    let (_dir, store) = store().await;
    let items: Vec<Submission> = (0..3).map(queued).collect();
    store.submit_batch(&items).await.unwrap();
    let jobs = store
        .claim_broadcasts("i", 2_000, Duration::from_secs(10), 100)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 3);
    let finished = vec![
        (jobs[0].clone(), BroadcastOutcome::Sent),
        (jobs[1].clone(), BroadcastOutcome::Skipped),
        (jobs[2].clone(), BroadcastOutcome::RetryAt(5_000)),
        (jobs[0].clone(), BroadcastOutcome::Sent),
    ];
    store.finish_broadcasts(&finished, 2_100).await.unwrap();
    let status = |n: usize| {
        let store = store.clone();
        let hash = jobs[n].tx_hash;
        async move {
            let r = store.transaction(hash).await.unwrap().unwrap();
            (r.status, r.broadcast_count)
        }
    };
    assert_eq!(status(0).await, (TxStatus::Pending, 2));
    assert_eq!(status(1).await, (TxStatus::Queued, 0));
    assert_eq!(status(2).await, (TxStatus::Queued, 0));
    // Only the retried job comes back, when due.
    let again = store
        .claim_broadcasts("i", 60_000, Duration::from_secs(10), 100)
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|j| j.tx_hash).collect::<Vec<_>>(),
        vec![jobs[2].tx_hash]
    );
}

/// A mined transaction of device `d` with one webhook notification claimed at 2,000 ms.
async fn claimed_webhook(store: &Store) -> WebhookJob {
    let (_, stored) = hook_rules();
    store.put_device("acme", "d", &stored, 10, 0).await.unwrap();
    let tx = signed(0);
    let record = sent(store, &tx).await;
    store
        .apply_step(&record, &included(), None, 1, 2_000)
        .await
        .unwrap();
    store
        .claim_webhooks("i", 2_000, Duration::from_secs(10), 10)
        .await
        .unwrap()
        .remove(0)
}

/// The demo's 60 s stall: a park still queued when the receiver came back used to land after
/// the drain, so that notification waited out the whole park. Recorded in queue order, the
/// drain after the park wins; the reverse order shows what the race did.
#[tokio::test]
async fn a_drain_recorded_after_a_queued_park_makes_it_due() {
    let (_dir, store) = store().await;
    let job = claimed_webhook(&store).await;
    let far = 10_000_000;
    let park = DeliveryOutcome::Parked {
        id: job.id,
        until_ms: far,
    };
    let drain = DeliveryOutcome::DrainReceiver {
        target: job.url.clone(),
        at_ms: 3_000,
    };
    let lease = Duration::from_secs(10);
    let drained = store
        .record_deliveries(&[park.clone(), drain.clone()])
        .await
        .unwrap();
    assert_eq!(drained, 1);
    let due = store.claim_webhooks("i", 3_000, lease, 10).await.unwrap();
    assert_eq!(due.len(), 1, "drained after the park: due at once");
    // Drain first, park second (the old race): parked until `far`.
    store.record_deliveries(&[drain, park]).await.unwrap();
    assert!(
        store
            .claim_webhooks("i", 4_000, lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A receiver-wide park (its circuit opened) parks a notification due for a retry.
    let claimed = store.claim_webhooks("i", far, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let park_all = |now_ms| DeliveryOutcome::ParkReceiver {
        target: job.url.clone(),
        now_ms,
        until_ms: far * 2,
    };
    let released = DeliveryOutcome::Failed {
        id: job.id,
        retry_at_ms: Some(far + 1),
        error: "HTTP 503".to_owned(),
    };
    store.record_deliveries(&[released]).await.unwrap();
    store.record_deliveries(&[park_all(far + 1)]).await.unwrap();
    assert!(
        store
            .claim_webhooks("i", far + 1, lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "parked by the receiver-wide park"
    );
    assert_eq!(
        store
            .claim_webhooks("i", far * 2, lease, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn the_nonce_watch_reads_each_senders_lowest_and_settles_once() {
    use crate::core::overdue::StuckReason;
    use overdue::Settle;
    let (_dir, store) = store().await;
    let txs: Vec<SignedTx> = (0..3).map(signed).collect();
    let mut records = Vec::new();
    for tx in &txs {
        records.push(sent(&store, tx).await);
    }
    let lowest = |store: &Store| {
        let store = store.clone();
        async move {
            store
                .lowest_pending(31337, 2_000, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|l| (l.record.nonce, l.watched_since_block, l.stuck_notified))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(lowest(&store).await, [(0, None, false)]);
    // Activity after the cutoff hides it.
    assert!(
        store
            .lowest_pending(31337, 1_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let replaced = [(
        &records[0],
        Settle::Replaced {
            by: Some(B256::repeat_byte(3)),
        },
    )];
    assert!(store.settle_overdue(&replaced, 3_000).await.unwrap()[0].changed);
    assert!(!store.settle_overdue(&replaced, 3_100).await.unwrap()[0].changed);
    let view = store.transaction(txs[0].hash).await.unwrap().unwrap();
    assert_eq!(view.status, TxStatus::Replaced);
    assert_eq!(view.replaced_by, Some(B256::repeat_byte(3)));
    // The next nonce is now the lowest; it keeps the first block it was watched at.
    store.mark_watched(&[txs[1].hash], 7).await.unwrap();
    store.mark_watched(&[txs[1].hash], 9).await.unwrap();
    assert_eq!(lowest(&store).await, [(1, Some(7), false)]);
    let stuck = [(&records[1], Settle::Stuck(StuckReason::NonceGap))];
    assert!(store.settle_overdue(&stuck, 3_200).await.unwrap()[0].changed);
    assert!(!store.settle_overdue(&stuck, 3_300).await.unwrap()[0].changed);
    assert_eq!(lowest(&store).await, [(1, Some(7), true)]);
    // The reason is in the notice only: a later `mined` view carries no error.
    let view = store.transaction(txs[1].hash).await.unwrap().unwrap();
    assert_eq!((view.status, view.error), (TxStatus::Pending, None));
    // Past the lifetime: the two unfinished ones, oldest first; expiring is final.
    let old: Vec<u64> = store
        .past_lifetime(31337, 1_000, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.nonce)
        .collect();
    assert_eq!(old, [1, 2]);
    let expire = [(&records[2], Settle::Expired)];
    assert!(store.settle_overdue(&expire, 3_400).await.unwrap()[0].changed);
    let view = store.transaction(txs[2].hash).await.unwrap().unwrap();
    assert_eq!((view.status, view.finalized), (TxStatus::Expired, true));
    assert!(!store.settle_overdue(&expire, 3_500).await.unwrap()[0].changed);
}

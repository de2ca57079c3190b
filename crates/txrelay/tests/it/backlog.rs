//! Bounds on what the relay keeps, against real anvil with mining under the test's control:
//! at `tracking.max_tracked` unfinished transactions a new one gets 503 `backlog_full` until
//! some are final; finished transactions are deleted after `retention.finished_seconds`, but
//! not while one of their notifications is still to deliver (issue 11 items 3 and 7).

use std::time::Duration;

use alloy::primitives::U256;
use txrelay::event::EventStatus;
use txrelay::load::transfer;

use crate::support::rig::{Rig, rig, submit, until_event};
use crate::support::{Backend, eventually, somebody};

async fn the_tracked_bound_refuses_new_transactions_until_some_are_final(backend: Backend) {
    let Rig {
        relay,
        proxy,
        anvil,
        wallets: [erin, frank],
        // Bound, not `..`: the node, the relay's directory and the database live to the end.
        hooks: _hooks,
        _node,
        _dir,
        _db,
    } = rig(backend, ["e", "f"], |settings| {
        settings.tracking.max_tracked = 2;
        settings.tracking.reorg_watch_blocks = 0;
    })
    .await;
    let one = U256::from(1);
    let first = submit(
        &relay,
        &erin,
        "e",
        &transfer(&erin, 31337, 0, somebody(), one, 21_000).unwrap(),
    )
    .await;
    submit(
        &relay,
        &erin,
        "e",
        &transfer(&erin, 31337, 1, somebody(), one, 21_000).unwrap(),
    )
    .await;
    // Two unfinished: a third is refused at once (counted on acceptance, not only by the
    // once-a-second sample), with a hint to retry.
    let third = transfer(&frank, 31337, 0, somebody(), one, 21_000).unwrap();
    let refused = relay
        .client
        .submit(31337, &third, frank.address(), "f", false)
        .await
        .unwrap();
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.reason(), Some("backlog_full"));
    eventually("the gauges sampled", Duration::from_secs(10), || async {
        let metrics = relay.metrics().await;
        (metrics.contains("txrelay_tracked_transactions 2")
            && metrics.contains("txrelay_oldest_pending_seconds{kind=\"transaction\"}"))
        .then_some(())
    })
    .await;
    // Mined and final (no reorg watch): the sample frees room and the third is accepted.
    eventually("both broadcast", Duration::from_secs(20), || async {
        (proxy.sends_of(first) == 1).then_some(())
    })
    .await;
    anvil.mine().await.unwrap();
    eventually("room again", Duration::from_secs(20), || async {
        let answer = relay
            .client
            .submit(31337, &third, frank.address(), "f", false)
            .await
            .unwrap();
        answer.accepted().map(|_| ())
    })
    .await;
}

on_both_databases!(the_tracked_bound_refuses_new_transactions_until_some_are_final);

async fn finished_transactions_are_deleted_once_delivered(backend: Backend) {
    let Rig {
        relay,
        anvil,
        mut hooks,
        wallets: [grace, _],
        // Bound, not `..`: the node, the relay's directory and the database live to the end.
        proxy,
        _node,
        _dir,
        _db,
    } = rig(backend, ["g", "h"], |settings| {
        settings.tracking.reorg_watch_blocks = 0;
        settings.retention.finished_seconds = 1;
        settings.retention.interval_seconds = 1;
    })
    .await;
    let one = U256::from(1);
    let delivered = submit(
        &relay,
        &grace,
        "g",
        &transfer(&grace, 31337, 0, somebody(), one, 21_000).unwrap(),
    )
    .await;
    eventually("sent", Duration::from_secs(20), || async {
        (proxy.sends_of(delivered) == 1).then_some(())
    })
    .await;
    anvil.mine().await.unwrap();
    until_event(&hooks, delivered, EventStatus::Mined).await;
    eventually(
        "the delivered one deleted",
        Duration::from_secs(20),
        || async {
            relay
                .client
                .transaction(delivered)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;

    // The receiver is down: the next result stays pending, and so does its transaction.
    hooks.stop();
    let undelivered = submit(
        &relay,
        &grace,
        "g",
        &transfer(&grace, 31337, 1, somebody(), one, 21_000).unwrap(),
    )
    .await;
    eventually("sent", Duration::from_secs(20), || async {
        (proxy.sends_of(undelivered) == 1).then_some(())
    })
    .await;
    anvil.mine().await.unwrap();
    eventually("final", Duration::from_secs(20), || async {
        let view = relay.client.transaction(undelivered).await.unwrap()?;
        (view["finalized"] == true).then_some(())
    })
    .await;
    // Several clean-ups past its 1 s retention.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let view = relay.client.transaction(undelivered).await.unwrap();
    let view = view.expect("a transaction with an undelivered result is kept");
    assert_eq!(view["status"], "mined", "{view}");
}

on_both_databases!(finished_transactions_are_deleted_once_delivered);

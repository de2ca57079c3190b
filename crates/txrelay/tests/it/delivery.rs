//! Delivery: a receiver that is down for a while gets everything once it is back (retries
//! with backoff); one that stays down past the attempts is dead-lettered, listed and
//! replayed on request.

use std::time::Duration;

use alloy::primitives::{B256, U256, keccak256};
use serde_json::Value;
use txrelay::load::{Wallet, transfer};
use txrelay::rules::Registration;

use crate::support::{
    Backend, Db, RelayProc, anvil, config, events_for, eventually, fund, receiver, receivers,
    register, somebody, status,
};

async fn submit_all(relay: &RelayProc, wallet: &Wallet, count: u64) -> Vec<B256> {
    let to = somebody();
    let mut hashes = Vec::new();
    for nonce in 0..count {
        let raw = transfer(wallet, 31337, nonce, to, U256::from(1), 21_000).unwrap();
        let answer = relay
            .client
            .submit(31337, &raw, wallet.address(), "phone", true)
            .await
            .unwrap();
        assert!(answer.accepted().is_some(), "{}", answer.body);
        hashes.push(keccak256(&raw));
    }
    hashes
}

async fn receiver_down_then_up(backend: Backend) {
    let db = Db::new(backend);
    let (_node, anvil) = anvil(31337, &[]);
    let (mut hooks, secrets) = receivers(&["hook"], &[]).await;
    let dir = testkit::tempdir();
    let relay = RelayProc::start(
        &config(&db, &[(31337, vec![anvil.url().to_owned()])]),
        dir.path(),
        "a",
    )
    .await;
    let alice = Wallet::random();
    fund(&anvil, &[&alice]).await;
    let rules = Registration {
        fixed: vec![receiver(&hooks, &secrets, "hook")],
        ..Registration::default()
    };
    register(&relay.client, "phone", &alice, rules).await;
    hooks.stop();
    let hashes = submit_all(&relay, &alice, 5).await;
    // Mined, and the notices failed while the receiver was down; once the breaker is open
    // it parks the rest (one probe at a time), so a notice made after that may have no
    // attempt of its own yet.
    eventually("failed attempts", Duration::from_secs(30), || async {
        let mut attempted = 0;
        for hash in &hashes {
            let view = relay.client.transaction(*hash).await.ok()??;
            let note = &view["notifications"][0];
            if view["status"] != "mined" || note["state"] != "pending" {
                return None;
            }
            if note["attempts"].as_u64()? >= 1 {
                if note["last_error"].as_str()? != "no HTTP answer from the receiver" {
                    return None;
                }
                attempted += 1;
            }
        }
        (attempted >= 1).then_some(())
    })
    .await;
    assert_eq!(hooks.stats().accepted, 0);
    hooks.restart().await.unwrap();
    eventually(
        "every notice after the receiver is back",
        Duration::from_secs(30),
        || async {
            hashes
                .iter()
                .all(|h| !events_for(&hooks, "hook", *h).is_empty())
                .then_some(())
        },
    )
    .await;
    for hash in &hashes {
        let view = relay.client.transaction(*hash).await.unwrap().unwrap();
        assert_eq!(view["notifications"][0]["state"], "delivered", "{view}");
    }
    assert_eq!(hooks.stats().bad_signatures, 0);
}

async fn dead_letter_and_replay(backend: Backend) {
    let db = Db::new(backend);
    let (_node, anvil) = anvil(31337, &[]);
    let (mut hooks, secrets) = receivers(&["hook"], &[]).await;
    let dir = testkit::tempdir();
    let mut settings = config(&db, &[(31337, vec![anvil.url().to_owned()])]);
    settings.delivery.max_attempts = 3;
    let relay = RelayProc::start(&settings, dir.path(), "a").await;
    let alice = Wallet::random();
    fund(&anvil, &[&alice]).await;
    let rules = Registration {
        fixed: vec![receiver(&hooks, &secrets, "hook")],
        ..Registration::default()
    };
    register(&relay.client, "phone", &alice, rules).await;
    hooks.stop();
    let hash = submit_all(&relay, &alice, 1).await[0];
    let dead: Value = eventually("a dead letter", Duration::from_secs(30), || async {
        let (_, list) = relay.admin.get("/v1/dead-letters").await.ok()?;
        let first = list.as_array()?.first()?.clone();
        Some(first)
    })
    .await;
    assert_eq!(dead["tx_hash"], format!("{hash:#x}"));
    assert_eq!(dead["attempts"], 3);
    assert_eq!(dead["kind"], "mined");
    assert_eq!(status(&relay.client, hash).await.as_deref(), Some("mined"));
    hooks.restart().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        events_for(&hooks, "hook", hash).is_empty(),
        "a dead letter was retried by itself"
    );
    let id = dead["id"].as_i64().unwrap();
    // Replay is for admins only.
    let (code, _) = relay
        .client
        .post(&format!("/v1/dead-letters/{id}/replay"))
        .await
        .unwrap();
    assert_eq!(code, 403);
    let (code, answer) = relay
        .admin
        .post(&format!("/v1/dead-letters/{id}/replay"))
        .await
        .unwrap();
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["replayed"], 1);
    eventually("the replayed notice", Duration::from_secs(30), || async {
        (!events_for(&hooks, "hook", hash).is_empty()).then_some(())
    })
    .await;
    let (_, list) = relay.admin.get("/v1/dead-letters").await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 0);
    let (code, _) = relay
        .admin
        .post(&format!("/v1/dead-letters/{id}/replay"))
        .await
        .unwrap();
    assert_eq!(code, 404);
}

on_both_databases!(receiver_down_then_up);
on_both_databases!(dead_letter_and_replay);

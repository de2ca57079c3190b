//! Submission: every validation failure answers 4xx with its reason and sends nothing; 100
//! concurrent identical idempotent submissions broadcast once; the result is readable and
//! delivered; the API serves its OpenAPI document and metrics.

use std::time::Duration;

use alloy::primitives::U256;
use serde_json::json;
use txrelay::load::{Wallet, transfer};
use txrelay::rules::Registration;

use crate::support::proxy::RpcProxy;
use crate::support::{
    Backend, Db, RelayProc, anvil, config, events_for, eventually, fund, receiver, receivers,
    register, somebody, status,
};

async fn validation_dedupe_and_status(backend: Backend) {
    let db = Db::new(backend);
    let (_node, anvil) = anvil(31337, &[]);
    let proxy = RpcProxy::start(anvil.url()).await;
    let (hooks, secrets) = receivers(&["hook"], &[]).await;
    let dir = testkit::tempdir();
    let relay =
        RelayProc::start(&config(&db, &[(31337, vec![proxy.url()])]), dir.path(), "a").await;
    let client = &relay.client;
    let alice = Wallet::random();
    let stranger = Wallet::random();
    fund(&anvil, &[&alice, &stranger]).await;
    register(
        client,
        "phone",
        &alice,
        Registration {
            fixed: vec![receiver(&hooks, &secrets, "hook")],
            ..Registration::default()
        },
    )
    .await;
    let bob = somebody();
    let good = transfer(&alice, 31337, 0, bob, U256::from(7), 21_000).unwrap();

    // Refusals, each with its reason, none sent.
    let mut bad_sig = good.clone();
    *bad_sig.last_mut().unwrap() ^= 0x55;
    let other_chain = transfer(&alice, 999, 0, bob, U256::from(7), 21_000).unwrap();
    let low_gas = transfer(&alice, 31337, 0, bob, U256::from(7), 20_000).unwrap();
    let unknown = transfer(&stranger, 31337, 0, bob, U256::from(7), 21_000).unwrap();
    for (raw, sender, chain, codes, status_code) in [
        (
            &bad_sig,
            alice.address(),
            31337,
            &["invalid_signature", "sender_mismatch"][..],
            422,
        ),
        (
            &other_chain,
            alice.address(),
            31337,
            &["chain_mismatch"][..],
            422,
        ),
        (
            &low_gas,
            alice.address(),
            31337,
            &["invalid_field"][..],
            422,
        ),
        (
            &good,
            stranger.address(),
            31337,
            &["sender_mismatch"][..],
            422,
        ),
        (
            &unknown,
            stranger.address(),
            31337,
            &["account_unknown"][..],
            403,
        ),
        (&good, alice.address(), 1, &["unknown_chain"][..], 404),
    ] {
        let answer = client
            .submit(chain, raw, sender, "phone", true)
            .await
            .unwrap();
        assert_eq!(answer.status, status_code, "{}", answer.body);
        assert!(codes.contains(&answer.reason().unwrap()), "{}", answer.body);
        assert_eq!(answer.body["error"]["retryable"], false);
    }
    for body in [
        json!({"raw": "0xzz", "sender": alice.address(), "device": "phone"}),
        json!({"raw": "0x02c0", "sender": alice.address(), "device": "phone"}),
        json!({"raw": "0x00", "device": "phone"}),
        json!({"raw": "0x00", "sender": "nobody", "device": "phone"}),
        json!({"raw": "0x00", "sender": alice.address(), "device": "has space"}),
    ] {
        let answer = client.submit_json(31337, &body).await.unwrap();
        assert_eq!(answer.status, 400, "{body} -> {}", answer.body);
        assert!(
            [
                "malformed_hex",
                "undecodable_transaction",
                "invalid_request"
            ]
            .contains(&answer.reason().unwrap()),
            "{}",
            answer.body
        );
    }
    assert!(proxy.sends().is_empty(), "a refused transaction was sent");

    // 100 identical idempotent submissions at once: one broadcast.
    let answers = futures::future::join_all(
        (0..100).map(|_| client.submit(31337, &good, alice.address(), "phone", true)),
    )
    .await;
    let accepted: Vec<_> = answers
        .into_iter()
        .map(|a| a.unwrap().accepted().expect("202"))
        .collect();
    let hash = accepted[0].tx_hash;
    assert!(accepted.iter().all(|a| a.tx_hash == hash));
    assert_eq!(accepted.iter().filter(|a| !a.duplicate).count(), 1);
    assert_eq!(accepted.iter().filter(|a| a.duplicate).count(), 99);

    eventually("mined", Duration::from_secs(30), || async {
        (status(client, hash).await.as_deref() == Some("mined")).then_some(())
    })
    .await;
    eventually("the notice", Duration::from_secs(30), || async {
        (!events_for(&hooks, "hook", hash).is_empty()).then_some(())
    })
    .await;
    assert_eq!(proxy.sends_of(hash), 1, "{}", relay.log_tail());
    let view = client.transaction(hash).await.unwrap().unwrap();
    assert_eq!(view["receipt"]["success"], true);
    assert_eq!(view["receipt"]["gas_used"], 21_000);
    assert_eq!(view["devices"], json!(["phone"]));
    assert_eq!(view["notifications"][0]["state"], "delivered");
    let event = &events_for(&hooks, "hook", hash)[0];
    assert_eq!(event.block_number, view["receipt"]["block_number"].as_u64());
    assert_eq!(event.sender, alice.address());
    assert_eq!(event.recipient, Some(bob));

    // Mined now: the same bytes again (without idempotency) answer its status and receipt,
    // not an error, and nothing is sent again.
    let again = client
        .submit(31337, &good, alice.address(), "phone", false)
        .await
        .unwrap();
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["status"], "mined");
    assert_eq!(again.body["duplicate"], true);
    assert_eq!(
        again.body["receipt"]["block_number"],
        view["receipt"]["block_number"]
    );
    assert_eq!(again.body["receipt"]["success"], true);
    // Another transaction with that nonce is refused from the nonce cache, without a node.
    let stale = transfer(&alice, 31337, 0, bob, U256::from(8), 21_000).unwrap();
    let refused = client
        .submit(31337, &stale, alice.address(), "phone", false)
        .await
        .unwrap();
    assert_eq!(refused.reason(), Some("nonce_too_low"), "{}", refused.body);
    assert_eq!(proxy.sends_of(hash), 1);
    // No submission asked a node for a nonce: the request path never calls a node.
    assert_eq!(proxy.calls("eth_getTransactionCount"), 0);

    let (code, doc) = client.get("/openapi.json").await.unwrap();
    assert_eq!(code, 200);
    assert!(doc["paths"]["/v1/chains/{chain_id}/transactions"]["post"].is_object());
    let metrics = relay.metrics().await;
    assert!(
        metrics.contains("txrelay_submissions_total{outcome=\"duplicate\"} 100"),
        "{metrics}"
    );
    let (code, _) = client
        .get(&format!(
            "/v1/transactions/{}",
            alloy::primitives::B256::ZERO
        ))
        .await
        .unwrap();
    assert_eq!(code, 404);
}

on_both_databases!(validation_dedupe_and_status);

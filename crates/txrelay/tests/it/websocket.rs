//! "To the recipient account": results go over the WebSocket to whoever logged in as the
//! recipient (EIP-191 login); results recorded while nobody was logged in wait; an
//! unacknowledged result is offered again; a wrong signature does not log in.

use std::time::Duration;

use alloy::primitives::{U256, keccak256};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use txrelay::event::EventStatus;
use txrelay::load::{Wallet, transfer};
use txrelay::login::sign_challenge;
use txrelay::rules::Registration;

use crate::support::{Backend, Db, RelayProc, anvil, config, eventually, fund, register, status};

async fn recipient_account_over_websocket(backend: Backend) {
    let db = Db::new(backend);
    let (_node, anvil) = anvil(31337, &[]);
    let dir = testkit::tempdir();
    let relay = RelayProc::start(
        &config(&db, &[(31337, vec![anvil.url().to_owned()])]),
        dir.path(),
        "a",
    );
    let (alice, bob, mallory) = (Wallet::random(), Wallet::random(), Wallet::random());
    fund(&anvil, &[&alice]).await;
    let rules = Registration {
        to_recipient_account: true,
        ..Registration::default()
    };
    register(&relay.client, "phone", &alice, rules).await;
    let client = &relay.client;

    // A result for bob while bob is not logged in: it waits.
    let first = transfer(&alice, 31337, 0, bob.address(), U256::from(5), 21_000).unwrap();
    let answer = client
        .submit(31337, &first, alice.address(), "phone", true)
        .await
        .unwrap();
    assert!(answer.accepted().is_some(), "{}", answer.body);
    eventually("mined", Duration::from_secs(20), || async {
        (status(client, keccak256(&first)).await.as_deref() == Some("mined")).then_some(())
    })
    .await;

    // Mallory cannot log in as bob.
    let url = format!("{}/v1/ws", client.base().replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let challenge: Value = match socket.next().await.unwrap().unwrap() {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(challenge["type"], "challenge");
    let forged = sign_challenge(&mallory, challenge["nonce"].as_str().unwrap()).unwrap();
    let login = json!({"type": "login", "account": bob.address(), "signature": forged});
    socket
        .send(Message::Text(login.to_string().into()))
        .await
        .unwrap();
    let refused: Value = match socket.next().await.unwrap().unwrap() {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["reason"], "login_failed");

    // Bob logs in and gets the waiting result; he does not acknowledge it.
    let mut session = client.login(&bob).await.unwrap();
    let event = session.next_event(Duration::from_secs(10)).await.unwrap();
    assert_eq!(event.tx_hash, keccak256(&first));
    assert_eq!(event.status, EventStatus::Mined);
    assert_eq!(event.recipient, Some(bob.address()));
    session.close().await;
    // Offered again on the next login, then acknowledged.
    let mut session = client.login(&bob).await.unwrap();
    let again = session.next_event(Duration::from_secs(10)).await.unwrap();
    assert_eq!(again.event_id, event.event_id);
    session.ack(&again.event_id).await.unwrap();

    // A result while bob is logged in arrives live.
    let second = transfer(&alice, 31337, 1, bob.address(), U256::from(6), 21_000).unwrap();
    let answer = client
        .submit(31337, &second, alice.address(), "phone", true)
        .await
        .unwrap();
    assert!(answer.accepted().is_some(), "{}", answer.body);
    let live = session.next_event(Duration::from_secs(20)).await.unwrap();
    assert_eq!(live.tx_hash, keccak256(&second));
    session.ack(&live.event_id).await.unwrap();
    for raw in [&first, &second] {
        eventually("acknowledged", Duration::from_secs(10), || async {
            let view = client.transaction(keccak256(raw)).await.ok()??;
            let note = &view["notifications"][0];
            (note["channel"] == "account" && note["state"] == "delivered").then_some(())
        })
        .await;
    }
    // Nothing else is pending for bob.
    assert!(
        session
            .next_event(Duration::from_millis(500))
            .await
            .is_err()
    );
}

on_both_databases!(recipient_account_over_websocket);

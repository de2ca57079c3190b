//! "To the recipient account": results go over the WebSocket to whoever signed in as the
//! recipient (EIP-4361 message); results recorded while nobody was signed in wait; an
//! unacknowledged result is offered again; no key, a forged signature or another nonce does
//! not sign in; sessions per key are capped.

use std::time::Duration;

use alloy::primitives::{U256, keccak256};
use txrelay::auth::siwe::{message_for, sign};
use txrelay::client::{next_message, send};
use txrelay::event::EventStatus;
use txrelay::load::{Wallet, transfer};
use txrelay::rules::Registration;
use txrelay::session::{ClientMessage, ServerMessage};

use crate::support::{Backend, Db, RelayProc, anvil, config, eventually, fund, register, status};

async fn recipient_account_over_websocket(backend: Backend) {
    let db = Db::new(backend);
    let (_node, anvil) = anvil(31337, &[]);
    let dir = testkit::tempdir();
    let relay = RelayProc::start(
        &config(&db, &[(31337, vec![anvil.url().to_owned()])]),
        dir.path(),
        "a",
    )
    .await;
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

    // No key: the upgrade is refused.
    assert!(relay.anonymous.open_socket().await.is_err());
    // Mallory cannot sign in as bob, nor bob with a nonce of another challenge.
    let now = txrelay::core::now_ms(&svckit::SystemClock);
    for (signer, other_nonce) in [(&mallory, false), (&bob, true)] {
        let (mut socket, challenge) = client.open_socket().await.unwrap();
        let ServerMessage::Challenge { nonce, domain, uri } = challenge else {
            panic!("{challenge:?}");
        };
        assert_eq!(domain, crate::support::DOMAIN);
        let nonce = if other_nonce {
            "0123456789abcdef".to_owned()
        } else {
            nonce
        };
        let message = message_for(
            &domain,
            &uri,
            bob.address(),
            None,
            (31337, &nonce),
            now,
            60_000,
        );
        let login = ClientMessage::Login {
            message: message.to_string(),
            signature: sign(signer, &message).unwrap(),
        };
        send(&mut socket, &login).await.unwrap();
        let refused = next_message(&mut socket, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(
            matches!(&refused, ServerMessage::Error { reason, .. } if reason == "login_failed"),
            "{refused:?}"
        );
    }

    // Bob logs in and gets the waiting result; he does not acknowledge it.
    let mut session = client.login(&bob, 31337).await.unwrap();
    let event = session.next_event(Duration::from_secs(10)).await.unwrap();
    assert_eq!(event.tx_hash, keccak256(&first));
    assert_eq!(event.status, EventStatus::Mined);
    assert_eq!(event.recipient, Some(bob.address()));
    session.close().await;
    // Offered again on the next login, then acknowledged.
    let mut session = client.login(&bob, 31337).await.unwrap();
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
    // Sessions per key are capped (16 by default: this one and 15 more).
    let mut sockets = Vec::new();
    for _ in 0..15 {
        sockets.push(client.open_socket().await.unwrap());
    }
    assert!(client.open_socket().await.is_err(), "a 17th session opened");
}

on_both_databases!(recipient_account_over_websocket);

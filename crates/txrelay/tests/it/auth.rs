//! Authentication and tenancy: 401 without a valid key on every protected route, 403 for
//! each attempt on another tenant's device or transaction and for admin routes, account
//! registration only with a valid EIP-4361 proof, 429 with `Retry-After` under a flood
//! (costing the node nothing), the receivers-per-device cap, and revocation.

use alloy::primitives::{U256, keccak256};
use serde_json::json;
use txrelay::auth::siwe::{message_for, sign};
use txrelay::client::RelayClient;
use txrelay::load::{Wallet, transfer};
use txrelay::rules::Registration;

use crate::support::proxy::RpcProxy;
use crate::support::{
    Backend, DOMAIN, Db, RelayProc, anvil, config, eventually, fund, receiver, receivers, register,
    somebody, status,
};

/// Status of `method path` with `client`'s key (or none) and an empty JSON body.
pub(crate) async fn status_of(client: &RelayClient, method: &str, path: &str) -> u16 {
    let url = format!("{}{path}", client.base());
    let http = reqwest::Client::new();
    let request = match method {
        "GET" => http.get(url),
        "PUT" => http.put(url),
        "DELETE" => http.delete(url),
        _ => http.post(url),
    };
    let request = request
        .header("content-type", "application/json")
        .body("{}");
    let request = match client.token() {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    request.send().await.unwrap().status().as_u16()
}

async fn tenancy_and_limits(backend: Backend) {
    let db = Db::new(backend);
    let (_node, anvil) = anvil(31337, &[]);
    let proxy = RpcProxy::start(anvil.url()).await;
    let (hooks, secrets) = receivers(&["hook", "evil"], &[]).await;
    let dir = testkit::tempdir();
    let relay =
        RelayProc::start(&config(&db, &[(31337, vec![proxy.url()])]), dir.path(), "a").await;
    let a = &relay.client;
    let b = relay.tenant("tenant-b").await;
    let (alice, bob) = (Wallet::random(), Wallet::random());
    fund(&anvil, &[&alice, &bob]).await;
    let rules = Registration {
        fixed: vec![receiver(&hooks, &secrets, "hook")],
        ..Registration::default()
    };
    register(a, "phone-a", &alice, rules.clone()).await;
    register(&b, "phone-b", &bob, Registration::default()).await;
    let raw = transfer(&alice, 31337, 0, somebody(), U256::from(1), 21_000).unwrap();
    let hash = keccak256(&raw);
    let answer = a
        .submit(31337, &raw, alice.address(), "phone-a", true)
        .await
        .unwrap();
    assert!(answer.accepted().is_some(), "{}", answer.body);
    eventually("mined", std::time::Duration::from_secs(20), || async {
        (status(a, hash).await.as_deref() == Some("mined")).then_some(())
    })
    .await;

    // 401 without a key, with a made-up one, and with a malformed header, on every route.
    let routes = [
        ("POST", "/v1/chains/31337/transactions".to_owned()),
        ("GET", format!("/v1/transactions/{hash:#x}")),
        ("PUT", "/v1/devices/phone-a/notifications".to_owned()),
        ("GET", "/v1/devices/phone-a/notifications".to_owned()),
        ("POST", "/v1/auth/nonce".to_owned()),
        ("POST", "/v1/devices/phone-a/accounts".to_owned()),
        (
            "DELETE",
            format!("/v1/devices/phone-a/accounts/{:#x}", alice.address()),
        ),
        ("GET", "/v1/ws".to_owned()),
        ("GET", "/v1/dead-letters".to_owned()),
        ("POST", "/v1/dead-letters/1/replay".to_owned()),
        ("POST", "/v1/dead-letters/replay".to_owned()),
        ("POST", "/v1/keys".to_owned()),
        ("GET", "/v1/keys".to_owned()),
        ("DELETE", "/v1/keys/abcdef012345".to_owned()),
    ];
    let made_up = relay
        .anonymous
        .with_token(&txrelay::auth::keys::generate().token);
    let garbled = relay.anonymous.with_token("not-a-key");
    for (method, path) in &routes {
        for client in [&relay.anonymous, &made_up, &garbled] {
            assert_eq!(
                status_of(client, method, path).await,
                401,
                "{method} {path}"
            );
        }
    }
    let unauthorized = reqwest::get(format!("{}/v1/keys", relay.anonymous.base()))
        .await
        .unwrap();
    assert_eq!(
        unauthorized.headers()["www-authenticate"],
        "Bearer realm=\"txrelay\""
    );
    // Public: readiness and the API document.
    assert_eq!(status_of(&relay.anonymous, "GET", "/readyz").await, 200);
    assert_eq!(
        status_of(&relay.anonymous, "GET", "/openapi.json").await,
        200
    );

    // 403 for each cross-tenant attempt; nothing of tenant a's changes.
    let (code, body) = b
        .put_rules(
            "phone-a",
            &Registration {
                fixed: vec![receiver(&hooks, &secrets, "evil")],
                ..Registration::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (code, body["error"]["reason"].as_str()),
        (403, Some("device_not_owned"))
    );
    let submitted_as_a = b
        .submit(31337, &raw, alice.address(), "phone-a", false)
        .await
        .unwrap();
    assert_eq!(submitted_as_a.status, 403, "{}", submitted_as_a.body);
    assert_eq!(submitted_as_a.reason(), Some("device_not_owned"));
    let proof = b.account_proof(&bob, 31337).await.unwrap();
    let (code, _) = b.add_account("phone-a", &proof).await.unwrap();
    assert_eq!(code, 403);
    for (method, path) in [
        ("GET", "/v1/devices/phone-a/notifications".to_owned()),
        (
            "DELETE",
            format!("/v1/devices/phone-a/accounts/{:#x}", alice.address()),
        ),
        ("GET", format!("/v1/transactions/{hash:#x}")),
        ("GET", "/v1/dead-letters".to_owned()),
        ("POST", "/v1/dead-letters/replay".to_owned()),
        ("GET", "/v1/keys".to_owned()),
        ("POST", "/v1/keys".to_owned()),
    ] {
        assert_eq!(status_of(&b, method, &path).await, 403, "{method} {path}");
    }
    let (code, view) = a.get("/v1/devices/phone-a/notifications").await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(view["fixed"][0]["url"], hooks.url("hook"));
    assert_eq!(view["accounts"], json!([alice.address()]));
    assert_eq!(hooks.stats().accepted, 1);
    // The admin sees everything.
    let (code, _) = relay
        .admin
        .get(&format!("/v1/transactions/{hash:#x}"))
        .await
        .unwrap();
    assert_eq!(code, 200);

    // Account registration needs a valid, fresh EIP-4361 proof for this relay.
    let now = txrelay::core::now_ms(&svckit::SystemClock);
    let (_, nonce) = a.post("/v1/auth/nonce").await.unwrap();
    let nonce = nonce["nonce"].as_str().unwrap().to_owned();
    let uri = format!("https://{DOMAIN}");
    let make = |domain: &str, nonce: &str, issued: u64, valid: u64| {
        message_for(
            domain,
            &uri,
            bob.address(),
            None,
            (31337, nonce),
            issued,
            valid,
        )
    };
    let cases = [
        (
            "signed by another key",
            make(DOMAIN, &nonce, now, 60_000),
            &alice,
        ),
        (
            "another domain",
            make("evil.test", &nonce, now, 60_000),
            &bob,
        ),
        (
            "a nonce the relay never issued",
            make(DOMAIN, "feedfacecafebeef", now, 60_000),
            &bob,
        ),
        ("expired", make(DOMAIN, &nonce, now - 120_000, 60_000), &bob),
    ];
    for (what, message, signer) in cases {
        let body =
            json!({"message": message.to_string(), "signature": sign(signer, &message).unwrap()});
        let (code, answer) = a.add_account("phone-a", &body).await.unwrap();
        assert_eq!(code, 403, "{what}: {answer}");
        assert_eq!(answer["error"]["reason"], "invalid_proof", "{what}");
    }
    let garbage = json!({"message": "hello", "signature": "0x00"});
    assert_eq!(a.add_account("phone-a", &garbage).await.unwrap().0, 403);
    // Bob's account is not registered to phone-a: his transaction is refused there.
    let bobs = transfer(&bob, 31337, 0, somebody(), U256::from(1), 21_000).unwrap();
    let refused = a
        .submit(31337, &bobs, bob.address(), "phone-a", true)
        .await
        .unwrap();
    assert_eq!(
        refused.reason(),
        Some("account_unknown"),
        "{}",
        refused.body
    );
    // A valid proof registers it; replaying that proof does not register again.
    let message = make(DOMAIN, &nonce, now, 60_000);
    let valid = json!({"message": message.to_string(), "signature": sign(&bob, &message).unwrap()});
    assert_eq!(a.add_account("phone-a", &valid).await.unwrap().0, 201);
    assert_eq!(a.add_account("phone-a", &valid).await.unwrap().0, 403);
    // Registered a moment ago, his transaction is accepted at once (a refusal is never
    // cached); removed again, his next one is refused at once (the cached grant is dropped).
    let accepted = a
        .submit(31337, &bobs, bob.address(), "phone-a", true)
        .await
        .unwrap();
    assert!(accepted.accepted().is_some(), "{}", accepted.body);
    let path = format!("/v1/devices/phone-a/accounts/{:#x}", bob.address());
    assert_eq!(status_of(a, "DELETE", &path).await, 204);
    let next = transfer(&bob, 31337, 1, somebody(), U256::from(1), 21_000).unwrap();
    let refused = a
        .submit(31337, &next, bob.address(), "phone-a", true)
        .await
        .unwrap();
    assert_eq!(
        refused.reason(),
        Some("account_unknown"),
        "{}",
        refused.body
    );

    // At most 10 receivers per device.
    let many = Registration {
        fixed: (0..11)
            .map(|_| receiver(&hooks, &secrets, "hook"))
            .collect(),
        ..Registration::default()
    };
    let (code, body) = a.put_rules("phone-many", &many).await.unwrap();
    assert_eq!(
        (code, body["error"]["reason"].as_str()),
        (400, Some("invalid_rules"))
    );

    // A flood from one key is cut to its rate (20/s here) with 429 and Retry-After, and no
    // request of the flood reaches the node.
    let token = relay
        .admin
        .create_key("flood", false, Some(20))
        .await
        .unwrap();
    let flood = relay.anonymous.with_token(&token);
    let calls_before = proxy.total_calls();
    let bad = json!({"raw": "0x02c0", "sender": alice.address(), "device": "phone-f"});
    let answers = futures::future::join_all((0..200).map(|_| flood.submit_json(31337, &bad))).await;
    let limited = answers
        .iter()
        .filter(|a| a.as_ref().unwrap().status == 429)
        .count();
    assert!(limited >= 150, "{limited} of 200 limited");
    assert!(answers.iter().all(|a| {
        let a = a.as_ref().unwrap();
        a.status == 429 && a.reason() == Some("rate_limited") || a.status == 403
    }));
    let http = reqwest::Client::new();
    let mut retry_after = None;
    for _ in 0..100 {
        let one = http
            .post(format!(
                "{}/v1/chains/31337/transactions",
                relay.anonymous.base()
            ))
            .bearer_auth(&token)
            .body("{}")
            .send()
            .await
            .unwrap();
        if one.status().as_u16() == 429 {
            retry_after = one.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .ok();
            break;
        }
    }
    let retry_after = retry_after.expect("no 429 with Retry-After");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert!(
        proxy.total_calls() <= calls_before + 5,
        "the flood reached the node"
    );
    let metrics = relay.metrics().await;
    assert!(
        metrics.contains("txrelay_auth_total{outcome=\"rate_limited\"}"),
        "{metrics}"
    );

    // A revoked key stops working at once on this instance.
    let (_, keys) = relay.admin.get("/v1/keys").await.unwrap();
    let flood_id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["tenant"] == "flood")
        .unwrap()["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(keys.to_string().find("secret").is_none(), "{keys}");
    assert_eq!(
        relay
            .admin
            .delete(&format!("/v1/keys/{flood_id}"))
            .await
            .unwrap(),
        204
    );
    assert_eq!(status_of(&flood, "POST", "/v1/auth/nonce").await, 401);
}

on_both_databases!(tenancy_and_limits);

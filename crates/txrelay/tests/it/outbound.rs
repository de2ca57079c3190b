//! Outbound safety: receiver URLs aimed at the relay's node, its own API and operations
//! ports, the cloud metadata address, private and loopback networks are refused at
//! registration and nothing is sent there; a redirect is not followed; the owner sees only
//! coarse errors; webhook secrets are not stored in the clear; the SQLite file is 0600.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use alloy::primitives::{U256, keccak256};
use axum::http::{HeaderMap, StatusCode};
use txrelay::load::{Wallet, transfer};
use txrelay::rules::{Receiver, Registration, SignatureScheme};

use crate::support::proxy::RpcProxy;
use crate::support::{
    Backend, Db, RelayProc, anvil, config, eventually, fund, receiver, receivers, register,
    somebody, status,
};

/// A server on 127.0.0.1 answering every request `307` to `location`; returns its URL.
async fn redirector(location: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move || {
        let location = location.clone();
        async move {
            let mut headers = HeaderMap::new();
            headers.insert("location", location.parse().unwrap());
            (StatusCode::TEMPORARY_REDIRECT, headers)
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/hook")
}

async fn ssrf_targets_are_refused(backend: Backend) {
    let db = Db::new(backend);
    let (_node, anvil) = anvil(31337, &[]);
    let proxy = RpcProxy::start(anvil.url()).await;
    let (hooks, secrets) = receivers(&["hook"], &[]).await;
    let dir = testkit::tempdir();
    let relay =
        RelayProc::start(&config(&db, &[(31337, vec![proxy.url()])]), dir.path(), "a").await;
    let client = &relay.client;
    let alice = Wallet::random();
    fund(&anvil, &[&alice]).await;
    let secret = secrets["hook"].clone();
    let at = |url: String| Receiver {
        url: url.parse().unwrap(),
        secret: Some(svckit::redact::Secret::new(secret.clone())),
        scheme: SignatureScheme::Standard,
    };
    let mut targets = vec![
        format!("{}/", proxy.url()),
        format!("http://127.0.0.1:{}/v1/dead-letters/replay", relay.port()),
        format!("http://localhost:{}/v1/keys", relay.port()),
        format!("http://127.0.0.1:{}/metrics", relay.ops_port()),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::ffff:169.254.169.254]/latest/meta-data/".to_owned(),
        "http://10.0.0.1:8080/hook".to_owned(),
        "http://192.168.1.1/hook".to_owned(),
        "http://127.0.0.2:9000/hook".to_owned(),
        "http://[::1]:9000/hook".to_owned(),
        "http://0.0.0.0:9000/hook".to_owned(),
    ];
    if backend == Backend::Postgres {
        let port = db
            .url
            .rsplit(':')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        targets.push(format!("http://127.0.0.1:{port}/"));
    }
    for target in &targets {
        let rules = Registration {
            fixed: vec![at(target.clone())],
            ..Registration::default()
        };
        let (code, body) = client.put_rules("phone", &rules).await.unwrap();
        assert_eq!(code, 422, "{target}: {body}");
        assert_eq!(body["error"]["reason"], "receiver_not_allowed", "{target}");
        // The answer names no address.
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains("127.0.0.1") && !message.contains("169.254"),
            "{message}"
        );
    }
    // A receiver that redirects to the node: delivered nowhere, the redirect not followed.
    let redirect = redirector(format!("{}/", proxy.url())).await;
    let rules = Registration {
        fixed: vec![at(redirect), receiver(&hooks, &secrets, "hook")],
        ..Registration::default()
    };
    register(client, "phone", &alice, rules).await;
    let raw = transfer(&alice, 31337, 0, somebody(), U256::from(1), 21_000).unwrap();
    let hash = keccak256(&raw);
    let answer = client
        .submit(31337, &raw, alice.address(), "phone", true)
        .await
        .unwrap();
    assert!(answer.accepted().is_some(), "{}", answer.body);
    eventually(
        "the redirect answered and recorded",
        Duration::from_secs(20),
        || async {
            let view = client.transaction(hash).await.ok()??;
            let errors: Vec<String> = view["notifications"]
                .as_array()?
                .iter()
                .filter_map(|n| n["last_error"].as_str().map(str::to_owned))
                .collect();
            errors.iter().any(|e| e == "HTTP 307").then_some(())
        },
    )
    .await;
    assert_eq!(status(client, hash).await.as_deref(), Some("mined"));
    assert_eq!(hooks.stats().accepted, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        proxy.foreign(),
        0,
        "a request that is not JSON-RPC reached the node"
    );

    if backend == Backend::Sqlite {
        // Secrets are sealed at rest; the database file is the owner's only.
        let path = db.url.trim_start_matches("sqlite://").to_owned();
        let mut bytes = std::fs::read(&path).unwrap();
        if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
            bytes.extend(wal);
        }
        let key = secret.trim_start_matches("whsec_");
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
            "a webhook secret is in the database file in the clear"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "database file mode {mode:o}");
    }
}

on_both_databases!(ssrf_targets_are_refused);

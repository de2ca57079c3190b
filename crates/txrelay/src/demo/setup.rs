//! The demo's set-up steps: chains, receivers and the relay; funded accounts and the
//! reverting contract; device registrations; WebSocket sessions.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use anyhow::Context;
use tracing::info;

use super::{ACCOUNTS, CHAINS, Demo, REVERT_REASON, Tally, WsLog};
use crate::anvil::{BlockObserver, DevChain, free_port};
use crate::api::{NewKeyRequest, new_key};
use crate::client::RelayClient;
use crate::config::{AccountMode, ChainConfig, Config};
use crate::load::{Wallet, reverting_code};
use crate::receiver::ReceiverServer;
use crate::rules::{
    Receiver, RecipientRule, Registration, SignatureScheme, WHSEC_PREFIX, generate_standard_secret,
};

/// Step 1: two anvil chains with block observers, the webhook receivers ("ops" fixed, "bank"
/// per recipient, both Standard Webhooks; "flaky" refusing every first attempt, signed with
/// the txrelay v1 scheme) and the relay with authentication on, whose chain 31337 lists a
/// dead node URL first so its first calls fail over. Receivers on 127.0.0.1 are allowed
/// explicitly (`outbound.allow`); the relay's own ports and nodes stay refused.
pub(super) async fn start(progress: bool) -> anyhow::Result<Demo> {
    let dir = tempfile::Builder::new()
        .prefix("txrelay-demo-")
        .tempdir()
        .context("creating a work directory")?;
    let path = dir.path().to_path_buf();
    let chains = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<DevChain>> {
        CHAINS
            .iter()
            .map(|id| {
                DevChain::start(*id, Some(Duration::from_secs(1)), &[], &path)
                    .with_context(|| format!("starting anvil for chain {id} (run scripts/setup)"))
            })
            .collect()
    })
    .await??;
    info!(chains = ?CHAINS, "anvil chains started");
    let observers: BTreeMap<u64, BlockObserver> = chains
        .iter()
        .map(|c| (c.chain_id(), BlockObserver::start(c.anvil())))
        .collect();
    let secrets: BTreeMap<String, String> = [
        ("ops", generate_standard_secret()),
        ("bank", generate_standard_secret()),
        ("flaky", hex::encode(rand::random::<[u8; 24]>())),
    ]
    .into_iter()
    .map(|(name, secret)| (name.to_owned(), secret))
    .collect();
    let receivers = ReceiverServer::start(0, secrets.clone(), HashSet::from(["flaky".to_owned()]))
        .await
        .context("starting the webhook receivers")?;
    let dead_node = format!("http://127.0.0.1:{}", free_port()?);
    let mut config = Config {
        listen: "127.0.0.1:0".parse()?,
        ops_listen: "127.0.0.1:0".parse()?,
        instance_id: "demo".to_owned(),
        chains: chains
            .iter()
            .map(|c| ChainConfig {
                chain_id: c.chain_id(),
                rpc_urls: if c.chain_id() == CHAINS[0] {
                    vec![dead_node.clone(), c.url().to_owned()]
                } else {
                    vec![c.url().to_owned()]
                },
                ..ChainConfig::default()
            })
            .collect(),
        ..Config::default()
    };
    config.database.url = format!("sqlite://{}", dir.path().join("txrelay.db").display());
    config.secrets.key = hex::encode(rand::random::<[u8; 32]>());
    config.outbound.allow = vec!["127.0.0.1/32".to_owned()];
    config.accounts.mode = AccountMode::Registered;
    config.tracking.poll_interval_ms = 50;
    config.delivery.poll_interval_ms = 50;
    config.delivery.initial_backoff_ms = 200;
    // The flaky receiver refuses every first attempt, so a breaker probe that is some
    // notice's first attempt fails too: with the default doubling up to 45 s, probes could
    // pass the demo's wait and a delivered-late notice would count as lost.
    config.delivery.probe_initial_ms = 200;
    config.delivery.probe_max_ms = 1_000;
    let running = crate::relay::start(config.validate()?, Arc::new(svckit::SystemClock)).await?;
    let client = keys(&running).await?;
    Ok(Demo {
        progress,
        chains,
        observers,
        receivers,
        secrets,
        running,
        client,
        senders: (0..ACCOUNTS).map(|_| Wallet::random()).collect(),
        recipients: (0..ACCOUNTS).map(|_| Wallet::random()).collect(),
        stranger: Wallet::random(),
        contract: Address::repeat_byte(0x42),
        rules: BTreeMap::new(),
        ws_log: Arc::new(Mutex::new(Vec::new())),
        ws_stop: tokio_util::sync::CancellationToken::new(),
        tally: Tally::default(),
        _dir: dir,
    })
}

/// The operator's admin key (written to the database, as `txrelay keys create --admin`
/// does), then the demo tenant's key made with it through `POST /v1/keys`: the client the
/// devices use.
async fn keys(running: &crate::relay::Running) -> anyhow::Result<RelayClient> {
    let request = NewKeyRequest {
        tenant: "operator".to_owned(),
        admin: true,
        rate_per_second: None,
        burst: None,
        label: Some("demo admin".to_owned()),
    };
    let (admin, admin_token) = new_key(&request, crate::core::now_ms(&svckit::SystemClock));
    running.store().create_key(&admin).await?;
    let anonymous = RelayClient::new(&running.url(""));
    let token = anonymous
        .with_token(&admin_token)
        .create_key("demo", false, Some(10_000))
        .await
        .context("creating the demo tenant's key")?;
    Ok(anonymous.with_token(&token))
}

/// Step 2: 1000 ether for every sender and the stranger on both chains, and the contract that
/// always reverts.
pub(super) async fn fund_accounts(demo: &Demo) -> anyhow::Result<()> {
    for chain in &demo.chains {
        for wallet in demo.senders.iter().chain([&demo.stranger]) {
            chain
                .anvil()
                .set_balance(wallet.address(), U256::from(10_u64).pow(U256::from(21)))
                .await?;
        }
        chain
            .anvil()
            .set_code(demo.contract, &reverting_code(REVERT_REASON))
            .await?;
    }
    Ok(())
}

/// Step 3: one device per sender, each with other rules (seed ¶43), and the sender's account
/// registered to it with an EIP-4361 proof signed by the account.
pub(super) async fn register_devices(demo: &mut Demo) -> anyhow::Result<()> {
    let receiver = |name: &str| -> anyhow::Result<Receiver> {
        let secret = demo.secrets.get(name).cloned().unwrap_or_default();
        Ok(Receiver {
            url: demo.receivers.url(name).parse()?,
            scheme: if secret.starts_with(WHSEC_PREFIX) {
                SignatureScheme::Standard
            } else {
                SignatureScheme::TxrelayV1
            },
            secret: Some(svckit::redact::Secret::new(secret)),
        })
    };
    let r = |i: usize| demo.recipients[i].address();
    let registrations: Vec<Registration> = vec![
        Registration {
            fixed: vec![receiver("ops")?],
            ..Registration::default()
        },
        Registration {
            by_recipient: vec![
                RecipientRule {
                    account: r(1),
                    receiver: receiver("bank")?,
                },
                RecipientRule {
                    account: r(2),
                    receiver: receiver("flaky")?,
                },
            ],
            ..Registration::default()
        },
        Registration {
            fixed: vec![receiver("flaky")?],
            to_recipient_account: true,
            ..Registration::default()
        },
        Registration {
            fixed: vec![receiver("ops")?, receiver("bank")?],
            ..Registration::default()
        },
        Registration {
            by_recipient: vec![RecipientRule {
                account: r(4),
                receiver: receiver("ops")?,
            }],
            to_recipient_account: true,
            ..Registration::default()
        },
    ];
    for (i, registration) in registrations.into_iter().enumerate() {
        let device = format!("device-{i}");
        demo.client.register(&device, &registration).await?;
        demo.client
            .register_account(&device, &demo.senders[i], CHAINS[0])
            .await?;
        demo.rules.insert(device, registration);
    }
    Ok(())
}

/// Step 4: a WebSocket client logged in as each recipient account, acknowledging every event.
pub(super) async fn open_sessions(demo: &Demo) -> anyhow::Result<()> {
    for wallet in &demo.recipients {
        let mut session = demo.client.login(wallet, CHAINS[0]).await?;
        let (log, stop): (WsLog, _) = (Arc::clone(&demo.ws_log), demo.ws_stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                match session.next_event(Duration::from_millis(200)).await {
                    Ok(event) => {
                        let arrived = Instant::now();
                        let _ = session.ack(&event.event_id).await;
                        log.lock().unwrap_or_else(PoisonError::into_inner).push((
                            session.account(),
                            event,
                            arrived,
                        ));
                    }
                    Err(crate::client::ClientError::Timeout) => {}
                    Err(_) => break,
                }
            }
            session.close().await;
        });
    }
    Ok(())
}

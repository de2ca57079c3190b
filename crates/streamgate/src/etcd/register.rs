//! Keeping a media server or forwarder registered in etcd: a lease, a create-if-absent
//! claim of the key, keep-alives every third of the TTL, a new lease and a new claim when
//! the lease was lost, and the lease revoked on stop.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Claim, EtcdClient, EtcdError};
use crate::registry::client::Registrant;

/// The key and JSON value `who` registers.
fn entry(client: &EtcdClient, who: &Registrant) -> (String, Vec<u8>, String) {
    let settings = client.settings();
    let (key, value, instance) = match who {
        Registrant::Media(r) => (
            settings.media_key(&r.label),
            serde_json::to_vec(r),
            r.instance.clone(),
        ),
        Registrant::Forwarder(r) => (
            settings.forwarder_key(&r.service, &r.namespace),
            serde_json::to_vec(r),
            r.instance.clone(),
        ),
    };
    // A record of strings and an address always serializes.
    (key, value.unwrap_or_default(), instance)
}

/// The instance id inside a registered value, if it is a record.
fn holder(value: &[u8]) -> Option<String> {
    let parsed: serde_json::Value = serde_json::from_slice(value).ok()?;
    parsed.get("instance")?.as_str().map(str::to_owned)
}

/// Where the loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No lease.
    NoLease,
    /// A lease, but the key is not ours (yet).
    Claiming(i64),
    /// The key is ours under this lease.
    Holding(i64),
}

/// Registers `who` under a lease of the client's `lease_ttl_s` and keeps it alive every
/// third of the TTL until `stop` is cancelled, then revokes the lease (deleting the key).
/// A key held by another live instance is not taken: the claim is repeated every second
/// until the key is free. A lost lease (expired while etcd was unreachable or the process
/// stalled) is replaced by a new lease and a new claim. `registered` says whether the key is
/// ours. Errors are logged (once per outage) and retried; it never stops on its own.
pub async fn keep_registered(
    client: EtcdClient,
    who: Registrant,
    registered: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let (key, value, instance) = entry(&client, &who);
    let ttl_s = client.settings().lease_ttl_s;
    let renew_every = (Duration::from_secs(ttl_s) / 3).max(Duration::from_millis(100));
    let retry_every = Duration::from_millis(200);
    let mut state = State::NoLease;
    let mut warned = false;
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
        let step = match state {
            State::NoLease => client.grant(ttl_s).await.map(|grant| {
                debug!(key = %key, lease = grant.id, ttl_s = grant.ttl, "lease granted");
                (State::Claiming(grant.id), Duration::ZERO)
            }),
            State::Claiming(lease) => match claim(&client, &key, &value, &instance, lease).await {
                Ok(Some(true)) => {
                    info!(key = %key, lease, "registered in etcd");
                    registered.send_replace(true);
                    warned = false;
                    Ok((State::Holding(lease), renew_every))
                }
                Ok(Some(false)) => {
                    if !warned {
                        warn!(key = %key, "another live instance holds this key; claiming again until it is free");
                        warned = true;
                    }
                    Ok((state, renew_every.min(Duration::from_secs(1))))
                }
                Ok(None) => Ok((State::NoLease, Duration::ZERO)),
                Err(error) => Err(error),
            },
            State::Holding(lease) => renew(&client, &key, &instance, lease).await.map(|next| {
                if next != state {
                    registered.send_replace(false);
                }
                let wait = if next == state {
                    renew_every
                } else {
                    Duration::ZERO
                };
                (next, wait)
            }),
        };
        match step {
            Ok((next, next_wait)) => {
                state = next;
                wait = next_wait;
            }
            Err(error) => {
                if warned {
                    debug!(key = %key, %error, "etcd still unreachable");
                } else {
                    warn!(key = %key, %error, "etcd unreachable; retrying");
                    warned = true;
                }
                wait = if matches!(state, State::Holding(_)) {
                    renew_every
                } else {
                    retry_every
                };
            }
        }
    }
    let lease = match state {
        State::NoLease => return,
        State::Claiming(lease) | State::Holding(lease) => lease,
    };
    match client.revoke(lease).await {
        Ok(()) => debug!(key = %key, lease, "lease revoked"),
        Err(error) => debug!(key = %key, %error, "revoking the lease failed"),
    }
}

/// Claims `key` under `lease`: `Some(true)` when it is ours (created now, or already ours
/// from an earlier claim whose answer was lost, then moved onto `lease`), `Some(false)` when
/// another instance holds it, `None` when `lease` is gone (the claimant waited longer than
/// the TTL; the lease is renewed before each claim for that reason).
async fn claim(
    client: &EtcdClient,
    key: &str,
    value: &[u8],
    instance: &str,
    lease: i64,
) -> Result<Option<bool>, EtcdError> {
    if client.keep_alive(lease).await? <= 0 {
        return Ok(None);
    }
    // A key deleted between the transaction's compare and its read shows as held by
    // nobody: claim once more at once.
    for _ in 0..2 {
        let ours = match client.create(key.as_bytes(), value, lease).await? {
            Claim::Created => true,
            Claim::Held(kv) if kv.create_revision == 0 => continue,
            Claim::Held(kv) if kv.lease == lease => true,
            Claim::Held(kv) if holder(&kv.value).as_deref() == Some(instance) => {
                client
                    .replace(key.as_bytes(), kv.mod_revision, value, lease)
                    .await?
            }
            Claim::Held(_) => false,
        };
        return Ok(Some(ours));
    }
    Ok(Some(false))
}

/// Renews `lease` and checks the key is still ours: the next state.
async fn renew(
    client: &EtcdClient,
    key: &str,
    instance: &str,
    lease: i64,
) -> Result<State, EtcdError> {
    let ttl = client.keep_alive(lease).await?;
    if ttl <= 0 {
        warn!(key = %key, lease, "etcd lease lost; registering again");
        return Ok(State::NoLease);
    }
    match client.get(key.as_bytes()).await? {
        Some(kv) if kv.lease == lease => Ok(State::Holding(lease)),
        Some(kv) if holder(&kv.value).as_deref() != Some(instance) => {
            warn!(key = %key, "the key was deleted and taken by another instance; claiming again until it is free");
            Ok(State::Claiming(lease))
        }
        _ => {
            warn!(key = %key, "the key was removed; registering again");
            Ok(State::Claiming(lease))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::holder;

    #[test]
    fn reads_the_holder_of_a_record() {
        assert_eq!(
            holder(br#"{"label":"a","instance":"42-1"}"#).as_deref(),
            Some("42-1")
        );
        assert_eq!(holder(b"not json"), None);
    }
}

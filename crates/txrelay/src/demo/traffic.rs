//! The demo's traffic steps: 200 transactions, 20 duplicates, the invalid submissions and the
//! resubmission of a used nonce.

use alloy::primitives::{Address, Bytes, U256};
use futures::StreamExt;

use super::{ACCOUNTS, CHAINS, Demo, PER_ACCOUNT, Sent, bar};
use crate::load::{call, transfer};

/// An invalid submission: what it is, chain, bytes, declared sender, acceptable reasons.
type InvalidCase<'a> = (&'a str, u64, Vec<u8>, Address, &'a [&'a str]);

/// Step 5: 200 signed transactions, 5 accounts x 20 nonces x 2 chains, one reverting call per
/// chain; one stream per account and chain, in nonce order.
pub(super) fn plan(demo: &Demo) -> anyhow::Result<Vec<Vec<Sent>>> {
    let r = |i: usize| demo.recipients[i].address();
    let mut plan = Vec::new();
    for chain_id in CHAINS {
        for (i, wallet) in demo.senders.iter().enumerate() {
            let mut stream = Vec::new();
            for nonce in 0..PER_ACCOUNT {
                let reverts = i == 3 && nonce == 10;
                let (recipient, raw) = if reverts {
                    let input = Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef]);
                    let raw = call(wallet, chain_id, nonce, demo.contract, input, 60_000)?;
                    (demo.contract, raw)
                } else {
                    let to = r((i + usize::try_from(nonce).unwrap_or(0)) % ACCOUNTS);
                    let value = U256::from(1_000 + nonce);
                    (to, transfer(wallet, chain_id, nonce, to, value, 21_000)?)
                };
                stream.push(Sent {
                    chain_id,
                    hash: alloy::primitives::keccak256(&raw),
                    raw,
                    sender: wallet.address(),
                    device: format!("device-{i}"),
                    recipient,
                    reverts,
                });
            }
            plan.push(stream);
        }
    }
    Ok(plan)
}

/// Step 6: submits the plan, 16 streams at a time; each must be answered 202 with its hash.
pub(super) async fn submit_all(demo: &mut Demo, plan: Vec<Vec<Sent>>) {
    let total: usize = plan.iter().map(Vec::len).sum();
    let progress = bar(demo.progress, total as u64, "submitting");
    let answers = futures::stream::iter(plan.into_iter().map(|stream| {
        let (client, progress) = (demo.client.clone(), progress.clone());
        async move {
            let mut answers = Vec::new();
            for sent in stream {
                let answer = client
                    .submit(sent.chain_id, &sent.raw, sent.sender, &sent.device, true)
                    .await;
                progress.inc(1);
                answers.push((sent, answer));
            }
            answers
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    progress.finish_and_clear();
    let tally = &mut demo.tally;
    for (sent, answer) in answers.into_iter().flatten() {
        tally.submitted += 1;
        match answer.map(|a| (a.accepted(), a)) {
            Ok((Some(ok), _)) if !ok.duplicate && ok.tx_hash == sent.hash => {
                tally.accepted.push(sent);
            }
            Ok((_, other)) => tally.failures.push(format!(
                "transaction {} answered {} {}",
                sent.hash, other.status, other.body
            )),
            Err(error) => tally
                .failures
                .push(format!("transaction {}: {error:#}", sent.hash)),
        }
    }
    if tally.accepted.len() != total {
        let accepted = tally.accepted.len();
        tally
            .failures
            .push(format!("accepted {accepted} of {total}"));
    }
}

/// Step 7: 10 accepted transactions submitted twice more at once, idempotently: 20
/// duplicates, nothing sent again.
pub(super) async fn submit_duplicates(demo: &mut Demo) {
    let accepted = &demo.tally.accepted;
    let picks: Vec<&Sent> = accepted
        .iter()
        .step_by(accepted.len().max(10) / 10)
        .take(10)
        .collect();
    let client = &demo.client;
    let answers = futures::future::join_all(picks.iter().flat_map(|sent| {
        (0..2)
            .map(move |_| client.submit(sent.chain_id, &sent.raw, sent.sender, &sent.device, true))
    }))
    .await;
    let tally = &mut demo.tally;
    for answer in answers {
        tally.submitted += 1;
        match answer {
            Ok(a) if a.accepted().is_some_and(|ok| ok.duplicate) => tally.duplicates += 1,
            Ok(a) => tally
                .failures
                .push(format!("duplicate answered {} {}", a.status, a.body)),
            Err(error) => tally.failures.push(format!("duplicate: {error:#}")),
        }
    }
    if tally.duplicates != 20 {
        let found = tally.duplicates;
        tally
            .failures
            .push(format!("{found} of 20 duplicates recognised"));
    }
}

/// Step 8: a bad signature, a wrong chain id, an unknown account and an undecodable envelope,
/// each refused with its reason.
pub(super) async fn submit_invalid(demo: &mut Demo) -> anyhow::Result<()> {
    let r = |i: usize| demo.recipients[i].address();
    let senders = &demo.senders;
    let mut bad_sig = transfer(
        &senders[0],
        CHAINS[0],
        PER_ACCOUNT,
        r(0),
        U256::from(1),
        21_000,
    )?;
    if let Some(last) = bad_sig.last_mut() {
        *last ^= 0x55;
    }
    let other_chain = transfer(
        &senders[1],
        CHAINS[0],
        PER_ACCOUNT,
        r(1),
        U256::from(1),
        21_000,
    )?;
    let unknown = transfer(&demo.stranger, CHAINS[0], 0, r(2), U256::from(1), 21_000)?;
    let invalid: Vec<InvalidCase<'_>> = vec![
        (
            "bad signature",
            CHAINS[0],
            bad_sig,
            senders[0].address(),
            &["invalid_signature", "sender_mismatch"],
        ),
        (
            "wrong chain id",
            CHAINS[1],
            other_chain,
            senders[1].address(),
            &["chain_mismatch"],
        ),
        (
            "unknown account",
            CHAINS[0],
            unknown,
            demo.stranger.address(),
            &["account_unknown"],
        ),
        (
            "undecodable",
            CHAINS[0],
            vec![0x02, 0xc0],
            senders[2].address(),
            &["undecodable_transaction"],
        ),
    ];
    for (what, chain_id, raw, sender, codes) in invalid {
        demo.tally.submitted += 1;
        let answer = demo
            .client
            .submit(chain_id, &raw, sender, "device-0", true)
            .await?;
        if (400..500).contains(&answer.status) {
            demo.tally.invalid_rejected += 1;
        }
        if !answer.reason().is_some_and(|code| codes.contains(&code)) {
            demo.tally.failures.push(format!(
                "{what}: expected {codes:?}, got {} {}",
                answer.status, answer.body
            ));
        }
    }
    Ok(())
}

/// Step 10 (after the results are in): the bytes of a mined transaction sent again without
/// idempotency are answered 200 with its status and receipt (a duplicate of a mined
/// transaction is not an error); another transaction with the same, used nonce is refused
/// (`nonce_too_low`, from the nonce cache: no node is asked).
pub(super) async fn resubmit_used_nonce(demo: &mut Demo) -> anyhow::Result<()> {
    let tally = &mut demo.tally;
    let Some(mined) = tally
        .accepted
        .iter()
        .find(|s| tally.finals.get(&s.hash).is_some_and(|f| f == "mined"))
        .cloned()
    else {
        return Ok(());
    };
    tally.submitted += 1;
    let again = demo
        .client
        .submit(
            mined.chain_id,
            &mined.raw,
            mined.sender,
            &mined.device,
            false,
        )
        .await?;
    if again.status != 200 || again.body["status"] != "mined" || again.body["receipt"].is_null() {
        tally.failures.push(format!(
            "mined transaction sent again: expected 200 with status and receipt, got {} {}",
            again.status, again.body
        ));
    }
    let Some(wallet) = demo.senders.iter().find(|w| w.address() == mined.sender) else {
        return Ok(());
    };
    let nonce = alloy::consensus::Transaction::nonce(
        &<alloy::consensus::TxEnvelope as alloy::eips::eip2718::Decodable2718>::decode_2718_exact(
            &mined.raw,
        )?,
    );
    let stale = transfer(
        wallet,
        mined.chain_id,
        nonce,
        mined.recipient,
        U256::from(7),
        21_000,
    )?;
    tally.submitted += 1;
    let answer = demo
        .client
        .submit(mined.chain_id, &stale, mined.sender, &mined.device, false)
        .await?;
    if (400..500).contains(&answer.status) {
        tally.invalid_rejected += 1;
    }
    if answer.reason() != Some("nonce_too_low") {
        tally.failures.push(format!(
            "used nonce: expected nonce_too_low, got {} {}",
            answer.status, answer.body
        ));
    }
    Ok(())
}

//! A force close: the commitment transaction confirms, each side's balance comes back to its
//! wallet through LDK's sweeper (the peer's at once, ours after the to-self delay), and both
//! wallets end exactly where the payment and the on-chain fees say.

use bitcoin::{OutPoint, Transaction};

use crate::common::*;

fn fee_of(tx: &Transaction, input_value: u64) -> u64 {
    input_value - tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>()
}

/// The mempool transactions spending any output of `parent`, with the value they spend.
async fn spends_of(p: &Pair, parent: &Transaction) -> Vec<(Transaction, u64)> {
    let txid = parent.compute_txid();
    let mut out = Vec::new();
    for id in p.node.rpc().get_raw_mempool().await.expect("mempool") {
        let tx: Transaction = p
            .node
            .rpc()
            .get_raw_transaction(&id, None)
            .await
            .expect("mempool transaction");
        let value: u64 = tx
            .input
            .iter()
            .filter(|i| i.previous_output.txid == txid)
            .map(|i| {
                parent.output[i.previous_output.vout as usize]
                    .value
                    .to_sat()
            })
            .sum();
        if value > 0 {
            out.push((tx, value));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_close_sweeps_both_sides_to_their_wallets() {
    let p = pair().await;
    let capacity = 800_000;
    let a_before = balance(&p.a_wallet).await;
    let b_before = balance(&p.b_wallet).await;
    let (channel_id, funding_txid) = open_channel(&p, capacity).await;
    let funding_fee = wallet_fee(&p.a_wallet, &funding_txid).await;
    let funding = p.a.channels()[0].funding.unwrap();
    let paid = 300_000;
    hold_pay_and_claim(&p.a, &p.b, paid * 1000).await;
    wait_settled(&p).await;

    p.a.force_close(&channel_id, &p.b.node_id()).unwrap();
    let commitment = wait_spend(&p, OutPoint::new(funding.txid, funding.vout)).await;
    let commitment_fee = fee_of(&commitment, capacity);
    mine_and_sync(&p, 1).await;

    // b's output is not delayed; a's waits for the to-self delay. Mine until both sweeps went
    // out, asking the sweepers each round.
    let mut sweeps: Vec<(Transaction, u64)> = Vec::new();
    for _ in 0..40 {
        p.a.sweep_now().await.ok();
        p.b.sweep_now().await.ok();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        for s in spends_of(&p, &commitment).await {
            if !sweeps
                .iter()
                .any(|(t, _)| t.compute_txid() == s.0.compute_txid())
            {
                sweeps.push(s);
            }
        }
        if sweeps.len() >= 2 {
            break;
        }
        mine_and_sync(&p, 10).await;
    }
    assert_eq!(sweeps.len(), 2, "one sweep per side: {sweeps:?}");
    mine_and_sync(&p, 1).await;

    // b's sweep spends the output of exactly what it was paid (b is not the funder, so it
    // pays no commitment fee); a's spends the rest.
    assert!(commitment.output.iter().any(|o| o.value.to_sat() == paid));
    let (b_sweep, a_sweep): (Vec<_>, Vec<_>) = sweeps.iter().partition(|(_, v)| *v == paid);
    let (b_sweep, a_sweep) = (b_sweep[0], a_sweep[0]);
    assert_eq!(a_sweep.1, capacity - paid - commitment_fee);
    let b_sweep_fee = fee_of(&b_sweep.0, b_sweep.1);
    let a_sweep_fee = fee_of(&a_sweep.0, a_sweep.1);
    let a_after = balance(&p.a_wallet).await;
    let b_after = balance(&p.b_wallet).await;
    println!(
        "funding fee {funding_fee}, commitment fee {commitment_fee}, sweep fees a {a_sweep_fee} b {b_sweep_fee}"
    );
    assert_eq!(
        b_after,
        b_before + paid - b_sweep_fee,
        "b: paid less its sweep"
    );
    assert_eq!(
        a_after,
        a_before - funding_fee - paid - commitment_fee - a_sweep_fee,
        "a: the payment and its on-chain fees (funding, commitment, sweep)"
    );
    assert_eq!(p.a.channels().len() + p.b.channels().len(), 0);
}

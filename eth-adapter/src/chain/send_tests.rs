//! Unit tests of send.rs: a round's broadcasts in nonce order.

use super::*;
use std::sync::Mutex;

/// What a round answered, what it broadcast and filled, and whether it held some back.
struct Round {
    answers: Vec<Result<B256, EthError>>,
    sent: Vec<usize>,
    filled: Vec<usize>,
    held: bool,
}

/// Broadcasts answered as scripted (by position; refused for good), fills that succeed or
/// not.
async fn round(refuse: &[usize], fills: bool, n: usize) -> Round {
    let order = (0..n).map(|k| B256::repeat_byte(k as u8 + 1)).collect();
    let (sent, filled) = (Mutex::new(Vec::new()), Mutex::new(Vec::new()));
    let (answers, held) = broadcast_in_order(
        order,
        |k, h| {
            sent.lock().unwrap().push(k);
            let refused = refuse.contains(&k);
            async move {
                if refused {
                    Err(EthError::Rejected("insufficient funds".into()))
                } else {
                    Ok(h)
                }
            }
        },
        |k, e| {
            assert!(!e.is_transient());
            filled.lock().unwrap().push(k);
            async move {
                if fills {
                    Ok(())
                } else {
                    Err(EthError::Rejected("insufficient funds".into()))
                }
            }
        },
    )
    .await;
    Round {
        answers,
        sent: sent.into_inner().unwrap(),
        filled: filled.into_inner().unwrap(),
        held,
    }
}

fn assert_held_back(answers: &[Result<B256, EthError>]) {
    for held in answers {
        let held = held.clone().unwrap_err();
        assert!(held.is_transient(), "{held}");
        assert!(held.to_string().contains("not sent yet"), "{held}");
    }
}

#[tokio::test]
async fn a_refused_send_has_its_nonce_filled_and_the_round_goes_on() {
    // All taken: all broadcast in order, nothing filled.
    let r = round(&[], true, 4).await;
    assert!(r.answers.iter().all(Result::is_ok));
    assert_eq!(r.answers[2].clone().unwrap(), B256::repeat_byte(3));
    assert_eq!(r.sent, vec![0, 1, 2, 3]);
    assert!(r.filled.is_empty() && !r.held);
    // The second refused: its nonce is filled, and the two after it go out (they would
    // otherwise wait behind it).
    let r = round(&[1], true, 4).await;
    assert_eq!(r.sent, vec![0, 1, 2, 3]);
    assert_eq!(r.filled, vec![1]);
    assert!(r.answers[1].is_err() && !r.held);
    assert!(r.answers[0].is_ok() && r.answers[2].is_ok() && r.answers[3].is_ok());
}

#[tokio::test]
async fn a_round_fills_one_nonce_at_most_then_holds_the_rest_back() {
    // The filler refused: nothing after the failed send goes out.
    let r = round(&[1], false, 4).await;
    assert_eq!(r.sent, vec![0, 1]);
    assert_eq!(r.filled, vec![1]);
    assert!(r.answers[0].is_ok() && r.held);
    assert!(!r.answers[1].clone().unwrap_err().is_transient());
    assert_held_back(&r.answers[2..]);
    // Two refused (a round that ran out of funds): one filler, then the rest held back.
    let r = round(&[1, 2], true, 5).await;
    assert_eq!(r.sent, vec![0, 1, 2]);
    assert_eq!(r.filled, vec![1]);
    assert!(r.held && r.answers[2].is_err());
    assert_held_back(&r.answers[3..]);
}

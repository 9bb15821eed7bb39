//! Hostile input never panics the message decoder: random bytes, random JSON-ish text, and
//! valid messages with random edits all end in `Ok` or a typed `MessageError`.
#![allow(clippy::unwrap_used, missing_docs)]

use proptest::prelude::*;
use swap_core::*;

fn valid() -> Vec<u8> {
    let env = Envelope::new(
        SwapId([3; 16]),
        Message::LockNotice {
            leg: Leg::X,
            txref: TxRef("00ff".into()),
        },
    );
    env.encode().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = Envelope::decode(&bytes);
    }

    #[test]
    fn edited_messages_never_panic(pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut m = valid();
        let i = pos.index(m.len());
        m[i] = byte;
        let c = cut.index(m.len() + 1);
        let _ = Envelope::decode(&m[..c]);
    }

    #[test]
    fn json_shaped_text_never_panics(s in "\\{(\"[a-z_]{1,8}\":(\"[0-9a-f]{0,40}\"|[0-9]{1,40}|\\{\\}|\\[\\]|null),?){0,8}\\}") {
        let _ = Envelope::decode(s.as_bytes());
    }
}

#[test]
fn deeply_nested_input_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    // Over the size limit: refused before parsing.
    assert!(matches!(
        Envelope::decode(deep.as_bytes()),
        Err(MessageError::TooLarge { .. })
    ));
    let deep = format!("{}{}", "[".repeat(8_000), "]".repeat(8_000));
    assert!(matches!(
        Envelope::decode(deep.as_bytes()),
        Err(MessageError::Malformed(_))
    ));
}

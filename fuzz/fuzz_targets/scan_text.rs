//! `keyward::scan::scan` on arbitrary text, through the public API. The
//! format covers each case: `pk` (untagged), `pk_test` (a prefix that
//! extends `pk`), a keyed `sk`, and a keyed `ak` that still accepts
//! untagged tokens.
//!
//! The input's first byte picks a mode:
//!
//! * **text**: the rest, as lossy UTF-8, is scanned as it is;
//! * **seeded**: the rest is split at `\x00` into pieces, and each piece
//!   whose first byte is below 8 becomes a minted token (of the kind that
//!   byte names; odd bytes change one character of it, so its checksum or
//!   tag fails), the others stay text: tokens glued to the fuzzer's bytes
//!   in any order, so the success path is reached from the first run.
//!
//! Oracle: it never panics; every finding parses, its range slices to it
//! and lies on character boundaries; findings are in order and apart; and
//! in seeded mode every untouched minted token that stands alone (no
//! ASCII word character on either side) is found.
#![no_main]

use std::sync::OnceLock;

use keyward::scan::scan;
use keyward::{TokenFormat, TokenKey, TokenKind};
use libfuzzer_sys::fuzz_target;

struct State {
    format: TokenFormat,
    kinds: Vec<TokenKind>,
}

static STATE: OnceLock<State> = OnceLock::new();

fn state() -> &'static State {
    STATE.get_or_init(|| {
        let key = |b: u8| TokenKey::new(1, vec![b; 32]).unwrap();
        let kinds = vec![
            TokenKind::new("pk").unwrap(),
            TokenKind::new("pk_test").unwrap(),
            TokenKind::new("sk").unwrap().key(key(1)),
            TokenKind::new("ak").unwrap().key(key(2)).accept_untagged(true).unwrap(),
        ];
        State {
            format: TokenFormat::new(kinds.clone()),
            kinds,
        }
    })
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fuzz_target!(|data: &[u8]| {
    let state = state();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut text = String::new();
    // Untouched minted tokens and where they were put.
    let mut planted = Vec::new();
    if mode % 2 == 0 {
        text = String::from_utf8_lossy(rest).into_owned();
    } else {
        for piece in rest.split(|b| *b == 0) {
            match piece.split_first() {
                Some((&pick, tail)) if pick < 8 => {
                    let kind = &state.kinds[usize::from(pick / 2) % state.kinds.len()];
                    let token = kind.generate();
                    let mut token = token.expose_secret().to_owned();
                    if pick % 2 == 1 {
                        // One body character changed to another base62 one.
                        let at = token.len() - 1 - usize::from(tail.first().copied().unwrap_or(0)) % 30;
                        let mut bytes = token.into_bytes();
                        bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
                        token = String::from_utf8(bytes).unwrap();
                    } else {
                        planted.push(text.len()..text.len() + token.len());
                    }
                    text.push_str(&token);
                }
                _ => text.push_str(&String::from_utf8_lossy(piece)),
            }
        }
    }
    let found = scan(&state.format, &text);
    let mut end = 0;
    for f in &found {
        let range = f.range();
        assert!(range.start >= end, "findings overlap or are out of order");
        assert!(text.is_char_boundary(range.start) && text.is_char_boundary(range.end));
        assert_eq!(&text[range.clone()], f.expose_secret());
        let parsed = state.format.parse(f.expose_secret()).expect("a finding parses");
        assert_eq!(parsed.kind().prefix(), f.prefix());
        // A whole run of word characters.
        let bytes = text.as_bytes();
        assert!(range.start == 0 || !is_word(bytes[range.start - 1]));
        assert!(range.end == bytes.len() || !is_word(bytes[range.end]));
        end = range.end + 1;
    }
    let bytes = text.as_bytes();
    for range in planted {
        let alone = (range.start == 0 || !is_word(bytes[range.start - 1]))
            && (range.end == bytes.len() || !is_word(bytes[range.end]));
        if alone {
            assert!(
                found.iter().any(|f| f.range() == range),
                "a minted token standing alone was not found"
            );
        }
    }
});

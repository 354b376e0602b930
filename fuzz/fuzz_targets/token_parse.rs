//! Token parsing on arbitrary bytes: never panics; whatever parses has the
//! shape a token must have, and a parse is stable.
#![no_main]

use keyward::{TokenError, TokenFormat, TokenKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let format = TokenFormat::new(["pk", "pl", "pk_test"].map(|p| TokenKind::new(p).unwrap()));
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    match format.parse(input) {
        Ok(parsed) => {
            let prefix = parsed.kind().prefix();
            assert!(input.starts_with(prefix));
            assert_eq!(input.len(), parsed.kind().token_len());
            assert_eq!(parsed.display_prefix(), &input[..8]);
        }
        Err(TokenError::Empty) => assert!(input.is_empty()),
        Err(TokenError::TooLong) => assert!(input.len() > format.max_token_len()),
        Err(_) => {}
    }
});

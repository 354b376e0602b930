//! The alert GitHub sends (a JSON array of matches) and the feedback
//! keyward answers with.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AlertError;

/// One reported match: the token, the secret type GitHub matched it as,
/// and where it was found.
#[derive(Deserialize)]
pub(crate) struct Match {
    pub(crate) token: String,
    #[serde(rename = "type")]
    pub(crate) token_type: String,
    #[serde(default)]
    pub(crate) url: Option<String>,
}

impl fmt::Debug for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Match")
            .field("token", &crate::error::Redacted)
            .field("token_type", &self.token_type)
            .field("url", &self.url)
            .finish()
    }
}

/// Parses an alert body: a JSON array of at most `max_tokens` matches,
/// each with a string `token` and `type` (other fields are ignored).
pub(crate) fn parse(body: &[u8], max_tokens: usize) -> Result<Vec<Match>, AlertError> {
    let matches: Vec<Match> = serde_json::from_slice(body).map_err(|_| AlertError::InvalidAlert)?;
    if matches.len() > max_tokens {
        return Err(AlertError::TooManyTokens);
    }
    Ok(matches)
}

/// GitHub's label for a reported token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Label {
    /// One of our keys (revoked now, or before).
    TruePositive,
    /// Not one of our keys.
    FalsePositive,
}

/// One entry of the feedback array: the token by its SHA-256 (never the
/// token itself), its type as GitHub sent it, and the label.
#[derive(Debug, Serialize)]
pub(crate) struct Feedback<'a> {
    pub(crate) token_hash: String,
    pub(crate) token_type: &'a str,
    pub(crate) label: Label,
}

/// The lowercase hex SHA-256 of `token`, as GitHub's feedback format asks.
pub(crate) fn token_hash(token: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_hash_is_hex_sha256() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn alerts_parse_within_their_bound() {
        let body =
            br#"[{"token":"t1","type":"acme_pk","url":"https://github.com/o/r","source":"content"},
                        {"token":"t2","type":"acme_pk","url":null},
                        {"token":"t3","type":"acme_pk"}]"#;
        let matches = parse(body, 3).unwrap();
        assert_eq!(matches.len(), 3);
        assert_eq!(matches[0].url.as_deref(), Some("https://github.com/o/r"));
        assert_eq!(matches[1].url, None);
        assert_eq!(matches[2].token, "t3");
        assert!(matches!(parse(body, 2), Err(AlertError::TooManyTokens)));
        assert!(parse(b"[]", 0).unwrap().is_empty());
        for bad in [
            &b""[..],
            b"{}",
            b"[{\"type\":\"x\"}]",
            b"[{\"token\":\"t\"}]",
            b"[{\"token\":1,\"type\":\"x\"}]",
            b"[1]",
            b"[] []",
        ] {
            assert!(
                matches!(parse(bad, 10), Err(AlertError::InvalidAlert)),
                "{bad:?}"
            );
        }
        let debug = format!("{:?}", matches[0]);
        assert!(
            !debug.contains("t1") && debug.contains("[REDACTED]"),
            "{debug}"
        );
    }

    #[test]
    fn feedback_serializes_as_github_reads_it() {
        let entry = Feedback {
            token_hash: "ab".into(),
            token_type: "acme_pk",
            label: Label::FalsePositive,
        };
        assert_eq!(
            serde_json::to_string(&entry).unwrap(),
            r#"{"token_hash":"ab","token_type":"acme_pk","label":"false_positive"}"#
        );
        assert_eq!(
            serde_json::to_string(&Label::TruePositive).unwrap(),
            r#""true_positive""#
        );
    }
}

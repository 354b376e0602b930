//! Request bodies read whole, up to a limit, before a signature over them is
//! checked (webhooks, secret-scanning alerts).

use bytes::Bytes;
use http_body::Body;
use http_body_util::{BodyExt, Limited};

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Longer than the limit (announced by `Content-Length` or actual).
    TooLarge,
    /// The body failed (the connection broke, a decoding error).
    Failed,
}

/// Reads `body` whole when it is at most `limit` bytes. A `Content-Length`
/// over the limit is refused before anything is read.
pub(crate) async fn read<B>(
    headers: &http::HeaderMap,
    body: B,
    limit: usize,
) -> Result<Bytes, BodyError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let announced = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[tokio::test]
    async fn reads_up_to_the_limit_and_refuses_more() {
        let headers = http::HeaderMap::new();
        let body = read(&headers, Full::new(Bytes::from_static(b"abcd")), 4).await;
        assert_eq!(body.unwrap(), Bytes::from_static(b"abcd"));
        let body = read(&headers, Full::new(Bytes::from_static(b"abcde")), 4).await;
        assert!(matches!(body, Err(BodyError::TooLarge)));
    }

    #[tokio::test]
    async fn an_announced_length_over_the_limit_is_refused_unread() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, "5".parse().unwrap());
        let body = read(&headers, Full::new(Bytes::from_static(b"ab")), 4).await;
        assert!(matches!(body, Err(BodyError::TooLarge)));
    }
}

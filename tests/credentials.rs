//! Credential extraction at its edges, through `AuthLayer`: the length
//! limit is inclusive, for each header that carries a credential.

mod common;

use http::{Request, Response, StatusCode};
use keyward::http::AuthLayer;
use keyward::NewKey;
use tower::{ServiceBuilder, ServiceExt};

async fn send(layer: AuthLayer, req: Request<String>) -> Response<String> {
    ServiceBuilder::new()
        .layer(layer)
        .service_fn(|_req: Request<String>| async {
            Ok::<_, std::convert::Infallible>(Response::new(String::new()))
        })
        .oneshot(req)
        .await
        .unwrap()
}

fn request(name: &str, value: &str) -> Request<String> {
    Request::get("/")
        .header(name, value)
        .body(String::new())
        .unwrap()
}

fn error(res: &Response<String>) -> (StatusCode, String) {
    let body: serde_json::Value = serde_json::from_str(res.body()).unwrap_or_default();
    (
        res.status(),
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A header value of exactly `max_credential_len` bytes is read; one byte
/// more is 400 `invalid_request` before any parsing.
#[tokio::test]
async fn the_length_limit_is_inclusive() {
    let (keyring, _) = common::keyring();
    let issued = keyring.issue(NewKey::new("pk", "p", "edge")).await.unwrap();
    let token = issued.token.expose_secret();
    for (name, value) in [
        ("x-api-key", token.to_owned()),
        ("authorization", format!("Bearer {token}")),
    ] {
        let layer = AuthLayer::new(keyring.clone());
        let res = send(
            layer.clone().max_credential_len(value.len()),
            request(name, &value),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{name} at the limit");
        let res = send(
            layer.max_credential_len(value.len() - 1),
            request(name, &value),
        )
        .await;
        assert_eq!(
            error(&res),
            (
                StatusCode::BAD_REQUEST,
                "a credential or tenant header is too long".to_owned()
            ),
            "{name} one byte over"
        );
    }
}

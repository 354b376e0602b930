//! The example server's tokens page in a real headless browser: Debian's
//! Chromium driven through chromedriver (WebDriver, `fantoccini`), against
//! the example's router served in process on an ephemeral port.
//!
//! `scripts/test.sh` installs Chromium and chromedriver when absent, starts
//! chromedriver on a free port and exports its URL as `KEYWARD_WEBDRIVER`.
//! Without it these tests skip with a loud message, except under
//! `CI=true`, where they fail: CI must run them. `KEYWARD_CHROME` names the
//! browser binary when chromedriver does not find it.
//!
//! No fixed sleeps: every wait polls the page with a deadline.

#[allow(dead_code)]
#[path = "../examples/server/app.rs"]
mod app;
#[allow(dead_code)]
#[path = "../examples/server/serve.rs"]
mod serve;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use keyward::{Keyring, TenantId};
use serde_json::{json, Value};

/// How long any one thing may take to appear on the page.
const DEADLINE: Duration = Duration::from_secs(15);

/// The example's API on 127.0.0.1 and an ephemeral port.
struct Server {
    addr: SocketAddr,
    keyring: Keyring,
}

async fn start() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let keyring = app::keyring();
    app::demo_keys(&keyring).await.unwrap();
    let router = app::router(keyring.clone());
    tokio::spawn(serve::serve(
        listener,
        router,
        serve::Limits::default(),
        std::future::pending(),
    ));
    Server { addr, keyring }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `GET path` with `Authorization: Bearer token`, as an integrator's
    /// client would send it: the status and the JSON body.
    async fn get_with_bearer(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build_http::<Full<Bytes>>();
        let req = Request::get(self.url(path))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::default())
            .unwrap();
        let res = client.request(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

/// A WebDriver session on headless Chromium, or `None` (after a loud
/// message) when no driver is configured outside CI.
async fn browser() -> Option<Client> {
    let url = match std::env::var("KEYWARD_WEBDRIVER") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true but KEYWARD_WEBDRIVER is not set: run the suite with scripts/test.sh, which installs Chromium and starts chromedriver");
            }
            eprintln!("\n######## SKIPPED: browser test ########\n# KEYWARD_WEBDRIVER is not set, so the tokens page was NOT tested in a browser.\n# Run `bash scripts/test.sh` (installs chromium + chromium-driver, starts chromedriver).\n#######################################\n");
            return None;
        }
    };
    let mut options = json!({
        "args": [
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1280,1000",
        ]
    });
    if let Ok(binary) = std::env::var("KEYWARD_CHROME") {
        options["binary"] = binary.into();
    }
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), "chrome".into());
    caps.insert("goog:chromeOptions".into(), options);
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&url)
        .await
        .unwrap_or_else(|err| panic!("no browser session from the WebDriver at {url}: {err}"));
    Some(client)
}

/// Runs `test` with a browser session (or skips, see [`browser`]) and
/// closes the session whatever the outcome, so a failing test leaves no
/// browser behind; then fails as the test did.
async fn with_browser<F, Fut>(test: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(b) = browser().await else { return };
    let outcome = tokio::spawn(test(b.clone())).await;
    let _ = b.close().await;
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

/// Polls `probe` until it yields a value; fails the test after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, CmdError>>,
{
    let deadline = Instant::now() + DEADLINE;
    let mut last_error = None;
    loop {
        match probe().await {
            Ok(Some(value)) => return value,
            Ok(None) => {}
            Err(err) => last_error = Some(err),
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} (last error: {last_error:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The element `css`, once it exists.
async fn element(b: &Client, css: &str) -> Element {
    eventually(
        css,
        || async move { Ok(Some(b.find(Locator::Css(css)).await?)) },
    )
    .await
}

/// Clicks `css` once it exists, finding it again if the page re-rendered
/// it between the lookup and the click (a list refresh under load).
async fn click(b: &Client, css: &str) {
    eventually(&format!("a click on {css}"), || async move {
        b.find(Locator::Css(css)).await?.click().await?;
        Ok(Some(()))
    })
    .await
}

/// The visible text of `css`, once it is `pred`.
async fn text_when(b: &Client, css: &str, pred: impl Fn(&str) -> bool) -> String {
    let pred = &pred;
    eventually(&format!("the text of {css}"), || async move {
        let text = b.find(Locator::Css(css)).await?.text().await?;
        Ok(pred(&text).then_some(text))
    })
    .await
}

/// Logs in through the page as `account` and waits for the grid.
async fn login(b: &Client, server: &Server, account: &str) {
    b.goto(&server.url("/tokens")).await.unwrap();
    element(b, "#account")
        .await
        .send_keys(account)
        .await
        .unwrap();
    element(b, "#login").await.click().await.unwrap();
    element(b, r#"#grid tr[data-scope="games:read"]"#).await;
}

/// Creates a token through the page; returns the secret shown in `#secret`.
async fn create(b: &Client, name: &str, expiry: &str, scopes: &[&str]) -> String {
    element(b, "#create-name")
        .await
        .send_keys(name)
        .await
        .unwrap();
    element(b, "#create-expiry")
        .await
        .select_by_value(expiry)
        .await
        .unwrap();
    for scope in scopes {
        let css = format!(r#"input[name=scope][value="{scope}"]"#);
        let box_ = element(b, &css).await;
        if !box_.is_selected().await.unwrap() {
            box_.click().await.unwrap();
        }
    }
    element(b, "#create").await.click().await.unwrap();
    text_when(b, "#secret", |t| t.starts_with("pl_")).await
}

/// The id of the `org_demo` key named `name`.
async fn key_id(keyring: &Keyring, name: &str) -> keyward::KeyInfo {
    let tenant = TenantId::parse("org_demo").unwrap();
    let keys = keyring.list(&tenant).await.unwrap();
    let mut named = keys.into_iter().filter(|k| k.name() == name);
    let key = named.next().expect("the key was created");
    assert!(named.next().is_none(), "one key named {name:?}");
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_made_on_the_page_works_shows_its_last_use_and_dies_when_revoked_there() {
    with_browser(made_used_revoked).await;
}

async fn made_used_revoked(b: Client) {
    let server = start().await;
    login(&b, &server, "ada@example.com").await;

    // The grid: every scope of the catalog, enforced or "Soon".
    let rows = b
        .find_all(Locator::Css("#grid tr[data-scope]"))
        .await
        .unwrap();
    assert_eq!(rows.len(), app::playable_labs().entries().len());
    let soon = element(&b, r#"#grid tr[data-scope="games:read"] .badge-soon"#).await;
    assert_eq!(soon.text().await.unwrap(), "Soon");
    element(
        &b,
        r#"#grid tr[data-scope="versions:write"] .badge-enforced"#,
    )
    .await;
    assert!(b
        .find_all(Locator::Css(
            r#"#grid tr[data-scope="versions:write"] .badge-soon"#
        ))
        .await
        .unwrap()
        .is_empty());

    // Create: a 30-day token with one soon and one enforced scope.
    let secret = create(&b, "ci deploy", "30d", &["games:read", "versions:write"]).await;
    let key = key_id(&server.keyring, "ci deploy").await;
    let scopes: Vec<&str> = key.scopes().iter().map(|s| s.as_str()).collect();
    assert_eq!(scopes, ["games:read", "versions:write"]);
    let expires = key.expires_at().expect("30 days");
    let in_30_days = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    assert!((expires - in_30_days).abs() < time::Duration::minutes(5));
    assert_eq!(key.display_prefix(), &secret[..8]);

    // The list: name, first 8 characters, scopes, never used; no secret.
    let row = format!(r#"#tokens tr[data-id="{}"]"#, key.id());
    text_when(&b, &format!("{row} .name"), |t| t == "ci deploy").await;
    assert_eq!(
        element(&b, &format!("{row} .prefix"))
            .await
            .text()
            .await
            .unwrap(),
        &secret[..8]
    );
    assert_eq!(
        element(&b, &format!("{row} .scopes"))
            .await
            .text()
            .await
            .unwrap(),
        "games:read, versions:write"
    );
    assert_eq!(
        element(&b, &format!("{row} .last-used"))
            .await
            .text()
            .await
            .unwrap(),
        "Never"
    );
    let created = element(&b, &format!("{row} .created"))
        .await
        .text()
        .await
        .unwrap();
    assert!(created.ends_with(" UTC"), "created: {created:?}");
    let table = element(&b, "#tokens").await.text().await.unwrap();
    assert!(!table.contains(&secret), "the list shows the secret");

    // Copy: the button copies the secret or selects it for a manual copy.
    element(&b, "#copy").await.click().await.unwrap();
    text_when(&b, "#copy-status", |t| !t.is_empty()).await;

    // Use it against the API, as an integrator would.
    let (status, body) = server.get_with_bearer("/api/games", &secret).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["organization_id"], "org_demo");

    // "Last used" appears after a refresh.
    let last_used = eventually("last used after refresh", || {
        let (b, row) = (&b, &row);
        async move {
            b.find(Locator::Id("refresh")).await?.click().await?;
            let text = b
                .find(Locator::Css(&format!("{row} .last-used")))
                .await?
                .text()
                .await?;
            Ok((text != "Never").then_some(text))
        }
    })
    .await;
    assert!(last_used.ends_with(" UTC"), "last used: {last_used:?}");

    // Revoke, but dismiss the confirmation: nothing happens.
    let revoke = format!("{row} .revoke");
    click(&b, &revoke).await;
    let question = eventually("the confirmation", || async {
        match b.get_alert_text().await {
            Ok(text) => Ok(Some(text)),
            Err(_) => Ok(None),
        }
    })
    .await;
    assert!(question.contains("ci deploy"), "confirm: {question:?}");
    b.dismiss_alert().await.unwrap();
    let (status, _) = server.get_with_bearer("/api/games", &secret).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "dismissing the confirmation revoked the token"
    );
    assert_eq!(
        server.keyring.get(key.id()).await.unwrap().revoked_at(),
        None
    );

    // Revoke and accept: the row says so, the API refuses the token.
    click(&b, &revoke).await;
    eventually("the confirmation", || async {
        Ok(b.get_alert_text().await.ok())
    })
    .await;
    b.accept_alert().await.unwrap();
    text_when(&b, &format!("{row} .state"), |t| t == "revoked").await;
    assert!(b.find_all(Locator::Css(&revoke)).await.unwrap().is_empty());
    let (status, body) = server.get_with_bearer("/api/games", &secret).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "token_revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_name_with_markup_renders_as_text() {
    with_browser(markup_in_a_name).await;
}

async fn markup_in_a_name(b: Client) {
    let server = start().await;
    login(&b, &server, "mallory@example.com").await;

    let name = "<img src=x onerror=alert(1)>";
    create(&b, name, "never", &[]).await;
    let key = key_id(&server.keyring, name).await;
    let row = format!(r#"#tokens tr[data-id="{}"]"#, key.id());
    let shown = text_when(&b, &format!("{row} .name"), |t| !t.is_empty()).await;
    assert_eq!(shown, name);
    assert_eq!(
        element(&b, &format!("{row} .expires"))
            .await
            .text()
            .await
            .unwrap(),
        "Never"
    );
    // No element was made of the name, and no script ran from it.
    assert!(b.find_all(Locator::Css("img")).await.unwrap().is_empty());
    assert!(b.get_alert_text().await.is_err(), "an alert opened");
    let status = element(&b, "#status").await.text().await.unwrap();
    assert!(status.contains(name), "status: {status:?}");
}

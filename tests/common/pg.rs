//! The one place that decides whether a PostgreSQL test runs, and gives each
//! test its own schema so tests run in parallel without interfering.
//!
//! Without `DATABASE_URL` (or with the server unreachable) a test skips with a
//! note; under `CI=true` it fails instead, so CI never passes by skipping.

use keyward::store::postgres::PgStore;

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn skip_or_fail<T>(test: &str, why: &str) -> Option<T> {
    if ci() {
        panic!("{test}: {why}; CI=true requires PostgreSQL (run the tests with scripts/test.sh)");
    }
    eprintln!("note: skipping {test}: {why} (run scripts/test.sh to start a throwaway PostgreSQL)");
    None
}

/// `DATABASE_URL`, or `None` when the test should skip.
pub fn database_url(test: &str) -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => skip_or_fail(test, "DATABASE_URL is not set"),
    }
}

/// A schema name unique to this test run.
pub fn unique_schema(test: &str) -> String {
    let id = keyward::KeyId::generate();
    let suffix: String = id.as_str()[4..14].to_ascii_lowercase();
    let name: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    format!("kw_{name}_{suffix}")
}

/// A migrated store in a fresh schema, or `None` when the test should skip.
pub async fn store(test: &str) -> Option<(PgStore, String)> {
    let url = database_url(test)?;
    let schema = unique_schema(test);
    let store = PgStore::builder(&url)
        .schema(&schema)
        .build()
        .unwrap_or_else(|e| panic!("{test}: bad DATABASE_URL: {e}"));
    if let Err(err) = store.migrate().await {
        if err.is_unavailable() {
            return skip_or_fail(test, &format!("PostgreSQL is unreachable: {err}"));
        }
        panic!("{test}: migrate failed: {err}");
    }
    Some((store, schema))
}

/// Another store on the same schema (another "process").
pub fn store_on(url: &str, schema: &str) -> PgStore {
    PgStore::builder(url).schema(schema).build().unwrap()
}

/// The shell commands that stop and start the test server, or `None` when
/// the test should skip.
pub fn server_control(test: &str) -> Option<(String, String)> {
    match (
        std::env::var("KEYWARD_PG_STOP_CMD"),
        std::env::var("KEYWARD_PG_START_CMD"),
    ) {
        (Ok(stop), Ok(start)) if !stop.is_empty() && !start.is_empty() => Some((stop, start)),
        _ => skip_or_fail(
            test,
            "KEYWARD_PG_STOP_CMD / KEYWARD_PG_START_CMD are not set",
        ),
    }
}

/// Runs one of those commands with `sh -c`.
pub fn sh(command: &str) {
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .status()
        .expect("run sh");
    assert!(status.success(), "`{command}` failed: {status}");
}

//! The verify and tower-layer hot paths in a loop, for an instruction
//! profiler: instructions are repeatable on a busy machine, where times are
//! not.
//!
//! ```sh
//! cargo build --release --example hot_path
//! valgrind --tool=callgrind --toggle-collect='hot_path::verify_loop' \
//!     target/release/examples/hot_path verify sha256
//! valgrind --tool=callgrind --toggle-collect='hot_path::layer_loop' \
//!     target/release/examples/hot_path layer sha256
//! callgrind_annotate --inclusive=yes callgrind.out.<pid> | head -40
//! ```
//!
//! Arguments: `verify`, `layer` or `none` (the layer loop without the
//! layers, to subtract), then `sha256` or `hmac`; `KEYS` (default
//! 100,000) keys are issued, then `ITERATIONS` (default 10,000) requests run.

use std::convert::Infallible;
use std::hint::black_box;

use http::{HeaderValue, Request, Response, StatusCode};
use keyward::http::{AuthLayer, RequireScopesLayer};
use keyward::{
    KeyKind, Keyring, MemoryStore, NewKey, Pepper, ScopeCatalog, ScopeStatus, TokenHasher,
};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[inline(never)]
fn verify_loop(rt: &tokio::runtime::Runtime, keyring: &Keyring, token: &str, n: usize) {
    rt.block_on(async {
        for _ in 0..n {
            black_box(keyring.verify(black_box(token)).await.is_ok());
        }
    });
}

#[inline(never)]
fn layer_loop<S>(rt: &tokio::runtime::Runtime, service: &S, token: &HeaderValue, n: usize)
where
    S: Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone,
{
    rt.block_on(async {
        for _ in 0..n {
            let req = Request::get("/api/players")
                .header("x-api-key", token.clone())
                .body(String::new())
                .unwrap();
            let res = service.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map_or("verify", String::as_str);
    let hasher = match args.get(1).map_or("sha256", String::as_str) {
        "hmac" => TokenHasher::hmac(Pepper::new(1, vec![7; 32]).unwrap()),
        _ => TokenHasher::sha256(),
    };
    let keys = env_usize("KEYS", 100_000);
    let n = env_usize("ITERATIONS", 10_000);

    let catalog = ScopeCatalog::builder()
        .scope("read", "", ScopeStatus::Enforced)
        .build()
        .unwrap();
    let keyring = Keyring::builder()
        .store(MemoryStore::new())
        .kind(
            KeyKind::new("pk", catalog)
                .unwrap()
                .default_scopes(["read"])
                .unwrap(),
        )
        .hasher(hasher)
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let token = rt.block_on(async {
        let mut last = None;
        for i in 0..keys.max(1) {
            let issued = keyring
                .issue(NewKey::new("pk", &format!("t{}", i % 1000), "bench"))
                .await
                .unwrap();
            last = Some(issued.token);
        }
        last.unwrap()
    });

    let ok = service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let header = HeaderValue::from_str(token.expose_secret()).unwrap();
    match what {
        "layer" => {
            let service = ServiceBuilder::new()
                .layer(AuthLayer::new(keyring))
                .layer(RequireScopesLayer::all(["read"]).unwrap())
                .service(ok);
            layer_loop(&rt, &service, &header, n);
        }
        // The same requests without any layer: subtract from `layer`.
        "none" => layer_loop(&rt, &ok, &header, n),
        _ => verify_loop(&rt, &keyring, token.expose_secret(), n),
    }
    println!("{what}: {n} iterations over {keys} keys");
}

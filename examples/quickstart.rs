//! In memory: issue a PlayerOS `pk_` key and a PlayableLabs `pl_` token,
//! verify them, show an enforced and a "soon" scope decision, revoke one and
//! show the error.
//!
//! Run with `cargo run --example quickstart`.

use keyward::{
    Decision, Expiry, KeyKind, Keyring, MemoryStore, NewKey, Requirement, ScopeCatalog, ScopeStatus,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let player_os = ScopeCatalog::builder()
        .scope("read", "Read players and events", ScopeStatus::Enforced)
        .scope("write", "Create and change players", ScopeStatus::Enforced)
        .implies("write", "read")
        .build()?;
    let playable_labs = ScopeCatalog::builder()
        .scope("games:read", "List and read games", ScopeStatus::Soon)
        .scope(
            "versions:write",
            "Upload game versions",
            ScopeStatus::Enforced,
        )
        .scope("assets:write", "Upload assets", ScopeStatus::Enforced)
        .build()?;

    let keyring = Keyring::builder()
        .store(MemoryStore::new())
        .kind(KeyKind::new("pk", player_os)?.default_scopes(["read", "write"])?)
        .kind(KeyKind::new("pl", playable_labs)?)
        .build()?;

    // PlayerOS: a property-scoped key with the dashboard's default scopes.
    let pk = keyring
        .issue(NewKey::new("pk", "property_42", "Game backend"))
        .await?;
    println!(
        "issued {} ({}), scopes [{}], shown once: {}",
        pk.info.id(),
        pk.info.display_prefix(),
        pk.info.scopes(),
        pk.token.expose_secret()
    );

    // PlayableLabs: an organization token for CI, 90 days.
    let pl = keyring
        .issue(
            NewKey::new("pl", "org_7", "CI uploader")
                .scopes(["versions:write"])
                .expires(Expiry::Days90),
        )
        .await?;
    println!(
        "issued {} ({}), scopes [{}], expires {:?}",
        pl.info.id(),
        pl.info.display_prefix(),
        pl.info.scopes(),
        pl.info.expires_at()
    );

    let player = keyring.verify(pk.token.expose_secret()).await?;
    println!(
        "verified pk key {} for tenant {}",
        player.id(),
        player.tenant()
    );

    let ci = keyring.verify(pl.token.expose_secret()).await?;
    let upload = Requirement::all(["versions:write"])?;
    let assets = Requirement::all(["assets:write"])?;
    let list_games = Requirement::all(["games:read"])?;
    println!(
        "POST /versions (versions:write, enforced): {:?}",
        ci.check(&upload)
    );
    println!(
        "POST /assets   (assets:write, enforced):   {:?}",
        ci.check(&assets)
    );
    let soon = ci.check(&list_games);
    println!("GET /games     (games:read, soon):         {soon:?}");
    assert!(matches!(
        soon,
        Decision::NotEnforced {
            would_deny: true,
            ..
        }
    ));

    keyring.revoke(pl.info.id()).await?;
    match keyring.verify(pl.token.expose_secret()).await {
        Err(err) => println!("after revoke: {err}"),
        Ok(_) => unreachable!("a revoked token never verifies"),
    }
    Ok(())
}

//! Setup shared by the targets that drive async services: state built once
//! per process, beside the current-thread runtime that drives it.

use std::ops::Deref;
use std::sync::OnceLock;

use tokio::runtime::Runtime;

/// A target's state and its runtime; derefs to the state.
pub struct Fixture<T> {
    pub runtime: Runtime,
    state: T,
}

impl<T> Deref for Fixture<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.state
    }
}

/// The fixture in `cell`, built on first use by `setup` on a fresh runtime.
pub fn fixture<T: Send + Sync>(
    cell: &'static OnceLock<Fixture<T>>,
    setup: impl FnOnce(&Runtime) -> T,
) -> &'static Fixture<T> {
    cell.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let state = setup(&runtime);
        Fixture { runtime, state }
    })
}

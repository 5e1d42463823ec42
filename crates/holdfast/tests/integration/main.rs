//! The one integration-test binary: every test boots the real `holdfast` binary on a loopback
//! port and talks HTTP to it, on the embedded store and, when `TEST_DATABASE_URL` is
//! set, on PostgreSQL too.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

/// Runs each named `async fn(Backend)` of the enclosing module's parent as one test on every
/// backend this run covers.
macro_rules! on_all_backends {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                for b in backends() {
                    super::$name(b).await;
                }
            }
        )*
    };
}

mod access;
mod api;
mod backup;
mod browser;
mod cli;
mod compat;
mod contract;
mod crash;
mod export;
mod hardening;
mod harness;
mod lifecycle;
mod operations;
mod query;
mod retention;
mod secrets;
mod signin;
mod sso;
mod ui;

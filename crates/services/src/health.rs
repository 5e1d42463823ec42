//! Readiness: whether this replica can serve, check by check.
//!
//! `/readyz` answers 200 only when the store answers a read, the row writer commits, the KMS
//! wraps and unwraps a key, and the row index's in-memory tail is under
//! [`MAX_INDEX_LAG`] (a longer tail means catch-ups are failing). The KMS check calls the KMS,
//! so its result is kept for [`KMS_CHECK_EVERY`]; each check has [`CHECK_TIMEOUT`].

use crate::Services;
use holdfast_crypto::{DataKey, Kms};
use serde_json::{Value, json};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Versions in the index tail past which the server is not ready (catch-ups run every
/// 200,000).
pub const MAX_INDEX_LAG: usize = 1_000_000;
pub const KMS_CHECK_EVERY: Duration = Duration::from_secs(30);
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The last KMS check and its outcome.
#[derive(Default)]
pub struct KmsCheck(Mutex<Option<(Instant, Result<(), String>)>>);

impl std::fmt::Debug for KmsCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KmsCheck")
    }
}

async fn timed<F, T, E>(what: F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    match tokio::time::timeout(CHECK_TIMEOUT, what).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    }
}

impl Services {
    async fn kms_ready(&self) -> Result<(), String> {
        if let Ok(cached) = self.kms_check.0.lock()
            && let Some((at, result)) = cached.as_ref()
            && at.elapsed() < KMS_CHECK_EVERY
        {
            return result.clone();
        }
        let kms = self.vault.kms();
        let result = timed(async {
            let key = DataKey::generate()?;
            let wrapped = kms.wrap(&key, "holdfast-readiness").await?;
            kms.unwrap(&wrapped, "holdfast-readiness").await
        })
        .await;
        if let Ok(mut cached) = self.kms_check.0.lock() {
            *cached = Some((Instant::now(), result.clone()));
        }
        result
    }

    /// Every check by name, and whether all passed.
    pub async fn readiness(&self) -> (bool, Value) {
        let lag = self.store.index_lag();
        let checks = [
            ("store", timed(self.store.ping()).await),
            ("writer", timed(self.store.ping_writer()).await),
            ("kms", self.kms_ready().await),
            (
                "index",
                if lag <= MAX_INDEX_LAG {
                    Ok(())
                } else {
                    Err(format!(
                        "{lag} row versions are not yet indexed (at most {MAX_INDEX_LAG})"
                    ))
                },
            ),
        ];
        let ready = checks.iter().all(|(_, r)| r.is_ok());
        let mut out = serde_json::Map::new();
        for (name, result) in checks {
            out.insert(
                name.into(),
                match result {
                    Ok(()) => json!({"ok": true}),
                    Err(e) => json!({"ok": false, "error": e}),
                },
            );
        }
        (
            ready,
            json!({"status": if ready { "ready" } else { "not_ready" }, "checks": out,
                   "index_lag": lag}),
        )
    }
}

//! Rotating and retiring key-encryption keys (KEKs): the rules the operator's
//! `keys rotate-kek` and `keys retire-kek` follow.
//!
//! * Rotating makes a new KEK current (the local KMS makes one; a cloud KMS rotates on its
//!   own) and re-wraps under it every data key: the organizations' secret keys, the files in
//!   the data directory (`pepper.wrapped`, `storage.key`) and the keys of the exports kept in
//!   the exports folder.
//! * A KEK may be retired only when it is not current and nothing is wrapped by it any more;
//!   otherwise retiring is refused, naming what still uses it.

use crate::{Result, ServiceError, Services, keyfile};
use holdfast_crypto::{AnyKms, Kms};
use std::path::Path;

/// The context the API-key pepper is wrapped under, in `pepper.wrapped`.
pub const PEPPER_CONTEXT: &str = "holdfast-pepper";
/// The context the embedded store's key is wrapped under, in `storage.key`.
pub const STORAGE_CONTEXT: &str = "holdfast-storage";

/// The files of the data directory that hold wrapped keys, with their contexts.
pub const WRAPPED_FILES: [(&str, &str); 2] = [
    ("pepper.wrapped", PEPPER_CONTEXT),
    ("storage.key", STORAGE_CONTEXT),
];

fn crypto(e: holdfast_crypto::CryptoError) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

/// What a rotation did.
#[derive(Debug, Default)]
pub struct Rotation {
    /// The new KEK, when this server's KMS made one (the local KMS).
    pub new_kek: Option<String>,
    pub data_keys: usize,
    pub files: Vec<&'static str>,
    pub exports: usize,
}

impl Services {
    /// Makes a new KEK current (local KMS) and re-wraps every data key under the current one.
    pub async fn rotate_kek(&self, data_dir: &Path, exports_dir: &Path) -> Result<Rotation> {
        let mut done = Rotation::default();
        if let AnyKms::Local(local) = self.vault.kms() {
            done.new_kek = Some(local.rotate().map_err(crypto)?);
        }
        done.data_keys = self.vault.rewrap_all(&self.store).await?;
        let kms = self.vault.kms();
        for (file, context) in WRAPPED_FILES {
            if keyfile::rewrap(kms, &data_dir.join(file), context).await? {
                done.files.push(file);
            }
        }
        done.exports = crate::export::rewrap_exports(kms, exports_dir).await?;
        Ok(done)
    }

    /// Retires a KEK of the local KMS, if it is not current and wraps nothing any more; the
    /// retirement is audited before it is done.
    pub async fn retire_kek(&self, data_dir: &Path, exports_dir: &Path, id: &str) -> Result<()> {
        let refuse = |why: String| Err(ServiceError::Conflict(why));
        let AnyKms::Local(local) = self.vault.kms() else {
            return Err(ServiceError::bad(
                "only the local KMS keeps key-encryption keys in files",
            ));
        };
        if local.current_kek().map_err(crypto)? == id {
            return refuse(format!(
                "{id} is the current key-encryption key; `holdfast keys rotate-kek` makes a new one"
            ));
        }
        if !local.ids().map_err(crypto)?.iter().any(|k| k == id) {
            return Err(ServiceError::NotFound(format!(
                "key-encryption key {id} in {}",
                data_dir.join("kms").display()
            )));
        }
        for (file, _) in WRAPPED_FILES {
            if keyfile::kek_of(&data_dir.join(file))?.as_deref() == Some(id) {
                return refuse(format!(
                    "{file} is still wrapped by {id}; run `holdfast keys rotate-kek` first"
                ));
            }
        }
        let exports = crate::export::exports_wrapped_by(exports_dir, id)?;
        if !exports.is_empty() {
            return refuse(format!(
                "the keys of exports {} are still wrapped by {id}; run `holdfast keys rotate-kek` first",
                exports.join(", ")
            ));
        }
        if self.vault.kek_in_use(&self.store, id).await? {
            return refuse(format!(
                "data keys are still wrapped by {id}; run `holdfast keys rotate-kek` first"
            ));
        }
        self.record_operator_command("keys retire-kek", None, serde_json::json!({"kek_id": id}))
            .await?;
        local.retire(id).map_err(crypto)?;
        Ok(())
    }
}

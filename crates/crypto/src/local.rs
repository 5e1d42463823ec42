//! The local KEK provider: key files in a directory of the data dir.
//!
//! `DIR/<id>.key` holds one 32-byte KEK (mode 0600; refused if others can read it) and
//! `DIR/current` names the one new wraps use. Rotation adds a key file and moves `current`;
//! old key files stay so that what they wrapped still unwraps until it is re-wrapped.

use crate::aead::{self, DataKey};
use crate::kms::{Kms, Wrapped};
use crate::{CryptoError, Result};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const PREFIX: &str = "local:";

pub struct LocalKms {
    dir: PathBuf,
    keys: Mutex<HashMap<String, Arc<DataKey>>>,
}

fn file_err(path: &Path, why: impl std::fmt::Display) -> CryptoError {
    CryptoError::KeyFile {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes `bytes` to a new file with mode 0600, durably, then renames it into place.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| file_err(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| file_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))?;
    Ok(())
}

/// Reads a key file, refusing one that others can read.
pub fn read_private(path: &Path) -> Result<Vec<u8>> {
    let mut f = std::fs::File::open(path).map_err(|e| file_err(path, e))?;
    let mode = f
        .metadata()
        .map_err(|e| file_err(path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(file_err(
            path,
            format!(
                "readable by others (mode {:o}); run chmod 600",
                mode & 0o777
            ),
        ));
    }
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(|e| file_err(path, e))?;
    Ok(buf)
}

impl LocalKms {
    /// Opens the key directory, creating it and a first KEK when absent.
    pub fn open_or_create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| file_err(dir, e))?;
        let kms = Self {
            dir: dir.to_path_buf(),
            keys: Mutex::new(HashMap::new()),
        };
        if !dir.join("current").exists() {
            kms.rotate()?;
        }
        kms.current_kek()?;
        Ok(kms)
    }

    /// Creates a new KEK and makes it current; returns its id.
    pub fn rotate(&self) -> Result<String> {
        let id = format!("{PREFIX}{}", hex(&crate::random::<8>()?));
        let key = crate::random::<32>()?;
        write_private(&self.key_path(&id)?, &key)?;
        write_private(&self.dir.join("current"), id.as_bytes())?;
        Ok(id)
    }

    /// The ids of every KEK in the directory.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(|e| file_err(&self.dir, e))? {
            let name = e.map_err(|e| file_err(&self.dir, e))?.file_name();
            if let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".key")) {
                ids.push(format!("{PREFIX}{stem}"));
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Deletes a KEK that is not current. The caller checks that nothing it wrapped is left:
    /// whatever is would no longer unwrap.
    pub fn retire(&self, kek_id: &str) -> Result<()> {
        if self.current_kek()? == kek_id {
            return Err(CryptoError::Kms(format!(
                "{kek_id} is the current key-encryption key"
            )));
        }
        let path = self.key_path(kek_id)?;
        if !path.exists() {
            return Err(CryptoError::UnknownKek(kek_id.to_owned()));
        }
        std::fs::remove_file(&path).map_err(|e| file_err(&path, e))?;
        if let Ok(mut m) = self.keys.lock() {
            m.remove(kek_id);
        }
        Ok(())
    }

    fn key_path(&self, kek_id: &str) -> Result<PathBuf> {
        let name = kek_id
            .strip_prefix(PREFIX)
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| CryptoError::UnknownKek(kek_id.to_owned()))?;
        Ok(self.dir.join(format!("{name}.key")))
    }

    fn kek(&self, kek_id: &str) -> Result<Arc<DataKey>> {
        if let Some(k) = self.keys.lock().ok().and_then(|m| m.get(kek_id).cloned()) {
            return Ok(k);
        }
        let path = self.key_path(kek_id)?;
        if !path.exists() {
            return Err(CryptoError::UnknownKek(kek_id.to_owned()));
        }
        let bytes = zeroize::Zeroizing::new(read_private(&path)?);
        let key =
            Arc::new(DataKey::from_bytes(&bytes).map_err(|_| file_err(&path, "not 32 bytes"))?);
        if let Ok(mut m) = self.keys.lock() {
            m.insert(kek_id.to_owned(), key.clone());
        }
        Ok(key)
    }

    fn aad(context: &str) -> Vec<u8> {
        format!("holdfast-dek|v1|{context}").into_bytes()
    }
}

impl Kms for LocalKms {
    async fn wrap(&self, key: &DataKey, context: &str) -> Result<Wrapped> {
        let kek_id = self.current_kek()?;
        let kek = self.kek(&kek_id)?;
        Ok(Wrapped {
            blob: aead::seal(&kek, &Self::aad(context), key.expose())?,
            kek_id,
        })
    }

    async fn unwrap(&self, wrapped: &Wrapped, context: &str) -> Result<DataKey> {
        let kek = self.kek(&wrapped.kek_id)?;
        let bytes = aead::open(&kek, &Self::aad(context), &wrapped.blob)?;
        DataKey::from_bytes(&bytes)
    }

    fn current_kek(&self) -> Result<String> {
        let path = self.dir.join("current");
        let id = String::from_utf8(read_private(&path)?).map_err(|e| file_err(&path, e))?;
        let id = id.trim().to_owned();
        self.key_path(&id)?;
        Ok(id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wraps_bind_the_context_and_survive_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let kms = LocalKms::open_or_create(&dir.path().join("kms")).unwrap();
        let dek = DataKey::generate().unwrap();
        let w = kms.wrap(&dek, "org-a").await.unwrap();
        assert!(kms.unwrap(&w, "org-b").await.is_err());
        let first = kms.current_kek().unwrap();
        let second = kms.rotate().unwrap();
        assert_ne!(first, second);
        // Old wraps still open; new wraps use the new KEK.
        assert_eq!(
            kms.unwrap(&w, "org-a").await.unwrap().expose(),
            dek.expose()
        );
        assert_eq!(kms.wrap(&dek, "org-a").await.unwrap().kek_id, second);
        // Reopening reads the same keys; a key file readable by others is refused.
        let again = LocalKms::open_or_create(&dir.path().join("kms")).unwrap();
        assert_eq!(
            again.unwrap(&w, "org-a").await.unwrap().expose(),
            dek.expose()
        );
        let path = again.key_path(&first).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let fresh = LocalKms::open_or_create(&dir.path().join("kms")).unwrap();
        assert!(fresh.unwrap(&w, "org-a").await.is_err());
        assert!(matches!(
            fresh
                .unwrap(
                    &Wrapped {
                        kek_id: "local:../x".into(),
                        blob: vec![]
                    },
                    "o"
                )
                .await,
            Err(CryptoError::UnknownKek(_))
        ));
    }
}

//! Secret values on the wire. A [`SecretValue`] arrives in a request and cannot be
//! serialized or shown by `Debug`; a [`ShownOnce`] leaves in one reply (a new key) and is
//! redacted in `Debug`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};
use zeroize::Zeroizing;

/// A secret in a request (a provider key, an environment variable's value); its memory is
/// wiped when it is dropped.
#[derive(Clone, Default)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue([redacted])")
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Self(Zeroizing::new(s)))
    }
}

impl PartialSchema for SecretValue {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .write_only(true)
            .description(Some("A secret: accepted, never returned"))
            .into()
    }
}

impl ToSchema for SecretValue {}

/// A secret shown once, in the reply that creates it.
#[derive(Clone)]
pub struct ShownOnce(pub String);

impl std::fmt::Debug for ShownOnce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShownOnce([redacted])")
    }
}

impl Serialize for ShownOnce {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ShownOnce {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

impl PartialSchema for ShownOnce {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .read_only(true)
            .description(Some("A secret, in this reply only"))
            .into()
    }
}

impl ToSchema for ShownOnce {}

/// For a field where `null` (clear it) and absent (keep it) differ: absent is `None`, null
/// is `Some(None)`.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_show() {
        let v: SecretValue = serde_json::from_str("\"sk-123\"").unwrap_or_default();
        assert_eq!(v.expose(), "sk-123");
        assert!(!format!("{v:?}").contains("sk-123"));
        let once = ShownOnce("hf_abc".into());
        assert!(!format!("{once:?}").contains("hf_abc"));
        assert_eq!(
            serde_json::to_string(&once).ok().as_deref(),
            Some("\"hf_abc\"")
        );
    }
}

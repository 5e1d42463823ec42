//! Signing in through an organization's identity provider (OpenID Connect).

use crate::secret::SecretValue;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A known provider, which fills in what it always is (issuer, claims), or `custom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OidcPreset {
    /// Google: issuer `https://accounts.google.com`; no group claim.
    Google,
    /// Microsoft Entra ID: issuer `https://login.microsoftonline.com/{tenant id}/v2.0`
    /// (give `issuer`); Entra sends no `email_verified`, so it is not required.
    Microsoft,
    /// Okta: issuer `https://{your domain}` or an authorization server's; the `groups`
    /// scope and claim.
    Okta,
    /// Any OpenID provider: give `issuer`.
    Custom,
}

/// An OpenID Connect connection to create or replace. The server reads the issuer's
/// discovery document when it is saved (and refuses what it cannot use).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcConnectionRequest {
    /// Shown on the sign-in button; unique in the organization.
    pub name: String,
    pub preset: OidcPreset,
    /// The issuer URL (`https`, or `http` on a loopback address); Google's is filled in.
    pub issuer: Option<String>,
    pub client_id: String,
    /// Stored sealed under the organization's data key; never returned. On replace, omit it
    /// to keep the stored one.
    pub client_secret: Option<SecretValue>,
    /// Scopes besides `openid` (default: `email profile`, and `groups` for Okta).
    pub scopes: Option<Vec<String>>,
    /// Email domains whose people become members at their first sign-in; anyone else must
    /// be a member already (matched by email) or is refused.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// The ID-token claim holding the person's groups or roles (default `groups`).
    pub group_claim: Option<String>,
    /// A provider group (or role) → the Holdfast group it puts its members in. Applied at
    /// every sign-in: a person is put into, and taken out of, each group named here.
    #[serde(default)]
    pub group_mapping: BTreeMap<String, String>,
    /// Whether the ID token must say `email_verified: true` (default: true, except for
    /// Microsoft).
    pub require_verified_email: Option<bool>,
}

/// A connection as the API shows it (never the client secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OidcConnection {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub preset: OidcPreset,
    pub issuer: String,
    pub client_id: String,
    pub client_secret_set: bool,
    pub scopes: Vec<String>,
    pub allowed_domains: Vec<String>,
    pub group_claim: String,
    pub group_mapping: BTreeMap<String, String>,
    pub require_verified_email: bool,
    /// The redirect URI to register at the provider.
    pub redirect_uri: String,
    /// Where a person starts signing in with this connection.
    pub sign_in_url: String,
    pub created: String,
    pub updated: String,
}

//! Signing in through an organization's identity provider (OpenID Connect and SAML 2.0).

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

/// A SAML 2.0 connection to create or replace: the identity provider's metadata, given
/// inline or by URL (read once, when the connection is saved). The metadata must hold a
/// signing certificate: responses are verified with it and unsigned ones are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SamlConnectionRequest {
    /// Shown on the sign-in button; unique in the organization.
    pub name: String,
    /// The IdP's metadata XML (an `EntityDescriptor`); or give `idp_metadata_url`. On
    /// replace, give neither to keep the stored metadata.
    pub idp_metadata_xml: Option<String>,
    /// Where to read the IdP's metadata (`https`, or `http` on a loopback address).
    pub idp_metadata_url: Option<String>,
    /// Email domains whose people become members at their first sign-in; anyone else must
    /// be a member already (matched by email) or is refused.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// The attribute holding the email (`Name` or `FriendlyName`); default: the NameID when
    /// it is an email address, else `email`, `mail` or their standard URIs.
    pub email_attribute: Option<String>,
    /// The attribute holding the person's groups (default `groups`).
    pub group_attribute: Option<String>,
    /// A provider group → the Holdfast group it puts its members in, applied at every
    /// sign-in (into and out of each group named here).
    #[serde(default)]
    pub group_mapping: BTreeMap<String, String>,
}

/// A SAML connection as the API shows it, with what to register at the identity provider.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SamlConnection {
    pub id: String,
    pub org_id: String,
    pub name: String,
    /// The IdP's entity id and single sign-on URL (HTTP-Redirect binding), from its metadata.
    pub idp_entity_id: String,
    pub idp_sso_url: String,
    pub idp_metadata_url: Option<String>,
    /// SHA-256 fingerprints (hex) of the IdP's signing certificates.
    pub idp_certificate_sha256: Vec<String>,
    pub allowed_domains: Vec<String>,
    pub email_attribute: Option<String>,
    pub group_attribute: String,
    pub group_mapping: BTreeMap<String, String>,
    /// This service provider's entity id, which is also where its metadata is served.
    pub sp_entity_id: String,
    /// The assertion consumer service (HTTP-POST binding) to register at the IdP.
    pub acs_url: String,
    /// Where a person starts signing in with this connection.
    pub sign_in_url: String,
    pub created: String,
    pub updated: String,
}

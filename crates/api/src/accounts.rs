//! Signing in: local passwords, browser sessions.

use crate::secret::{SecretValue, ShownOnce};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Signs in with an email and a password; answers with the session cookie (`HttpOnly`,
/// `SameSite=Lax`; `__Host-` and `Secure` over TLS) and the CSRF token that every
/// state-changing request made with the cookie must send as `X-CSRF-Token`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordSignIn {
    pub email: String,
    pub password: SecretValue,
    /// The organization's name or id; needed when the person belongs to several.
    pub org: Option<String>,
}

/// A session just made.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedIn {
    pub session_id: String,
    pub user_id: String,
    pub org_id: String,
    /// Shown once: send it as `X-CSRF-Token` with every request that changes something.
    pub csrf_token: ShownOnce,
    /// When the session ends whatever the activity.
    pub expires: String,
}

/// Sets a password through a one-time invite or reset link.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SetPasswordRequest {
    /// The link's token (the part after `#token=`).
    pub token: SecretValue,
    /// 12 to 256 characters.
    pub password: SecretValue,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Done {
    pub ok: bool,
}

/// A browser session (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    /// How the person signed in: `password`, `oidc:<provider>` or `saml`.
    pub method: String,
    pub created: String,
    pub last_seen: String,
    pub expires: String,
    pub from_addr: Option<String>,
    pub user_agent: Option<String>,
    /// The session this request was made with.
    pub current: bool,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct SessionListQuery {
    /// Another member's sessions (for those who may remove members: Owners).
    pub user_id: Option<String>,
}

/// How an organization's members may sign in.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SignInSettings {
    /// Whether they may sign in with a password (true unless an Owner turned it off, say
    /// when everyone signs in through the identity provider). Turning it off ends the
    /// sessions that were signed in with a password.
    pub password_login: bool,
}

/// Asks for a one-time link for a member to set a password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordLinkRequest {
    pub user_id: String,
    /// A reset link for a member who has a password (24 hours) instead of an invite (7 days).
    #[serde(default)]
    pub reset: bool,
}

/// A one-time link: give it to the member over a channel you trust.
#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordLink {
    /// Shown once: `<public_url>/auth/set-password#token=…`.
    pub link: ShownOnce,
    pub expires: String,
}

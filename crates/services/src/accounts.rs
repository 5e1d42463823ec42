//! Local accounts and browser sessions.
//!
//! Guarantees:
//! * A password is set only through a one-time link (an invite or a reset) that an operator
//!   or an Owner made; it is stored as an argon2id hash (19 MiB, 2 passes, 1 lane: OWASP's
//!   parameters). Links and sessions are stored only as SHA-256 hashes of 256-bit secrets.
//! * Signing in is throttled per account (5 failures in 15 minutes) and per client address
//!   (50), in the store, so that every replica counts the same failures; a throttled attempt
//!   is refused before the password is checked. An unknown email costs the same argon2id
//!   work as a wrong password.
//! * Every sign-in makes a new session (a session id chosen before it, by anyone, is never
//!   used); a session ends at its idle expiry, its absolute expiry, sign-out, revocation, a
//!   password change, or when its user leaves the organization, and each is checked on every
//!   request against the writer (a revocation takes effect at once on every replica).
//! * A session acts as its user, with every project the user may reach and no more: the
//!   same policy and passes as an API key of that user.

use crate::{Result, ServiceError, Services, random};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use holdfast_api::accounts::SignInSettings;
use holdfast_core::authz::{Capability, KeyScope, Kind, Permission, Principal, SystemPass, Target};
use holdfast_core::clock::format_timestamp;
use holdfast_store::{AccountLink, NewAuditEntry, SessionRecord};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::Digest;

/// Longest email address a sign-in takes (RFC 5321's path limit is 256).
pub const MAX_EMAIL_BYTES: usize = 320;
/// Shortest and longest password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_CHARS: usize = 256;
/// Failed sign-ins within [`FAILURE_WINDOW_SECS`] after which an account, or a client
/// address, is refused until the window has passed.
pub const ACCOUNT_FAILURES: i64 = 5;
pub const ADDRESS_FAILURES: i64 = 50;
pub const FAILURE_WINDOW_SECS: i64 = 15 * 60;
/// How long an invite link, and a reset link, can be used.
pub const INVITE_TTL_SECS: i64 = 7 * 24 * 3600;
pub const RESET_TTL_SECS: i64 = 24 * 3600;
/// A session's last use is written at most this often.
const TOUCH_EVERY_SECS: i64 = 60;

fn why() -> SystemPass {
    SystemPass::new("signing in and browser sessions")
}

fn sha256_hex(s: &str) -> String {
    random::hex(&sha2::Sha256::digest(s.as_bytes()))
}

fn ct_eq(a: &str, b: &str) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()))
}

/// A one-time link's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Invite,
    Reset,
}

impl LinkKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Invite => "invite",
            Self::Reset => "reset",
        }
    }
}

/// A session just made: the cookie's secret and the CSRF token, each shown once.
pub struct NewSession {
    pub token: SecretString,
    pub csrf_token: String,
    pub record: SessionRecord,
}

/// What a sign-in attempt is refused with: the same message whatever was wrong.
const BAD_LOGIN: ServiceError = ServiceError::Unauthenticated("wrong email or password");

/// Argon2id runs at most this many at once (each holds 19 MiB), so that a flood of sign-in
/// attempts costs a bounded amount of memory; others wait up to [`ARGON2_WAIT`].
const ARGON2_AT_ONCE: usize = 4;
const ARGON2_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
static ARGON2: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(ARGON2_AT_ONCE);

/// Runs password hashing work on the blocking pool, at most [`ARGON2_AT_ONCE`] at a time;
/// 503 when no turn comes within [`ARGON2_WAIT`].
async fn argon2_work<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let _turn = tokio::time::timeout(ARGON2_WAIT, ARGON2.acquire())
        .await
        .map_err(|_| ServiceError::Busy("too many sign-ins at once; try again shortly".into()))?
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))
}

fn hash_password(password: &str) -> Result<String> {
    let salt = random::bytes::<16>()?;
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Internal(format!("hashing a password: {e}")))
}

fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A valid argon2id hash of a password nobody has, verified against when the email is
/// unknown so that the answer takes as long.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let salt = [7u8; 16];
        Argon2::default()
            .hash_password_with_salt(b"no password is this one", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

pub fn check_password(password: &str) -> Result<()> {
    let n = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n) {
        return Err(ServiceError::field(
            "password",
            format!("a password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

impl Services {
    pub(crate) fn after(&self, secs: i64) -> String {
        format_timestamp(self.clock.now() + time::Duration::seconds(secs))
    }

    /// Makes a one-time link for `user_id` of `org_id` to set a password; returns its token
    /// (`<id>.<secret>`), shown once.
    pub async fn make_account_link(
        &self,
        org_id: &str,
        user_id: &str,
        kind: LinkKind,
    ) -> Result<(SecretString, String)> {
        let id = random::hex(&random::bytes::<8>()?);
        let secret = random::hex(&random::bytes::<32>()?);
        let ttl = match kind {
            LinkKind::Invite => INVITE_TTL_SECS,
            LinkKind::Reset => RESET_TTL_SECS,
        };
        let link = AccountLink {
            id: id.clone(),
            secret_hash: sha256_hex(&secret),
            kind: kind.as_str().into(),
            user_id: user_id.into(),
            org_id: org_id.into(),
            created: self.now(),
            expires: self.after(ttl),
        };
        self.store.insert_account_link(&why(), &link).await?;
        self.audit
            .record_durable(NewAuditEntry {
                at: self.now(),
                org_id: Some(org_id.into()),
                actor_id: None,
                key_id: None,
                action: "password_link".into(),
                object_type: Some("user".into()),
                object_id: Some(user_id.into()),
                detail: json!({"kind": kind.as_str(), "link_id": id, "expires": link.expires}),
            })
            .await?;
        Ok((SecretString::from(format!("{id}.{secret}")), link.expires))
    }

    /// `POST /v1/organization/{id}/password_link`: an Owner's one-time link for a member to
    /// set a password (an invite when they have none, a reset when `reset` and they have
    /// one). A link hands over the member's access, so the caller must be able to remove
    /// members, and to place members in every group the member is in (see `membership`);
    /// a member with grants of their own is refused (an operator can still make one).
    pub async fn password_link_for(
        &self,
        principal: &Principal,
        user_id: &str,
        reset: bool,
    ) -> Result<(String, String)> {
        let pass = self
            .org_grant(principal, Permission::Delete, Kind::OrgMember)
            .await?;
        let org = &principal.org_id;
        if !self
            .store
            .list_users(&pass)
            .await?
            .iter()
            .any(|u| u.id == user_id && u.kind == "user")
        {
            return Err(ServiceError::field(
                "user_id",
                format!("no person {user_id:?} in this organization"),
            ));
        }
        let groups: Vec<String> = self
            .store
            .list_entities(&pass, holdfast_store::Entity::Group)
            .await?
            .into_iter()
            .filter(|g| g.members.iter().any(|m| m.as_str() == Some(user_id)))
            .map(|g| g.id)
            .collect();
        self.may_place_in_groups(principal, &groups).await?;
        if self.store.direct_grant_count(&why(), org, user_id).await? > 0 {
            return Err(ServiceError::Forbidden(
                "this member has grants of their own, which a password link would hand over; \
                 an operator can make one with `holdfast user invite --reset`"
                    .into(),
            ));
        }
        let has_password = self.store.password_hash(&why(), user_id).await?.is_some();
        let kind = match (has_password, reset) {
            (false, false) => LinkKind::Invite,
            (true, true) => LinkKind::Reset,
            (true, false) => {
                return Err(ServiceError::Conflict(
                    "this member has a password; ask for a reset link (`reset: true`)".into(),
                ));
            }
            (false, true) => {
                return Err(ServiceError::Conflict(
                    "this member has no password to reset; ask for an invite link".into(),
                ));
            }
        };
        principal
            .trail
            .change(json!({"password_link": {"user_id": user_id, "kind": kind.as_str()}}));
        let (token, expires) = self.make_account_link(org, user_id, kind).await?;
        Ok((token.expose_secret().to_owned(), expires))
    }

    /// `POST /auth/password`: sets a password through a link, once; ends the user's
    /// sessions. A link that is unknown, used or expired is one 400.
    pub async fn set_password(
        &self,
        token: &str,
        password: &str,
        from: Option<&str>,
    ) -> Result<()> {
        check_password(password)?;
        let bad = || {
            ServiceError::field(
                "token",
                "this link is not valid (used, expired or mistyped)",
            )
        };
        let (id, secret) = token.split_once('.').ok_or_else(bad)?;
        if id.len() != 16 || secret.len() != 64 {
            return Err(bad());
        }
        let link = self
            .store
            .find_account_link(&why(), id, &self.now())
            .await?
            .filter(|l| ct_eq(&l.secret_hash, &sha256_hex(secret)))
            .ok_or_else(bad)?;
        let password = password.to_owned();
        let hash = argon2_work(move || hash_password(&password)).await??;
        if !self
            .store
            .use_account_link(&why(), &link, &hash, &self.now())
            .await?
        {
            return Err(bad());
        }
        self.audit
            .record_durable(NewAuditEntry {
                at: self.now(),
                org_id: Some(link.org_id.clone()),
                actor_id: Some(link.user_id.clone()),
                key_id: None,
                action: "password_set".into(),
                object_type: Some("user".into()),
                object_id: Some(link.user_id.clone()),
                detail: json!({"kind": link.kind, "link_id": link.id, "from": from}),
            })
            .await
    }

    /// `POST /auth/login` with a password: a new session, or one refusal for any wrong
    /// email, password or organization; 429 while the account or address is throttled.
    pub async fn password_login(
        &self,
        email: &str,
        password: &str,
        org: Option<&str>,
        from: Option<&str>,
        user_agent: Option<&str>,
    ) -> Result<NewSession> {
        // Bounded before anything is looked up or written (it goes into the audit log).
        if email.len() > MAX_EMAIL_BYTES {
            return Err(ServiceError::field(
                "email",
                format!("an email address is at most {MAX_EMAIL_BYTES} bytes"),
            ));
        }
        let email = email.trim().to_lowercase();
        let account = format!("account:{email}");
        let address = format!("address:{}", from.unwrap_or("-"));
        let since = self.after(-FAILURE_WINDOW_SECS);
        let counts = self
            .store
            .login_failures(&why(), &[&account, &address], &since)
            .await?;
        if counts.first().is_some_and(|n| *n >= ACCOUNT_FAILURES)
            || counts.get(1).is_some_and(|n| *n >= ADDRESS_FAILURES)
        {
            // Not audited one by one (the failures that led here were): a throttled client
            // could otherwise write to the audit log as fast as it can send.
            tracing::warn!(from, "a sign-in refused: too many failures");
            return Err(ServiceError::SignInThrottled(
                format!(
                    "too many failed sign-ins; try again in {} minutes",
                    FAILURE_WINDOW_SECS / 60
                ),
                FAILURE_WINDOW_SECS.unsigned_abs(),
            ));
        }
        let memberships = self.store.memberships_by_email(&why(), &email).await?;
        let member = match org {
            Some(name) => memberships.iter().find(|m| m.1 == name || m.0 == name),
            None if memberships.len() == 1 => memberships.first(),
            None => None,
        };
        let stored = match member {
            Some(m) => self.store.password_hash(&why(), &m.2).await?,
            None => None,
        };
        let ok = {
            let password = password.to_owned();
            let hash = stored.clone();
            // Longer than any password that can be set: no match, and no hashing of megabytes.
            let password: String = password.chars().take(MAX_PASSWORD_CHARS + 1).collect();
            argon2_work(move || {
                let known = hash.is_some();
                let verified = verify_password(&password, hash.as_deref().unwrap_or(decoy_hash()));
                known && verified
            })
            .await?
        };
        let Some((org_id, _, user_id)) = member.filter(|_| ok) else {
            self.store
                .record_login_failure(&why(), &[&account, &address], &self.now(), &since)
                .await?;
            let reason = match (member, stored) {
                (None, _) if memberships.len() > 1 && org.is_none() => "organization not named",
                (None, _) => "no such member",
                (Some(_), None) => "no password set",
                (Some(_), Some(_)) => "wrong password",
            };
            self.audit_login(
                member.map(|m| m.0.as_str()),
                member.map(|m| m.2.as_str()),
                "login_failure",
                json!({"method": "password", "email": email, "from": from,
                "reason": reason}),
            )
            .await;
            return Err(BAD_LOGIN);
        };
        if !self.store.password_login_allowed(&why(), org_id).await? {
            self.audit_login(
                Some(org_id),
                Some(user_id),
                "login_failure",
                json!({
                "method": "password", "email": email, "from": from,
                "reason": "passwords are off for the organization"}),
            )
            .await;
            return Err(ServiceError::Forbidden(
                "this organization signs in through its identity provider, not with passwords"
                    .into(),
            ));
        }
        self.store.clear_login_failures(&why(), &account).await?;
        let made = self
            .new_session(org_id, user_id, "password", from, user_agent)
            .await?;
        self.audit_login(
            Some(org_id),
            Some(user_id),
            "login",
            json!({"method": "password",
            "session_id": made.record.id, "from": from}),
        )
        .await;
        Ok(made)
    }

    pub(crate) async fn audit_login(
        &self,
        org_id: Option<&str>,
        user_id: Option<&str>,
        action: &str,
        detail: serde_json::Value,
    ) {
        self.audit
            .record(NewAuditEntry {
                at: self.now(),
                org_id: org_id.map(str::to_owned),
                actor_id: user_id.map(str::to_owned),
                key_id: None,
                action: action.into(),
                object_type: None,
                object_id: None,
                detail,
            })
            .await;
    }

    pub(crate) async fn new_session(
        &self,
        org_id: &str,
        user_id: &str,
        method: &str,
        from: Option<&str>,
        user_agent: Option<&str>,
    ) -> Result<NewSession> {
        let token = random::hex(&random::bytes::<32>()?);
        let id = random::uuid()?;
        let csrf_token = self.session_csrf_token(&id)?;
        let max = i64::try_from(self.limits.session_max.as_secs()).unwrap_or(i64::MAX);
        let record = SessionRecord {
            id,
            csrf_hash: sha256_hex(&csrf_token),
            user_id: user_id.into(),
            org_id: org_id.into(),
            method: method.into(),
            created: self.now(),
            last_seen: self.now(),
            expires: self.after(max),
            revoked: None,
            from_addr: from.map(str::to_owned),
            user_agent: user_agent.map(|u| u.chars().take(256).collect()),
        };
        self.store
            .insert_session(&why(), &record, &sha256_hex(&token))
            .await?;
        Ok(NewSession {
            token: SecretString::from(token),
            csrf_token,
            record,
        })
    }

    /// The principal of a session cookie's value, if the session is live; it is marked as
    /// used (at most once a minute).
    pub async fn session_principal(&self, token: &str) -> Result<(Principal, SessionRecord)> {
        const GONE: ServiceError =
            ServiceError::Unauthenticated("the session has ended; sign in again");
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(GONE);
        }
        let s = self
            .store
            .find_session(&why(), &sha256_hex(token))
            .await?
            .ok_or(GONE)?;
        let now = self.clock.now();
        let idle = time::Duration::try_from(self.limits.session_idle)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let parse = |t: &str| holdfast_core::clock::parse_timestamp(t).ok_or(GONE);
        if s.revoked.is_some() || parse(&s.expires)? <= now || parse(&s.last_seen)? + idle <= now {
            return Err(GONE);
        }
        if (now - parse(&s.last_seen)?).whole_seconds() >= TOUCH_EVERY_SECS {
            self.store.touch_session(&why(), &s.id, &self.now()).await?;
        }
        let principal = Principal {
            user_id: s.user_id.clone(),
            org_id: s.org_id.clone(),
            key_id: format!("session:{}", s.id),
            scope: KeyScope {
                projects: None,
                capability: Capability::Full,
            },
            expires_at: None,
            trail: Default::default(),
        };
        Ok((principal, s))
    }

    /// A session's CSRF token: an HMAC of its id under a key derived from the server's
    /// pepper, so that pages can put it in their forms without it being stored.
    pub fn session_csrf_token(&self, session_id: &str) -> Result<String> {
        use hmac::{KeyInit, Mac};
        let key = self.keys.derive("session csrf")?;
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.expose_secret())
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        mac.update(session_id.as_bytes());
        Ok(random::hex(&mac.finalize().into_bytes()))
    }

    /// Whether `presented` is the session's CSRF token.
    pub fn csrf_matches(session: &SessionRecord, presented: &str) -> bool {
        ct_eq(&session.csrf_hash, &sha256_hex(presented))
    }

    /// `GET /v1/session`: the caller's sessions that have not ended, or another member's
    /// for a caller who may remove members (Owners; 403 for anyone else).
    pub async fn list_sessions(
        &self,
        principal: &Principal,
        user_id: Option<&str>,
    ) -> Result<Vec<SessionRecord>> {
        let user = user_id.unwrap_or(&principal.user_id);
        if user != principal.user_id && !self.may_end_any_session(principal).await? {
            return Err(ServiceError::Forbidden(
                "listing another member's sessions needs delete on organization members".into(),
            ));
        }
        Ok(self
            .store
            .list_sessions(&why(), &principal.org_id, user, &self.now())
            .await?)
    }

    /// `GET /v1/organization/{id}/sign_in` (any member).
    pub async fn sign_in_settings(&self, principal: &Principal) -> Result<SignInSettings> {
        self.policy(principal).await?;
        Ok(SignInSettings {
            password_login: self
                .store
                .password_login_allowed(&why(), &principal.org_id)
                .await?,
        })
    }

    /// `PUT /v1/organization/{id}/sign_in` (`update` on the organization: Owners).
    pub async fn set_sign_in_settings(
        &self,
        principal: &Principal,
        body: &SignInSettings,
    ) -> Result<SignInSettings> {
        let pass = self
            .org_grant(principal, Permission::Update, Kind::Organization)
            .await?;
        let before = self.sign_in_settings(principal).await?.password_login;
        let ended = self
            .store
            .set_password_login(&pass, body.password_login, &self.now())
            .await?;
        principal.trail.change(json!({"sign_in": {
            "password_login": {"before": before, "after": body.password_login},
            "sessions_ended": ended}}));
        Ok(SignInSettings {
            password_login: body.password_login,
        })
    }

    /// Records a sign-out, or the end of a session, made from a page (the API's are
    /// recorded with their request).
    pub async fn audit_session_end(&self, principal: &Principal, id: &str, own: bool) {
        self.audit_login(
            Some(&principal.org_id),
            Some(&principal.user_id),
            if own { "logout" } else { "session_revoke" },
            json!({"session_id": id, "by": principal.key_id}),
        )
        .await;
    }

    /// Whether the caller may see and end anyone's sessions: those who may remove members.
    async fn may_end_any_session(&self, principal: &Principal) -> Result<bool> {
        let policy = self.policy(principal).await?;
        Ok(principal.may(&policy, Permission::Delete, &Target::org(Kind::OrgMember)))
    }

    /// `DELETE /v1/session/{id}` (and sign-out): ends one of the caller's sessions, or, for
    /// a caller who may remove members (Owners), anyone's in the organization.
    pub async fn revoke_session(&self, principal: &Principal, id: &str) -> Result<()> {
        let anyone = self.may_end_any_session(principal).await?;
        let only = (!anyone).then_some(principal.user_id.as_str());
        if !self
            .store
            .revoke_session(&why(), &principal.org_id, only, id, &self.now())
            .await?
        {
            return Err(ServiceError::NotFound(format!("session {id:?}")));
        }
        principal
            .trail
            .change(json!({"revoked": "session", "id": id}));
        Ok(())
    }
}

/// The secret of a new session, for the cookie.
pub fn cookie_value(s: &NewSession) -> &str {
    s.token.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_as_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert_ne!(
            hash,
            hash_password("correct horse battery").unwrap(),
            "salted"
        );
        assert!(!verify_password("", decoy_hash()));
        assert!(!verify_password("anything", "not a hash"));
    }

    /// However many sign-ins arrive at once, at most `ARGON2_AT_ONCE` hash at a time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn argon2_work_is_bounded() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        static NOW: AtomicUsize = AtomicUsize::new(0);
        static MOST: AtomicUsize = AtomicUsize::new(0);
        let tasks: Vec<_> = (0..24)
            .map(|_| {
                tokio::spawn(argon2_work(|| {
                    let n = NOW.fetch_add(1, SeqCst) + 1;
                    MOST.fetch_max(n, SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    NOW.fetch_sub(1, SeqCst);
                }))
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let most = MOST.load(SeqCst);
        assert!((2..=ARGON2_AT_ONCE).contains(&most), "{most}");
    }

    #[test]
    fn password_lengths_are_checked() {
        assert!(check_password(&"x".repeat(MIN_PASSWORD_CHARS)).is_ok());
        assert!(check_password(&"é".repeat(MAX_PASSWORD_CHARS)).is_ok());
        for bad in [
            "x".repeat(MIN_PASSWORD_CHARS - 1),
            "x".repeat(MAX_PASSWORD_CHARS + 1),
        ] {
            match check_password(&bad) {
                Err(ServiceError::InvalidField { field, .. }) => assert_eq!(field, "password"),
                other => panic!("{other:?}"),
            }
        }
    }
}

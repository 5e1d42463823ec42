//! Signing in through an organization's OpenID Connect provider (the relying party).
//!
//! Guarantees:
//! * Only the authorization code flow, with PKCE (S256), a `state` bound to the browser that
//!   started the sign-in (a cookie whose hash is stored with it) and a `nonce`; each sign-in
//!   in flight is used at most once and for at most ten minutes.
//! * The ID token is verified against the provider's JWKS (fetched again when a token names
//!   a key not in it, at most every few seconds), with an algorithm from a fixed list of
//!   asymmetric ones (never `none`, never HMAC), and `iss`, `aud`, `azp`, `exp`, `iat`,
//!   `nbf` and `nonce` checked with one minute of clock skew.
//! * A provider's subject is linked to one member at its first sign-in and followed after
//!   that. A person who is not a member becomes one only when their verified email's domain
//!   is one the connection allows; the group mapping is applied at every sign-in.
//! * The client secret is sealed under the organization's data key and never returned.
//! * Every answer from a provider is bounded (256 KiB, 10 s) and no redirect is followed.

use crate::accounts::NewSession;
use crate::{Result, ServiceError, Services, random};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use holdfast_api::sso::{OidcConnection, OidcConnectionRequest, OidcPreset};
use holdfast_core::authz::{Kind, Permission, Principal, SystemPass, system_org_lookup};
use holdfast_store::{Entity, ProviderMember, SsoConnectionRecord, SsoLoginRecord, UserInfo};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a sign-in started at the provider may take to come back.
pub const LOGIN_TTL_SECS: i64 = 600;
/// Sign-ins in flight at once, over all connections: each is a row until it is used or
/// expires, and starting one needs no credential.
pub const MAX_SIGN_INS_IN_FLIGHT: i64 = 10_000;
/// Clock skew allowed between the provider and this server.
pub const LEEWAY_SECS: u64 = 60;
/// An ID token issued longer ago than this (plus the skew) is refused.
const MAX_TOKEN_AGE_SECS: i64 = 600;
/// The largest answer read from a provider.
const MAX_FETCH_BYTES: usize = 256 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Discovery documents are read again after this long.
const DISCOVERY_TTL: Duration = Duration::from_secs(15 * 60);
/// A token naming a key the cached JWKS lacks fetches it again, at most this often.
const JWKS_REFETCH_AFTER: Duration = Duration::from_secs(5);
/// The JWKS is read again after this long in any case.
const JWKS_TTL: Duration = Duration::from_secs(60 * 60);
/// Bounds on a connection's settings.
const MAX_NAME_CHARS: usize = 100;
const MAX_URL_BYTES: usize = 2048;
const MAX_LIST: usize = 100;
const MAX_ITEM_BYTES: usize = 256;
/// Groups read from one token's claim.
pub(crate) const MAX_TOKEN_GROUPS: usize = 1000;
/// The session method, and the protocol column, of each kind of connection.
pub(crate) const OIDC: &str = "oidc";

/// The signature algorithms an ID token may use: asymmetric only.
const ALLOWED_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

pub(crate) fn why() -> SystemPass {
    SystemPass::new("signing in and browser sessions")
}

pub(crate) fn sha256_hex(s: &str) -> String {
    random::hex(&sha2::Sha256::digest(s.as_bytes()))
}

/// A connection's settings as stored (the secret is stored apart, sealed).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Config {
    preset: OidcPreset,
    issuer: String,
    client_id: String,
    scopes: Vec<String>,
    allowed_domains: Vec<String>,
    group_claim: String,
    group_mapping: BTreeMap<String, String>,
    require_verified_email: bool,
}

/// What a provider's discovery document says that we use.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
}

/// Where a browser goes to sign in, and the cookie that binds the sign-in to it.
pub struct OidcStart {
    pub authorize_url: String,
    pub browser_secret: String,
}

/// What came back to the callback: the query's `code`, `state` and `error`, and the
/// secret of the cookie that binds a sign-in to the browser that started it.
#[derive(Clone, Copy)]
pub struct OidcCallback<'a> {
    pub code: Option<&'a str>,
    pub state: &'a str,
    pub error: Option<&'a str>,
    pub browser_secret: Option<&'a str>,
    /// Whether a refusal is written to the audit log (the caller's rate limit per client
    /// address allows it); it is logged either way.
    pub audit_refusal: bool,
}

/// What an organization's sign-in page offers.
pub struct SignInOptions {
    pub org_name: String,
    pub password: bool,
    /// (where its sign-in starts, name) of each identity provider.
    pub providers: Vec<(String, String)>,
}

/// Why a sign-in through a provider was refused; the person sees one message, the audit
/// log and the server log see the reason.
#[derive(Debug)]
pub(crate) struct Refusal(pub(crate) String);

impl<E: std::fmt::Display> From<E> for Refusal {
    fn from(e: E) -> Self {
        Self(e.to_string())
    }
}

/// Every refused sign-in through a provider: one message, whatever the reason.
pub(crate) const REFUSED: ServiceError =
    ServiceError::Unauthenticated("signing in through the identity provider failed");

/// What an identity provider asserts about a person, once verified.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Asserted {
    /// The provider's name for the person (`sub`, or the SAML NameID).
    pub subject: String,
    /// Lower case.
    pub email: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub groups: Vec<String>,
}

/// Who may come in through a connection, and into which groups.
pub(crate) struct Admission<'a> {
    pub allowed_domains: &'a [String],
    pub group_mapping: &'a BTreeMap<String, String>,
}

/// Provider documents and keys, cached, and the client that fetches them.
pub struct OidcClient {
    pub(crate) http: reqwest::Client,
    discovery: Mutex<HashMap<String, (Instant, Arc<Discovery>)>>,
    jwks: Mutex<HashMap<String, (Instant, Arc<JwkSet>)>>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OidcClient { .. }")
    }
}

impl Default for OidcClient {
    fn default() -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            http,
            discovery: Mutex::default(),
            jwks: Mutex::default(),
        }
    }
}

/// Whether a provider URL may be used: `https`, or `http` to a loopback address (a provider
/// on the same machine, as in tests).
pub(crate) fn check_provider_url(field: &str, url: &str) -> Result<()> {
    let bad = |why: &str| ServiceError::field(field, format!("{field} {why}: {url:?}"));
    if url.len() > MAX_URL_BYTES {
        return Err(bad("is too long"));
    }
    let rest = if let Some(r) = url.strip_prefix("https://") {
        r
    } else if let Some(r) = url.strip_prefix("http://") {
        let host = r.split(['/', '?', '#']).next().unwrap_or_default();
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
            return Err(bad("must be https (http only to a loopback address)"));
        }
        r
    } else {
        return Err(bad("must be an https URL"));
    };
    if rest.is_empty()
        || rest.starts_with('/')
        || rest.contains(['#', ' ', '@', '\\'])
        || rest.chars().any(char::is_control)
    {
        return Err(bad("is not a usable URL"));
    }
    Ok(())
}

impl OidcClient {
    /// GETs a JSON document from a provider, bounded.
    async fn fetch_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> std::result::Result<T, String> {
        let resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("fetching {url}: {e}"))?;
        read_json(resp, url).await
    }

    async fn discover(
        &self,
        issuer: &str,
        fresh: bool,
    ) -> std::result::Result<Arc<Discovery>, String> {
        if !fresh
            && let Ok(cache) = self.discovery.lock()
            && let Some((at, d)) = cache.get(issuer)
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(d.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let d: Discovery = self.fetch_json(&url).await?;
        if d.issuer != issuer {
            return Err(format!(
                "the discovery document names the issuer {:?}, not {issuer:?}",
                d.issuer
            ));
        }
        for (name, url) in [
            ("authorization_endpoint", &d.authorization_endpoint),
            ("token_endpoint", &d.token_endpoint),
            ("jwks_uri", &d.jwks_uri),
        ] {
            check_provider_url(name, url).map_err(|e| e.to_string())?;
        }
        if let Some(methods) = &d.code_challenge_methods_supported
            && !methods.iter().any(|m| m == "S256")
        {
            return Err("the provider does not support PKCE with S256".into());
        }
        let d = Arc::new(d);
        if let Ok(mut cache) = self.discovery.lock() {
            cache.insert(issuer.to_owned(), (Instant::now(), d.clone()));
        }
        Ok(d)
    }

    /// The key a token names: from the cached JWKS, or from a fresh copy when it is not
    /// there (key rotation) and the cached copy is not very new.
    async fn key_for(&self, jwks_uri: &str, kid: Option<&str>) -> std::result::Result<Jwk, String> {
        let cached = self.jwks.lock().ok().and_then(|c| c.get(jwks_uri).cloned());
        if let Some((at, set)) = &cached
            && at.elapsed() < JWKS_TTL
        {
            if let Some(k) = pick_key(set, kid) {
                return Ok(k);
            }
            if at.elapsed() < JWKS_REFETCH_AFTER {
                return Err(format!("the provider's keys have no key {kid:?}"));
            }
        }
        let set: JwkSet = self.fetch_json(jwks_uri).await?;
        let set = Arc::new(set);
        if let Ok(mut c) = self.jwks.lock() {
            c.insert(jwks_uri.to_owned(), (Instant::now(), set.clone()));
        }
        pick_key(&set, kid).ok_or_else(|| format!("the provider's keys have no key {kid:?}"))
    }
}

/// A provider's answer: at most [`MAX_FETCH_BYTES`], and a success.
pub(crate) async fn read_bounded(
    mut resp: reqwest::Response,
    url: &str,
) -> std::result::Result<Vec<u8>, String> {
    let status = resp.status();
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading {url}: {e}"))?
    {
        if body.len() + chunk.len() > MAX_FETCH_BYTES {
            return Err(format!("{url} answered more than {MAX_FETCH_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        return Err(format!("{url} answered {status}: {text}"));
    }
    Ok(body)
}

async fn read_json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    url: &str,
) -> std::result::Result<T, String> {
    let body = read_bounded(resp, url).await?;
    serde_json::from_slice(&body).map_err(|e| format!("{url} answered unreadable JSON: {e}"))
}

/// The signing key with this id (or the only signing key, when the token names none).
fn pick_key(set: &JwkSet, kid: Option<&str>) -> Option<Jwk> {
    let signing = |k: &&Jwk| {
        !matches!(k.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature)
            && !matches!(k.algorithm, AlgorithmParameters::OctetKey(_))
    };
    match kid {
        Some(kid) => set
            .keys
            .iter()
            .filter(signing)
            .find(|k| k.common.key_id.as_deref() == Some(kid))
            .cloned(),
        None => {
            let mut keys = set.keys.iter().filter(signing);
            match (keys.next(), keys.next()) {
                (Some(k), None) => Some(k.clone()),
                _ => None,
            }
        }
    }
}

/// The claims of an ID token that we read.
#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    #[serde(default)]
    aud: Value,
    #[serde(default)]
    azp: Option<String>,
    iat: i64,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(default)]
    email_verified: Option<Value>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    given_name: Option<String>,
    #[serde(default)]
    family_name: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

/// Verifies an ID token: signature by `key` with an allowed algorithm, `iss`, `aud`, `exp`,
/// `nbf` (by the library, with [`LEEWAY_SECS`]), then `azp`, `iat` and `nonce`.
fn verify_id_token(
    token: &str,
    key: &Jwk,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: i64,
) -> std::result::Result<IdClaims, String> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| format!("the ID token's header is not usable: {e}"))?;
    if !ALLOWED_ALGORITHMS.contains(&header.alg) {
        return Err(format!(
            "the ID token is signed with {:?}, which is not allowed",
            header.alg
        ));
    }
    if let Some(alg) = key.common.key_algorithm
        && format!("{alg:?}") != format!("{:?}", header.alg)
    {
        return Err(format!(
            "the ID token says {:?} but its key is for {alg:?}",
            header.alg
        ));
    }
    let decoding = DecodingKey::from_jwk(key).map_err(|e| format!("the provider's key: {e}"))?;
    let mut v = Validation::new(header.alg);
    v.leeway = LEEWAY_SECS;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.set_issuer(&[issuer]);
    v.set_audience(&[client_id]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<IdClaims>(token, &decoding, &v)
        .map_err(|e| format!("the ID token was refused: {e}"))?
        .claims;
    let audiences = match &claims.aud {
        Value::String(_) => 1,
        Value::Array(a) => a.len(),
        _ => 0,
    };
    match (&claims.azp, audiences) {
        (Some(azp), _) if azp != client_id => {
            return Err(format!("the ID token's azp is {azp:?}, not this client"));
        }
        (None, n) if n > 1 => {
            return Err("the ID token has several audiences and no azp".into());
        }
        _ => {}
    }
    let skew = i64::try_from(LEEWAY_SECS).unwrap_or(60);
    if claims.iat > now + skew {
        return Err("the ID token was issued in the future".into());
    }
    if claims.iat < now - MAX_TOKEN_AGE_SECS - skew {
        return Err("the ID token was issued too long ago".into());
    }
    let matches = claims.nonce.as_deref().is_some_and(|n| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            n.as_bytes(),
            nonce.as_bytes(),
        ))
    });
    if !matches {
        return Err("the ID token's nonce is not this sign-in's".into());
    }
    Ok(claims)
}

/// The groups a token's claim names (a list of strings, or one string).
fn claim_groups(claims: &IdClaims, claim: &str) -> Vec<String> {
    match claims.rest.get(claim) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .take(MAX_TOKEN_GROUPS)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

pub(crate) fn list_field(field: &str, items: &[String]) -> Result<()> {
    if items.len() > MAX_LIST {
        return Err(ServiceError::field(
            field,
            format!("{field} may hold at most {MAX_LIST} entries"),
        ));
    }
    if let Some(bad) = items
        .iter()
        .find(|s| s.is_empty() || s.len() > MAX_ITEM_BYTES || s.chars().any(char::is_control))
    {
        return Err(ServiceError::field(
            field,
            format!("{field} holds an empty, over-long or unprintable entry: {bad:?}"),
        ));
    }
    Ok(())
}

/// A connection's name: 1 to [`MAX_NAME_CHARS`] characters once trimmed.
pub(crate) fn connection_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ServiceError::field(
            "name",
            format!("name must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(name)
}

/// Email domains as compared: lower case, without a leading `@`.
pub(crate) fn domains(list: &[String]) -> Result<Vec<String>> {
    let out: Vec<String> = list
        .iter()
        .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
        .collect();
    list_field("allowed_domains", &out)?;
    Ok(out)
}

/// A group mapping's names, checked.
pub(crate) fn mapping(m: &BTreeMap<String, String>) -> Result<()> {
    let pairs: Vec<String> = m.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect();
    list_field("group_mapping", &pairs)
}

/// The settings of a request, checked, with the preset's defaults filled in.
fn oidc_config(req: &OidcConnectionRequest) -> Result<Config> {
    connection_name(&req.name)?;
    let issuer = match (req.preset, req.issuer.as_deref()) {
        (OidcPreset::Google, None | Some("https://accounts.google.com")) => {
            "https://accounts.google.com".to_owned()
        }
        (OidcPreset::Google, Some(_)) => {
            return Err(ServiceError::field(
                "issuer",
                "Google's issuer is https://accounts.google.com",
            ));
        }
        (_, Some(i)) => i.trim().to_owned(),
        (_, None) => {
            return Err(ServiceError::field(
                "issuer",
                "issuer is needed for this provider",
            ));
        }
    };
    check_provider_url("issuer", &issuer)?;
    if req.client_id.is_empty() || req.client_id.len() > MAX_ITEM_BYTES {
        return Err(ServiceError::field(
            "client_id",
            format!("client_id must be 1 to {MAX_ITEM_BYTES} bytes"),
        ));
    }
    let scopes = req.scopes.clone().unwrap_or_else(|| {
        let mut s = vec!["email".to_owned(), "profile".to_owned()];
        if req.preset == OidcPreset::Okta {
            s.push("groups".into());
        }
        s
    });
    list_field("scopes", &scopes)?;
    if scopes.iter().any(|s| s.contains(' ')) {
        return Err(ServiceError::field(
            "scopes",
            "a scope may not contain a space",
        ));
    }
    let allowed_domains = domains(&req.allowed_domains)?;
    let group_claim = req.group_claim.clone().unwrap_or_else(|| "groups".into());
    list_field("group_claim", std::slice::from_ref(&group_claim))?;
    mapping(&req.group_mapping)?;
    Ok(Config {
        preset: req.preset,
        issuer,
        client_id: req.client_id.clone(),
        scopes,
        allowed_domains,
        group_claim,
        group_mapping: req.group_mapping.clone(),
        require_verified_email: req
            .require_verified_email
            .unwrap_or(req.preset != OidcPreset::Microsoft),
    })
}

impl Services {
    /// Checks that the groups a connection maps to exist and that the caller may make it. A
    /// connection can sign in as any member whose email its provider asserts, make members,
    /// and put them in the mapped groups, so the caller must be able to place members in
    /// every group of the organization (what an Owner holds; see `membership`), and to add
    /// members when it provisions them.
    pub(crate) async fn may_configure_sign_in(
        &self,
        principal: &Principal,
        group_mapping: &BTreeMap<String, String>,
        allowed_domains: &[String],
    ) -> Result<()> {
        let pass = system_org_lookup(&why(), &principal.org_id);
        let groups = self.store.list_entities(&pass, Entity::Group).await?;
        if let Some(missing) = group_mapping
            .values()
            .find(|name| !groups.iter().any(|g| &g.name == *name))
        {
            return Err(ServiceError::field(
                "group_mapping",
                format!("the organization has no group named {missing:?}"),
            ));
        }
        let all: Vec<String> = groups.into_iter().map(|g| g.id).collect();
        self.may_place_in_groups(principal, &all).await?;
        if !allowed_domains.is_empty() {
            self.org_grant(principal, Permission::Create, Kind::OrgMember)
                .await?;
        }
        Ok(())
    }

    /// Checks what a connection refers to (its groups exist, its provider answers) and that
    /// the caller may make it.
    async fn check_oidc(&self, principal: &Principal, config: &Config) -> Result<()> {
        self.may_configure_sign_in(principal, &config.group_mapping, &config.allowed_domains)
            .await?;
        self.oidc
            .discover(&config.issuer, true)
            .await
            .map_err(|e| ServiceError::field("issuer", format!("discovery failed: {e}")))?;
        Ok(())
    }

    fn oidc_view(&self, base: &str, rec: &SsoConnectionRecord) -> Result<OidcConnection> {
        let c: Config = serde_json::from_str(&rec.config)
            .map_err(|e| ServiceError::Internal(format!("sign-in connection {}: {e}", rec.id)))?;
        Ok(OidcConnection {
            id: rec.id.clone(),
            org_id: rec.org_id.clone(),
            name: rec.name.clone(),
            preset: c.preset,
            issuer: c.issuer,
            client_id: c.client_id,
            client_secret_set: !rec.secret_ciphertext.is_empty(),
            scopes: c.scopes,
            allowed_domains: c.allowed_domains,
            group_claim: c.group_claim,
            group_mapping: c.group_mapping,
            require_verified_email: c.require_verified_email,
            redirect_uri: format!("{base}/auth/oidc/callback"),
            sign_in_url: format!("{base}/auth/oidc/{}/start", rec.id),
            created: rec.created.clone(),
            updated: rec.updated.clone(),
        })
    }

    /// `POST /v1/organization/{id}/oidc` (`update` on the organization: Owners).
    pub async fn create_oidc(
        &self,
        principal: &Principal,
        base: &str,
        req: &OidcConnectionRequest,
    ) -> Result<OidcConnection> {
        let pass = self
            .org_grant(principal, Permission::Update, Kind::Organization)
            .await?;
        let config = oidc_config(req)?;
        let secret = req
            .client_secret
            .as_ref()
            .ok_or_else(|| ServiceError::field("client_secret", "client_secret is needed"))?;
        self.check_oidc(principal, &config).await?;
        let id = random::uuid()?;
        let now = self.now();
        let (version, sealed) = self
            .vault
            .seal(
                &self.store,
                &pass,
                &id,
                crate::vault::SSO_SECRET_FIELD,
                secret.expose().as_bytes(),
                &now,
            )
            .await?;
        let rec = SsoConnectionRecord {
            id: id.clone(),
            org_id: principal.org_id.clone(),
            name: req.name.trim().to_owned(),
            protocol: OIDC.into(),
            config: serde_json::to_string(&config)
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
            secret_dek_version: version,
            secret_ciphertext: B64.encode(sealed),
            created: now.clone(),
            updated: now,
        };
        self.store.insert_sso_connection(&pass, &rec).await?;
        let view = self.oidc_view(base, &rec)?;
        principal.trail.change(json!({"created": "oidc_connection",
            "id": id, "settings": view_for_audit(&view)}));
        Ok(view)
    }

    /// `PUT /v1/organization/{id}/oidc/{connection}`: replaces a connection's settings (the
    /// stored secret is kept when none is given).
    pub async fn replace_oidc(
        &self,
        principal: &Principal,
        base: &str,
        id: &str,
        req: &OidcConnectionRequest,
    ) -> Result<OidcConnection> {
        let pass = self
            .org_grant(principal, Permission::Update, Kind::Organization)
            .await?;
        let old = self.org_connection(principal, id, OIDC).await?;
        let config = oidc_config(req)?;
        self.check_oidc(principal, &config).await?;
        let now = self.now();
        let (version, ciphertext) = match &req.client_secret {
            Some(secret) => {
                let (v, sealed) = self
                    .vault
                    .seal(
                        &self.store,
                        &pass,
                        id,
                        crate::vault::SSO_SECRET_FIELD,
                        secret.expose().as_bytes(),
                        &now,
                    )
                    .await?;
                (v, B64.encode(sealed))
            }
            None => (old.secret_dek_version, old.secret_ciphertext.clone()),
        };
        let rec = SsoConnectionRecord {
            name: req.name.trim().to_owned(),
            config: serde_json::to_string(&config)
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
            secret_dek_version: version,
            secret_ciphertext: ciphertext,
            updated: now,
            ..old.clone()
        };
        if !self.store.update_sso_connection(&pass, &rec).await? {
            return Err(ServiceError::NotFound(format!("sign-in connection {id:?}")));
        }
        let before = self.oidc_view(base, &old)?;
        let view = self.oidc_view(base, &rec)?;
        principal
            .trail
            .change(json!({"updated": "oidc_connection", "id": id,
            "before": view_for_audit(&before), "after": view_for_audit(&view),
            "client_secret_replaced": req.client_secret.is_some()}));
        Ok(view)
    }

    /// `GET /v1/organization/{id}/oidc` (Owners).
    pub async fn list_oidc(
        &self,
        principal: &Principal,
        base: &str,
    ) -> Result<Vec<OidcConnection>> {
        self.org_connections(principal, OIDC)
            .await?
            .iter()
            .map(|r| self.oidc_view(base, r))
            .collect()
    }

    /// The caller's organization's connections of one protocol (Owners: `update` on the
    /// organization).
    pub(crate) async fn org_connections(
        &self,
        principal: &Principal,
        protocol: &str,
    ) -> Result<Vec<SsoConnectionRecord>> {
        self.org_grant(principal, Permission::Update, Kind::Organization)
            .await?;
        let mut all = self
            .store
            .list_sso_connections(&why(), &principal.org_id)
            .await?;
        all.retain(|r| r.protocol == protocol);
        Ok(all)
    }

    /// One of the caller's organization's connections of this protocol, or a 404.
    pub(crate) async fn org_connection(
        &self,
        principal: &Principal,
        id: &str,
        protocol: &str,
    ) -> Result<SsoConnectionRecord> {
        self.store
            .sso_connection(&why(), id)
            .await?
            .filter(|c| c.org_id == principal.org_id && c.protocol == protocol)
            .ok_or_else(|| ServiceError::NotFound(format!("sign-in connection {id:?}")))
    }

    /// `DELETE /v1/organization/{id}/{oidc|saml}/{connection}` (Owners): its members stay
    /// members, but cannot sign in through it any more; sessions made through it end.
    pub async fn delete_sso(&self, principal: &Principal, id: &str, protocol: &str) -> Result<()> {
        let pass = self
            .org_grant(principal, Permission::Update, Kind::Organization)
            .await?;
        self.org_connection(principal, id, protocol).await?;
        if !self.store.delete_sso_connection(&pass, id).await? {
            return Err(ServiceError::NotFound(format!("sign-in connection {id:?}")));
        }
        let ended = self
            .store
            .end_sessions_by_method(
                &why(),
                &principal.org_id,
                &format!("{protocol}:{id}"),
                &self.now(),
            )
            .await?;
        principal.trail.change(
            json!({"deleted": format!("{protocol}_connection"), "id": id,
            "sessions_ended": ended}),
        );
        Ok(())
    }

    /// `DELETE /v1/organization/{id}/oidc/{connection}`.
    pub async fn delete_oidc(&self, principal: &Principal, id: &str) -> Result<()> {
        self.delete_sso(principal, id, OIDC).await
    }

    /// What the sign-in page offers: for the organization named (by name or id), or the only
    /// one when there is one, whether passwords may be used and its providers' buttons.
    pub async fn sign_in_options(&self, org: Option<&str>) -> Result<Option<SignInOptions>> {
        let wanted = org.unwrap_or_default();
        let orgs = self.store.orgs_for_sign_in(&why(), wanted).await?;
        // Named: the match; unnamed: the organization only when there is one.
        let found = match orgs.as_slice() {
            [one] => Some(one),
            [first, ..] if !wanted.is_empty() => Some(first),
            _ => None,
        };
        let Some((org_id, org_name)) = found else {
            return Ok(None);
        };
        let providers = self
            .store
            .list_sso_connections(&why(), org_id)
            .await?
            .into_iter()
            .map(|c| (format!("/auth/{}/{}/start", c.protocol, c.id), c.name))
            .collect();
        Ok(Some(SignInOptions {
            org_name: org_name.clone(),
            password: self.store.password_login_allowed(&why(), org_id).await?,
            providers,
        }))
    }

    /// Starts a sign-in: records the state (hashed), nonce and PKCE verifier, and answers
    /// with the provider's authorization URL and the secret of the cookie that binds the
    /// sign-in to this browser.
    pub async fn oidc_start(&self, base: &str, connection_id: &str) -> Result<OidcStart> {
        let rec = self
            .store
            .sso_connection(&why(), connection_id)
            .await?
            .filter(|c| c.protocol == OIDC)
            .ok_or_else(|| {
                ServiceError::NotFound(format!("sign-in connection {connection_id:?}"))
            })?;
        let config: Config =
            serde_json::from_str(&rec.config).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let d = self.oidc.discover(&config.issuer, false).await.map_err(|e| {
            tracing::warn!(connection = %rec.id, error = %e, "identity provider discovery failed");
            ServiceError::Busy("the identity provider cannot be reached; try again shortly".into())
        })?;
        let state = B64URL.encode(random::bytes::<32>()?);
        let nonce = B64URL.encode(random::bytes::<32>()?);
        let verifier = B64URL.encode(random::bytes::<32>()?);
        let browser_secret = B64URL.encode(random::bytes::<32>()?);
        let challenge = B64URL.encode(sha2::Sha256::digest(verifier.as_bytes()));
        let now = self.now();
        if self.store.sso_logins_in_flight(&why(), &now).await? >= MAX_SIGN_INS_IN_FLIGHT {
            return Err(ServiceError::Busy(
                "too many sign-ins are in progress; try again in a few minutes".into(),
            ));
        }
        self.store
            .insert_sso_login(
                &why(),
                &SsoLoginRecord {
                    state_hash: sha256_hex(&state),
                    browser_hash: sha256_hex(&browser_secret),
                    connection_id: rec.id.clone(),
                    nonce: nonce.clone(),
                    code_verifier: verifier,
                    created: now.clone(),
                    expires: self.after(LOGIN_TTL_SECS),
                    verified: None,
                },
                &now,
            )
            .await?;
        let mut scopes = vec!["openid".to_owned()];
        scopes.extend(config.scopes.iter().filter(|s| *s != "openid").cloned());
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &config.client_id)
            .append_pair("redirect_uri", &format!("{base}/auth/oidc/callback"))
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        let sep = if d.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(OidcStart {
            authorize_url: format!("{}{sep}{query}", d.authorization_endpoint),
            browser_secret,
        })
    }

    /// Finishes a sign-in at the callback: the state must be one this browser started and
    /// not used; the code is exchanged (with the PKCE verifier), the ID token verified, the
    /// person found, linked or provisioned and their groups mapped; then a session.
    pub async fn oidc_finish(
        &self,
        base: &str,
        callback: &OidcCallback<'_>,
        from: Option<&str>,
        user_agent: Option<&str>,
    ) -> Result<NewSession> {
        let OidcCallback {
            code,
            state,
            error: provider_error,
            browser_secret,
            audit_refusal,
        } = *callback;
        let login = if state.is_empty() || state.len() > 128 {
            None
        } else {
            self.store
                .take_sso_login(&why(), &sha256_hex(state), &self.now())
                .await?
        };
        let Some(login) = login else {
            tracing::info!("OIDC sign-in refused: unknown, used or expired state");
            if audit_refusal {
                self.audit_sso_failure(OIDC, None, "unknown, used or expired state", from)
                    .await;
            }
            return Err(REFUSED);
        };
        let rec = self
            .store
            .sso_connection(&why(), &login.connection_id)
            .await?
            .filter(|c| c.protocol == OIDC && login.verified.is_none());
        let Some(rec) = rec else {
            return Err(REFUSED);
        };
        let bound = browser_secret.is_some_and(|b| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                sha256_hex(b).as_bytes(),
                login.browser_hash.as_bytes(),
            ))
        });
        let outcome = if !bound {
            Err(Refusal(
                "the sign-in was started by another browser (state not bound to this one)".into(),
            ))
        } else if let Some(e) = provider_error {
            Err(Refusal(format!("the provider answered error {e:?}")))
        } else {
            match code {
                Some(code) if !code.is_empty() && code.len() <= 4096 => {
                    self.oidc_exchange(base, &rec, &login, code, from, user_agent)
                        .await
                }
                _ => Err(Refusal("the callback has no code".into())),
            }
        };
        match outcome {
            Ok(made) => Ok(made),
            Err(Refusal(reason)) => Err(self
                .refuse(OIDC, Some(&rec), &reason, from, audit_refusal)
                .await),
        }
    }

    /// What a refused sign-in through a provider answers: the same 401 whatever the reason,
    /// which goes to the log, and to the audit log when `audit` (the caller's per-address
    /// limit allows it).
    pub(crate) async fn refuse(
        &self,
        protocol: &str,
        rec: Option<&SsoConnectionRecord>,
        reason: &str,
        from: Option<&str>,
        audit: bool,
    ) -> ServiceError {
        tracing::info!(protocol, connection = ?rec.map(|r| r.id.as_str()), reason,
            "sign-in through an identity provider refused");
        if audit {
            self.audit_sso_failure(protocol, rec, reason, from).await;
        }
        REFUSED
    }

    pub(crate) async fn audit_sso_failure(
        &self,
        protocol: &str,
        rec: Option<&SsoConnectionRecord>,
        reason: &str,
        from: Option<&str>,
    ) {
        self.audit_login(
            rec.map(|r| r.org_id.as_str()),
            None,
            "login_failure",
            json!({"method": protocol, "provider": rec.map(|r| r.name.as_str()),
                "connection_id": rec.map(|r| r.id.as_str()), "from": from, "reason": reason}),
        )
        .await;
    }

    async fn oidc_exchange(
        &self,
        base: &str,
        rec: &SsoConnectionRecord,
        login: &SsoLoginRecord,
        code: &str,
        from: Option<&str>,
        user_agent: Option<&str>,
    ) -> std::result::Result<NewSession, Refusal> {
        let config: Config = serde_json::from_str(&rec.config)?;
        let d = self.oidc.discover(&config.issuer, false).await?;
        let pass = system_org_lookup(&why(), &rec.org_id);
        let sealed = B64.decode(&rec.secret_ciphertext)?;
        let secret = self
            .vault
            .open_field(
                &self.store,
                &pass,
                &rec.id,
                crate::vault::SSO_SECRET_FIELD,
                rec.secret_dek_version,
                &sealed,
            )
            .await?;
        let secret = zeroize::Zeroizing::new(String::from_utf8(secret.to_vec())?);
        let redirect_uri = format!("{base}/auth/oidc/callback");
        let basic = d
            .token_endpoint_auth_methods_supported
            .as_ref()
            .is_none_or(|m| m.iter().any(|m| m == "client_secret_basic"));
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", &redirect_uri)
                .append_pair("code_verifier", &login.code_verifier);
            if !basic {
                form.append_pair("client_id", &config.client_id)
                    .append_pair("client_secret", &secret);
            }
            form.finish()
        };
        let mut request = self
            .oidc
            .http
            .post(&d.token_endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json");
        if basic {
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            request = request.header(
                "authorization",
                format!(
                    "Basic {}",
                    B64.encode(format!("{}:{}", enc(&config.client_id), enc(&secret)))
                ),
            );
        }
        let resp = request
            .body(body)
            .send()
            .await
            .map_err(|e| format!("the token request failed: {e}"))?;
        #[derive(Deserialize)]
        struct TokenAnswer {
            id_token: Option<String>,
        }
        let answer: TokenAnswer = read_json(resp, &d.token_endpoint).await?;
        let token = answer
            .id_token
            .ok_or_else(|| Refusal("the token answer has no id_token".into()))?;
        let header = jsonwebtoken::decode_header(&token)
            .map_err(|e| format!("the ID token's header is not usable: {e}"))?;
        let key = self
            .oidc
            .key_for(&d.jwks_uri, header.kid.as_deref())
            .await?;
        let now = self.clock.now().unix_timestamp();
        let claims = verify_id_token(
            &token,
            &key,
            &config.issuer,
            &config.client_id,
            &login.nonce,
            now,
        )?;
        self.oidc_member(rec, &config, &claims, from, user_agent)
            .await
    }

    /// The member a verified token names: linked, found by email, or provisioned; their
    /// mapped groups set; a new session.
    async fn oidc_member(
        &self,
        rec: &SsoConnectionRecord,
        config: &Config,
        claims: &IdClaims,
        from: Option<&str>,
        user_agent: Option<&str>,
    ) -> std::result::Result<NewSession, Refusal> {
        let email = claims
            .email
            .clone()
            .or_else(|| {
                (config.preset == OidcPreset::Microsoft)
                    .then(|| claims.preferred_username.clone())
                    .flatten()
            })
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| e.contains('@') && e.len() <= crate::accounts::MAX_EMAIL_BYTES)
            .ok_or_else(|| Refusal("the ID token has no usable email".into()))?;
        let verified = matches!(claims.email_verified, Some(Value::Bool(true)))
            || matches!(claims.email_verified, Some(Value::String(ref s)) if s == "true");
        if config.require_verified_email && !verified {
            return Err(Refusal(format!("the email {email:?} is not verified")));
        }
        let (given_name, family_name) =
            match (&claims.given_name, &claims.family_name, &claims.name) {
                (None, None, Some(n)) => (Some(n.clone()), None),
                (g, f, _) => (g.clone(), f.clone()),
            };
        let who = Asserted {
            subject: claims.sub.clone(),
            email,
            given_name,
            family_name,
            groups: claim_groups(claims, &config.group_claim),
        };
        let admission = Admission {
            allowed_domains: &config.allowed_domains,
            group_mapping: &config.group_mapping,
        };
        self.provider_member(rec, &who, &admission, from, user_agent)
            .await
    }

    /// The member a verified assertion names: linked by the provider's subject, found by
    /// email, or provisioned (an allowed domain); their mapped groups set; a new session.
    pub(crate) async fn provider_member(
        &self,
        rec: &SsoConnectionRecord,
        who: &Asserted,
        admission: &Admission<'_>,
        from: Option<&str>,
        user_agent: Option<&str>,
    ) -> std::result::Result<NewSession, Refusal> {
        let email = &who.email;
        let linked = self
            .store
            .sso_identity(&why(), &rec.id, &who.subject)
            .await?;
        let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        let provision = admission.allowed_domains.iter().any(|d| d == domain);
        let wanted: Vec<String> = who
            .groups
            .iter()
            .take(MAX_TOKEN_GROUPS)
            .filter_map(|g| admission.group_mapping.get(g).cloned())
            .collect();
        let managed: Vec<String> = admission.group_mapping.values().cloned().collect();
        let new_user = UserInfo {
            id: random::uuid()?,
            email: email.clone(),
            kind: "user".into(),
            given_name: who
                .given_name
                .as_ref()
                .map(|s| s.chars().take(200).collect()),
            family_name: who
                .family_name
                .as_ref()
                .map(|s| s.chars().take(200).collect()),
            created: self.now(),
        };
        let user_id = self
            .store
            .sign_in_member(
                &why(),
                &rec.org_id,
                &ProviderMember {
                    linked: linked.as_deref(),
                    user: &new_user,
                    provision,
                    managed: &managed,
                    wanted: &wanted,
                },
            )
            .await?
            .ok_or_else(|| {
                Refusal(if linked.is_some() {
                    format!("{email} is no longer a member")
                } else {
                    format!("{email} is not a member and {domain:?} is not an allowed domain")
                })
            })?;
        self.policy_changed(&rec.org_id);
        self.store
            .link_sso_identity(&why(), &rec.id, &who.subject, &user_id, &self.now())
            .await?;
        let method = format!("{}:{}", rec.protocol, rec.id);
        let made = self
            .new_session(&rec.org_id, &user_id, &method, from, user_agent)
            .await?;
        self.audit_login(
            Some(&rec.org_id),
            Some(&user_id),
            "login",
            json!({"method": rec.protocol, "provider": rec.name, "connection_id": rec.id,
                "email": email, "provisioned": linked.is_none() && new_user.id == user_id,
                "groups": wanted, "session_id": made.record.id, "from": from}),
        )
        .await;
        Ok(made)
    }
}

/// A connection's settings as the audit log keeps them.
fn view_for_audit(v: &OidcConnection) -> Value {
    json!({"name": v.name, "preset": v.preset, "issuer": v.issuer, "client_id": v.client_id,
        "scopes": v.scopes, "allowed_domains": v.allowed_domains,
        "group_claim": v.group_claim, "group_mapping": v.group_mapping,
        "require_verified_email": v.require_verified_email})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(preset: &str, issuer: Option<&str>) -> OidcConnectionRequest {
        serde_json::from_value(json!({"name": "IdP", "preset": preset, "issuer": issuer,
            "client_id": "c", "client_secret": "s"}))
        .unwrap()
    }

    #[test]
    fn presets_fill_in_what_their_provider_always_is() {
        let google = oidc_config(&request("google", None)).unwrap();
        assert_eq!(google.issuer, "https://accounts.google.com");
        assert!(google.require_verified_email);
        assert!(oidc_config(&request("google", Some("https://evil.test"))).is_err());
        let entra = oidc_config(&request(
            "microsoft",
            Some("https://login.microsoftonline.com/t/v2.0"),
        ))
        .unwrap();
        assert!(
            !entra.require_verified_email,
            "Entra sends no email_verified"
        );
        let okta = oidc_config(&request("okta", Some("https://acme.okta.com"))).unwrap();
        assert!(okta.scopes.contains(&"groups".to_owned()));
        assert_eq!(okta.group_claim, "groups");
        assert!(oidc_config(&request("custom", None)).is_err(), "no issuer");
        let mut spaced = request("custom", Some("https://idp.test"));
        spaced.scopes = Some(vec!["a b".into()]);
        assert!(oidc_config(&spaced).is_err());
    }

    #[test]
    fn provider_urls_are_https_or_loopback() {
        for ok in [
            "https://accounts.google.com",
            "https://login.microsoftonline.com/abc/v2.0",
            "http://127.0.0.1:4000",
            "http://localhost:9/x",
        ] {
            assert!(check_provider_url("issuer", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://idp.example.com",
            "http://127.0.0.1.evil.com",
            "ftp://x",
            "https://",
            "https:///x",
            "https://user@evil.com",
            "javascript:alert(1)",
        ] {
            assert!(check_provider_url("issuer", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_are_picked_by_id_and_never_symmetric() {
        let set: JwkSet = serde_json::from_value(json!({"keys": [
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "a", "use": "sig", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": "b", "use": "enc", "n": "sXch", "e": "AQAB"}
        ]}))
        .unwrap();
        assert!(pick_key(&set, Some("a")).is_some());
        assert!(pick_key(&set, Some("b")).is_none(), "an encryption key");
        assert!(pick_key(&set, Some("h")).is_none(), "a symmetric key");
        assert!(pick_key(&set, None).is_some(), "the only signing key");
    }

    #[test]
    fn unsigned_and_symmetric_tokens_are_refused() {
        let key: Jwk =
            serde_json::from_value(json!({"kty": "RSA", "kid": "a", "n": "sXch", "e": "AQAB"}))
                .unwrap();
        let b = |v: Value| B64URL.encode(v.to_string());
        let claims = b(json!({"sub": "x", "iss": "i", "aud": "c", "exp": 9e9, "iat": 1}));
        for alg in ["none", "HS256"] {
            let token = format!("{}.{claims}.", b(json!({"alg": alg, "kid": "a"})));
            let err = verify_id_token(&token, &key, "i", "c", "n", 1).unwrap_err();
            assert!(
                err.contains("not usable") || err.contains("not allowed"),
                "{alg}: {err}"
            );
        }
    }
}

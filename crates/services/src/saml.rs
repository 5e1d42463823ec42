//! Signing in through an organization's SAML 2.0 identity provider (the service provider).
//!
//! Guarantees:
//! * A connection is saved only with IdP metadata that holds a signing certificate, and every
//!   response must carry a valid signature by it over the Response or the Assertion (RSA or
//!   ECDSA with SHA-2): an unsigned response is refused whatever the metadata says.
//! * Signature wrapping: everything the signature does not cover is dropped before the
//!   assertion is read (`samael` reduces the document to its signed parts), so an unsigned
//!   assertion next to or around a signed one is never read.
//! * `Destination` and `Recipient` must be this connection's assertion consumer service,
//!   every `AudienceRestriction` must name this service provider, `InResponseTo` must be the
//!   id of a request this server sent (each used once, for at most ten minutes),
//!   `NotBefore`/`NotOnOrAfter` hold with one minute of skew, and an assertion id is accepted
//!   once (a replay cache kept as long as an assertion can be fresh).
//! * IdP-initiated (unsolicited) responses are refused.
//! * The identity provider posts its response cross-site, which carries no `SameSite=Lax`
//!   cookie; so the verified identity waits (two minutes, once) for the browser to come back
//!   to `/auth/saml/finish` with the cookie of the browser that started the sign-in, as in
//!   OpenID Connect. A response stolen and posted from another browser signs nobody in.
//! * Work before a signature is checked is bounded: the assertion consumer service takes a
//!   response only for a sign-in in flight (its `RelayState`), once, at most 256 KiB, and
//!   verifies one response at a time.
//!
//! Without the `saml` feature (which links libxml2 and xmlsec1) connections cannot be made.

use crate::sso::{
    Admission, Asserted, LEEWAY_SECS, LOGIN_TTL_SECS, MAX_SIGN_INS_IN_FLIGHT, REFUSED, Refusal,
    check_provider_url, connection_name, domains, list_field, mapping, read_bounded, sha256_hex,
    why,
};
use crate::{Result, ServiceError, Services, random};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use holdfast_api::sso::{SamlConnection, SamlConnectionRequest};
use holdfast_core::authz::{Kind, Permission, Principal};
use holdfast_store::{SsoConnectionRecord, SsoLoginRecord};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// The protocol column and session method of SAML connections.
pub(crate) const SAML: &str = "saml";
/// The largest metadata document taken (inline or fetched).
const MAX_METADATA_BYTES: usize = 256 * 1024;
/// The largest SAMLResponse form field taken.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// How long a verified response waits for its browser.
const VERIFIED_TTL_SECS: i64 = 120;
/// A Response or Assertion issued longer ago than this is refused (so the replay cache need
/// keep an assertion only this long, plus the skew).
const MAX_ISSUE_DELAY_SECS: i64 = 180;

/// A connection's settings as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Config {
    idp_entity_id: String,
    idp_sso_url: String,
    idp_metadata_xml: String,
    idp_metadata_url: Option<String>,
    idp_certificate_sha256: Vec<String>,
    allowed_domains: Vec<String>,
    email_attribute: Option<String>,
    group_attribute: String,
    group_mapping: BTreeMap<String, String>,
}

/// What an identity provider's metadata says that we use.
#[derive(Debug)]
#[cfg_attr(not(feature = "saml"), allow(dead_code))]
struct IdpMetadata {
    entity_id: String,
    sso_url: String,
    certificate_sha256: Vec<String>,
}

/// Where this service provider is, for one connection.
struct Sp {
    entity_id: String,
    acs_url: String,
}

fn sp(base: &str, id: &str) -> Sp {
    Sp {
        entity_id: format!("{base}/auth/saml/{id}/metadata"),
        acs_url: format!("{base}/auth/saml/{id}/acs"),
    }
}

/// What a verified response says: the person, and the assertion's id.
#[derive(Debug)]
#[cfg_attr(not(feature = "saml"), allow(dead_code))]
struct Verified {
    assertion_id: String,
    who: Asserted,
}

/// Where a browser goes to sign in, and the cookie that binds the sign-in to it.
pub struct SamlStart {
    pub redirect_url: String,
    pub browser_secret: String,
}

#[cfg(feature = "saml")]
mod xml {
    //! The parts that read XML and check signatures (samael on libxml2 and xmlsec1).
    use super::{IdpMetadata, LEEWAY_SECS, MAX_ISSUE_DELAY_SECS, Sp, Verified};
    use crate::sso::{Asserted, MAX_TOKEN_GROUPS};
    use samael::crypto::AllowedSignatureAlgorithm as Alg;
    use samael::metadata::EntityDescriptor;
    use samael::schema::Assertion;
    use samael::service_provider::ServiceProvider;
    use sha2::Digest;
    use std::sync::Mutex;

    /// One verification at a time: the C libraries' state is process-wide, and a flood of
    /// responses then costs at most one core.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    const EMAIL_FORMAT: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
    const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";

    /// Attribute names tried for each field when a connection names none.
    const EMAIL_NAMES: [&str; 5] = [
        "email",
        "mail",
        "emailaddress",
        "urn:oid:0.9.2342.19200300.100.1.3",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    ];
    const GIVEN_NAMES: [&str; 3] = [
        "givenName",
        "urn:oid:2.5.4.42",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
    ];
    const FAMILY_NAMES: [&str; 4] = [
        "sn",
        "surname",
        "urn:oid:2.5.4.4",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
    ];
    const DISPLAY_NAMES: [&str; 3] = ["displayName", "name", "urn:oid:2.16.840.1.113730.3.1.241"];

    fn provider(md: EntityDescriptor, sp: &Sp) -> ServiceProvider {
        ServiceProvider {
            entity_id: Some(sp.entity_id.clone()),
            metadata_url: Some(sp.entity_id.clone()),
            acs_url: Some(sp.acs_url.clone()),
            slo_url: None,
            idp_metadata: md,
            allow_idp_initiated: false,
            max_issue_delay: chrono::Duration::seconds(MAX_ISSUE_DELAY_SECS),
            max_clock_skew: chrono::Duration::seconds(LEEWAY_SECS as i64),
            allowed_signature_algorithms: Some(vec![
                Alg::RsaSha256,
                Alg::RsaSha384,
                Alg::RsaSha512,
                Alg::EcdsaSha256,
                Alg::EcdsaSha384,
                Alg::EcdsaSha512,
            ]),
            ..ServiceProvider::default()
        }
    }

    fn lock() -> std::sync::MutexGuard<'static, ()> {
        ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn read_metadata(xml: &str) -> Result<IdpMetadata, String> {
        if xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY") {
            return Err("metadata with a document type declaration is not accepted".into());
        }
        let md: EntityDescriptor = xml
            .parse()
            .map_err(|e| format!("not a SAML EntityDescriptor: {e}"))?;
        let entity_id = md
            .entity_id
            .clone()
            .filter(|e| !e.is_empty())
            .ok_or("the metadata has no entityID")?;
        let sso_url = md
            .idp_sso_descriptors
            .iter()
            .flatten()
            .flat_map(|d| &d.single_sign_on_services)
            .find(|e| e.binding == BINDING_REDIRECT)
            .map(|e| e.location.clone())
            .ok_or("the metadata has no single sign-on service with the HTTP-Redirect binding")?;
        let sp = Sp {
            entity_id: String::new(),
            acs_url: String::new(),
        };
        let certs = provider(md, &sp)
            .idp_signing_certs()
            .map_err(|e| format!("the metadata's certificates are unreadable: {e}"))?
            .unwrap_or_default();
        if certs.is_empty() {
            return Err(
                "the metadata holds no signing certificate (responses must be signed, \
                        and are verified with it)"
                    .into(),
            );
        }
        Ok(IdpMetadata {
            entity_id,
            sso_url,
            certificate_sha256: certs
                .iter()
                .map(|c| crate::random::hex(&sha2::Sha256::digest(c.der_data())))
                .collect(),
        })
    }

    /// An AuthnRequest with our own id, as the HTTP-Redirect URL.
    pub(super) fn authn_request(
        md_xml: &str,
        sp: &Sp,
        sso_url: &str,
        request_id: &str,
        relay_state: &str,
    ) -> Result<String, String> {
        let md: EntityDescriptor = md_xml.parse().map_err(|e| format!("{e}"))?;
        let mut req = provider(md, sp)
            .make_authentication_request(sso_url)
            .map_err(|e| e.to_string())?;
        req.id = request_id.to_owned();
        let url = req
            .redirect(relay_state)
            .map_err(|e| e.to_string())?
            .ok_or("no destination")?;
        Ok(url.to_string())
    }

    fn attribute<'a>(a: &'a Assertion, names: &[&str]) -> Vec<&'a str> {
        a.attribute_statements
            .iter()
            .flatten()
            .flat_map(|s| &s.attributes)
            .filter(|attr| {
                names.iter().any(|n| {
                    attr.name.as_deref() == Some(*n) || attr.friendly_name.as_deref() == Some(*n)
                })
            })
            .flat_map(|attr| &attr.values)
            .filter_map(|v| v.value.as_deref())
            .collect()
    }

    /// Refuses a response that does not hold exactly one assertion (and no encrypted one):
    /// a second assertion, beside or inside the signed one, is what signature wrapping
    /// needs, and no identity provider sends one.
    pub(super) fn one_assertion(xml: &str) -> Result<(), String> {
        use quick_xml::events::Event;
        use quick_xml::name::ResolveResult;
        const ASSERTION_NS: &[u8] = b"urn:oasis:names:tc:SAML:2.0:assertion";
        let mut reader = quick_xml::NsReader::from_str(xml);
        let (mut assertions, mut depth) = (0, 0usize);
        loop {
            let (ns, local) = match reader.read_resolved_event() {
                Ok((ns, Event::Start(e))) => {
                    depth += 1;
                    (ns, e.local_name().into_inner().to_vec())
                }
                Ok((ns, Event::Empty(e))) => (ns, e.local_name().into_inner().to_vec()),
                Ok((_, Event::End(_))) => {
                    depth = depth.saturating_sub(1);
                    continue;
                }
                Ok((_, Event::Eof)) if depth == 0 => break,
                Ok((_, Event::Eof)) => return Err("the response ends inside an element".into()),
                Ok(_) => continue,
                Err(e) => return Err(format!("the response is not well-formed XML: {e}")),
            };
            if matches!(ns, ResolveResult::Bound(n) if n.into_inner() == ASSERTION_NS) {
                match local.as_slice() {
                    b"Assertion" => assertions += 1,
                    b"EncryptedAssertion" => {
                        return Err("encrypted assertions are not accepted".into());
                    }
                    _ => {}
                }
            }
        }
        if assertions == 1 {
            Ok(())
        } else {
            Err(format!(
                "the response holds {assertions} assertions; exactly one is accepted \
                 (signature wrapping adds one)"
            ))
        }
    }

    /// Verifies a response (base64, as posted) for the request `request_id`.
    pub(super) fn verify(
        md_xml: &str,
        sp: &Sp,
        response_b64: &str,
        request_id: &str,
        email_attribute: Option<&str>,
        group_attribute: &str,
    ) -> Result<Verified, String> {
        let md: EntityDescriptor = md_xml.parse().map_err(|e| format!("{e}"))?;
        let provider = provider(md, sp);
        let compact: String = response_b64
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, compact)
            .map_err(|_| "the response is not base64")?;
        let xml = String::from_utf8(bytes).map_err(|_| "the response is not UTF-8")?;
        if xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY") {
            return Err("a response with a document type declaration is refused".into());
        }
        one_assertion(&xml)?;
        let a = {
            let _one = lock();
            provider
                .parse_xml_response(&xml, Some(&[request_id]))
                .map_err(|e| e.to_string())?
        };
        // Every audience restriction must name us (samael checks only that one does, and
        // none when there are none).
        let restrictions = a
            .conditions
            .as_ref()
            .and_then(|c| c.audience_restrictions.as_ref())
            .filter(|r| !r.is_empty())
            .ok_or("the assertion has no audience restriction")?;
        if !restrictions
            .iter()
            .all(|r| r.audience.contains(&sp.entity_id))
        {
            return Err(format!(
                "the assertion is for another audience, not {}",
                sp.entity_id
            ));
        }
        let name_id = a
            .subject
            .as_ref()
            .and_then(|s| s.name_id.as_ref())
            .filter(|n| !n.value.is_empty() && n.value.len() <= 1024)
            .ok_or("the assertion has no usable NameID")?;
        let email = match email_attribute {
            Some(attr) => attribute(&a, &[attr]).first().map(|s| (*s).to_owned()),
            None if name_id.format.as_deref() == Some(EMAIL_FORMAT) => Some(name_id.value.clone()),
            None => attribute(&a, &EMAIL_NAMES).first().map(|s| (*s).to_owned()),
        }
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| e.contains('@') && e.len() <= crate::accounts::MAX_EMAIL_BYTES)
        .ok_or("the assertion has no usable email")?;
        let first = |names: &[&str]| attribute(&a, names).first().map(|s| (*s).to_owned());
        let (given_name, family_name) = match (first(&GIVEN_NAMES), first(&FAMILY_NAMES)) {
            (None, None) => (first(&DISPLAY_NAMES), None),
            other => other,
        };
        Ok(Verified {
            assertion_id: a.id.clone(),
            who: Asserted {
                subject: format!(
                    "{}|{}",
                    name_id.format.as_deref().unwrap_or_default(),
                    name_id.value
                ),
                email,
                given_name,
                family_name,
                groups: attribute(&a, &[group_attribute])
                    .into_iter()
                    .take(MAX_TOKEN_GROUPS)
                    .map(str::to_owned)
                    .collect(),
            },
        })
    }
}

#[cfg(not(feature = "saml"))]
mod xml {
    //! This build has no SAML: connections cannot be made, so none of these is reached
    //! with a connection, and each says why.
    use super::{IdpMetadata, Sp, Verified};

    const NO_SAML: &str = "this build has no SAML support (the `saml` feature)";

    pub(super) fn read_metadata(_xml: &str) -> Result<IdpMetadata, String> {
        Err(NO_SAML.into())
    }
    pub(super) fn authn_request(
        _md: &str,
        _sp: &Sp,
        _sso: &str,
        _id: &str,
        _relay: &str,
    ) -> Result<String, String> {
        Err(NO_SAML.into())
    }
    pub(super) fn verify(
        _md: &str,
        _sp: &Sp,
        _response: &str,
        _id: &str,
        _email: Option<&str>,
        _groups: &str,
    ) -> Result<Verified, String> {
        Err(NO_SAML.into())
    }
}

/// Runs blocking XML work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, String> + Send + 'static,
) -> std::result::Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("the SAML worker failed: {e}"))?
}

impl Services {
    /// The settings of a request: checked, its metadata read (fetched when given by URL).
    /// On a replace, `kept` is the stored connection's: a request giving no metadata keeps
    /// its identity provider's.
    async fn saml_config(
        &self,
        req: &SamlConnectionRequest,
        kept: Option<&Config>,
    ) -> Result<Config> {
        connection_name(&req.name)?;
        let allowed_domains = domains(&req.allowed_domains)?;
        mapping(&req.group_mapping)?;
        let group_attribute = req
            .group_attribute
            .clone()
            .unwrap_or_else(|| "groups".into());
        list_field("group_attribute", std::slice::from_ref(&group_attribute))?;
        if let Some(e) = &req.email_attribute {
            list_field("email_attribute", std::slice::from_ref(e))?;
        }
        let xml = match (&req.idp_metadata_xml, &req.idp_metadata_url, kept) {
            (None, None, Some(k)) => {
                return Ok(Config {
                    allowed_domains,
                    email_attribute: req.email_attribute.clone(),
                    group_attribute,
                    group_mapping: req.group_mapping.clone(),
                    ..k.clone()
                });
            }
            (Some(xml), None, _) => xml.clone(),
            (None, Some(url), _) => {
                check_provider_url("idp_metadata_url", url)?;
                let fetched = async {
                    let resp = self
                        .oidc
                        .http
                        .get(url)
                        .send()
                        .await
                        .map_err(|e| format!("fetching {url}: {e}"))?;
                    let body = read_bounded(resp, url).await?;
                    String::from_utf8(body).map_err(|_| format!("{url} answered non-UTF-8 text"))
                };
                fetched.await.map_err(|e| {
                    ServiceError::field(
                        "idp_metadata_url",
                        format!("the metadata could not be read: {e}"),
                    )
                })?
            }
            _ => {
                return Err(ServiceError::field(
                    "idp_metadata_xml",
                    "give exactly one of idp_metadata_xml and idp_metadata_url (on a replace, \
                     neither keeps the stored metadata)",
                ));
            }
        };
        if xml.len() > MAX_METADATA_BYTES {
            return Err(ServiceError::field(
                "idp_metadata_xml",
                format!("the metadata may be at most {MAX_METADATA_BYTES} bytes"),
            ));
        }
        let field = if req.idp_metadata_url.is_some() {
            "idp_metadata_url"
        } else {
            "idp_metadata_xml"
        };
        let parsed = {
            let xml = xml.clone();
            blocking(move || xml::read_metadata(&xml))
                .await
                .map_err(|e| ServiceError::field(field, e))?
        };
        check_provider_url("idp_metadata_xml", &parsed.sso_url).map_err(|_| {
            ServiceError::field(
                field,
                format!(
                    "the single sign-on URL must be https (http only to a loopback address): {:?}",
                    parsed.sso_url
                ),
            )
        })?;
        Ok(Config {
            idp_entity_id: parsed.entity_id,
            idp_sso_url: parsed.sso_url,
            idp_metadata_xml: xml,
            idp_metadata_url: req.idp_metadata_url.clone(),
            idp_certificate_sha256: parsed.certificate_sha256,
            allowed_domains,
            email_attribute: req.email_attribute.clone(),
            group_attribute,
            group_mapping: req.group_mapping.clone(),
        })
    }

    fn saml_view(&self, base: &str, rec: &SsoConnectionRecord) -> Result<SamlConnection> {
        let c: Config = serde_json::from_str(&rec.config)
            .map_err(|e| ServiceError::Internal(format!("sign-in connection {}: {e}", rec.id)))?;
        let me = sp(base, &rec.id);
        Ok(SamlConnection {
            id: rec.id.clone(),
            org_id: rec.org_id.clone(),
            name: rec.name.clone(),
            idp_entity_id: c.idp_entity_id,
            idp_sso_url: c.idp_sso_url,
            idp_metadata_url: c.idp_metadata_url,
            idp_certificate_sha256: c.idp_certificate_sha256,
            allowed_domains: c.allowed_domains,
            email_attribute: c.email_attribute,
            group_attribute: c.group_attribute,
            group_mapping: c.group_mapping,
            sp_entity_id: me.entity_id,
            acs_url: me.acs_url,
            sign_in_url: format!("{base}/auth/saml/{}/start", rec.id),
            created: rec.created.clone(),
            updated: rec.updated.clone(),
        })
    }

    /// `POST /v1/organization/{id}/saml` (Owners, as for OpenID Connect).
    pub async fn create_saml(
        &self,
        principal: &Principal,
        base: &str,
        req: &SamlConnectionRequest,
    ) -> Result<SamlConnection> {
        let pass = self
            .org_grant(principal, Permission::Update, Kind::Organization)
            .await?;
        let config = self.saml_config(req, None).await?;
        self.may_configure_sign_in(principal, &config.group_mapping, &config.allowed_domains)
            .await?;
        let now = self.now();
        let rec = SsoConnectionRecord {
            id: random::uuid()?,
            org_id: principal.org_id.clone(),
            name: req.name.trim().to_owned(),
            protocol: SAML.into(),
            config: serde_json::to_string(&config)
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
            secret_dek_version: 0,
            secret_ciphertext: String::new(),
            created: now.clone(),
            updated: now,
        };
        self.store.insert_sso_connection(&pass, &rec).await?;
        let view = self.saml_view(base, &rec)?;
        principal
            .trail
            .change(json!({"created": "saml_connection", "id": rec.id,
            "settings": saml_for_audit(&view)}));
        Ok(view)
    }

    /// `PUT /v1/organization/{id}/saml/{connection}`: replaces a connection's settings.
    pub async fn replace_saml(
        &self,
        principal: &Principal,
        base: &str,
        id: &str,
        req: &SamlConnectionRequest,
    ) -> Result<SamlConnection> {
        let pass = self
            .org_grant(principal, Permission::Update, Kind::Organization)
            .await?;
        let old = self.org_connection(principal, id, SAML).await?;
        let kept: Config = serde_json::from_str(&old.config)
            .map_err(|e| ServiceError::Internal(format!("stored SAML connection: {e}")))?;
        let config = self.saml_config(req, Some(&kept)).await?;
        self.may_configure_sign_in(principal, &config.group_mapping, &config.allowed_domains)
            .await?;
        let rec = SsoConnectionRecord {
            name: req.name.trim().to_owned(),
            config: serde_json::to_string(&config)
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
            updated: self.now(),
            ..old.clone()
        };
        if !self.store.update_sso_connection(&pass, &rec).await? {
            return Err(ServiceError::NotFound(format!("sign-in connection {id:?}")));
        }
        let before = self.saml_view(base, &old)?;
        let view = self.saml_view(base, &rec)?;
        principal
            .trail
            .change(json!({"updated": "saml_connection", "id": id,
            "before": saml_for_audit(&before), "after": saml_for_audit(&view)}));
        Ok(view)
    }

    /// `GET /v1/organization/{id}/saml` (Owners).
    pub async fn list_saml(
        &self,
        principal: &Principal,
        base: &str,
    ) -> Result<Vec<SamlConnection>> {
        self.org_connections(principal, SAML)
            .await?
            .iter()
            .map(|r| self.saml_view(base, r))
            .collect()
    }

    /// `DELETE /v1/organization/{id}/saml/{connection}`.
    pub async fn delete_saml(&self, principal: &Principal, id: &str) -> Result<()> {
        self.delete_sso(principal, id, SAML).await
    }

    async fn saml_connection(&self, id: &str) -> Result<(SsoConnectionRecord, Config)> {
        let rec = self
            .store
            .sso_connection(&why(), id)
            .await?
            .filter(|c| c.protocol == SAML)
            .ok_or_else(|| ServiceError::NotFound(format!("sign-in connection {id:?}")))?;
        let config: Config =
            serde_json::from_str(&rec.config).map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok((rec, config))
    }

    /// `GET /auth/saml/{id}/metadata`: this service provider's metadata (public: the IdP's
    /// administrator registers it).
    pub async fn saml_sp_metadata(&self, base: &str, id: &str) -> Result<String> {
        let (rec, _) = self.saml_connection(id).await?;
        let me = sp(base, &rec.id);
        Ok(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" \
             entityID=\"{}\">\n  <md:SPSSODescriptor AuthnRequestsSigned=\"false\" \
             WantAssertionsSigned=\"true\" \
             protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\n    \
             <md:AssertionConsumerService \
             Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Location=\"{}\" \
             index=\"0\" isDefault=\"true\"/>\n  </md:SPSSODescriptor>\n</md:EntityDescriptor>\n",
            escape_markup(&me.entity_id),
            escape_markup(&me.acs_url)
        ))
    }

    /// Starts a sign-in: records the request's id and a state (hashed) bound to this browser,
    /// and answers with the IdP's URL (HTTP-Redirect binding) and the cookie's secret.
    pub async fn saml_start(&self, base: &str, id: &str) -> Result<SamlStart> {
        let (rec, config) = self.saml_connection(id).await?;
        let now = self.now();
        if self.store.sso_logins_in_flight(&why(), &now).await? >= MAX_SIGN_INS_IN_FLIGHT {
            return Err(ServiceError::Busy(
                "too many sign-ins are in progress; try again in a few minutes".into(),
            ));
        }
        // An xsd:ID must not start with a digit.
        let request_id = format!("_{}", random::hex(&random::bytes::<20>()?));
        let state = B64URL.encode(random::bytes::<32>()?);
        let browser_secret = B64URL.encode(random::bytes::<32>()?);
        self.store
            .insert_sso_login(
                &why(),
                &SsoLoginRecord {
                    state_hash: sha256_hex(&state),
                    browser_hash: sha256_hex(&browser_secret),
                    connection_id: rec.id.clone(),
                    nonce: request_id.clone(),
                    code_verifier: String::new(),
                    created: now.clone(),
                    expires: self.after(LOGIN_TTL_SECS),
                    verified: None,
                },
                &now,
            )
            .await?;
        let me = sp(base, &rec.id);
        let redirect_url = blocking(move || {
            xml::authn_request(
                &config.idp_metadata_xml,
                &me,
                &config.idp_sso_url,
                &request_id,
                &state,
            )
        })
        .await
        .map_err(ServiceError::Internal)?;
        Ok(SamlStart {
            redirect_url,
            browser_secret,
        })
    }

    /// The assertion consumer service: takes the sign-in in flight that `relay_state` names
    /// (once), verifies the response against it, records the assertion against replay, and
    /// keeps what it asserts for the browser; answers the token that `/auth/saml/finish`
    /// takes. Every refusal is the same 401 to the browser, with its reason logged.
    pub async fn saml_acs(
        &self,
        base: &str,
        id: &str,
        response: &str,
        relay_state: &str,
        from: Option<&str>,
        audit_refusal: bool,
    ) -> Result<String> {
        match self.saml_verify(base, id, response, relay_state).await {
            Ok(token) => Ok(token),
            Err((rec, Refusal(reason))) => Err(self
                .refuse(SAML, rec.as_ref(), &reason, from, audit_refusal)
                .await),
        }
    }

    async fn saml_verify(
        &self,
        base: &str,
        id: &str,
        response: &str,
        relay_state: &str,
    ) -> std::result::Result<String, (Option<SsoConnectionRecord>, Refusal)> {
        let (rec, config) = self
            .saml_connection(id)
            .await
            .map_err(|e| (None, Refusal(e.to_string())))?;
        let fail = |r: Refusal| (Some(rec.clone()), r);
        let login = if relay_state.is_empty() || relay_state.len() > 128 {
            None
        } else {
            self.store
                .take_sso_login(&why(), &sha256_hex(relay_state), &self.now())
                .await
                .map_err(|e| fail(e.into()))?
        };
        let login = login
            .filter(|l| l.connection_id == rec.id && l.verified.is_none())
            .ok_or_else(|| fail(Refusal("unknown, used or expired RelayState".into())))?;
        if response.is_empty() || response.len() > MAX_RESPONSE_BYTES {
            return Err(fail(Refusal("no usable SAMLResponse".into())));
        }
        let me = sp(base, &rec.id);
        let (md, request_id, response) = (
            config.idp_metadata_xml.clone(),
            login.nonce.clone(),
            response.to_owned(),
        );
        let (email_attr, group_attr) = (config.email_attribute.clone(), config.group_attribute);
        let verified = blocking(move || {
            xml::verify(
                &md,
                &me,
                &response,
                &request_id,
                email_attr.as_deref(),
                &group_attr,
            )
        })
        .await
        .map_err(|e| fail(Refusal(format!("the response was refused: {e}"))))?;
        let now = self.now();
        let fresh = self
            .store
            .remember_saml_assertion(
                &why(),
                &rec.id,
                &verified.assertion_id,
                &self.after(MAX_ISSUE_DELAY_SECS + 2 * LEEWAY_SECS as i64),
                &now,
            )
            .await
            .map_err(|e| fail(e.into()))?;
        if !fresh {
            return Err(fail(Refusal(format!(
                "assertion {:?} was used already (a replay)",
                verified.assertion_id
            ))));
        }
        let token = B64URL.encode(random::bytes::<32>().map_err(|e| fail(e.into()))?);
        let who = serde_json::to_string(&verified.who).map_err(|e| fail(e.into()))?;
        self.store
            .insert_sso_login(
                &why(),
                &SsoLoginRecord {
                    state_hash: sha256_hex(&token),
                    browser_hash: login.browser_hash,
                    connection_id: rec.id.clone(),
                    nonce: String::new(),
                    code_verifier: String::new(),
                    created: now.clone(),
                    expires: self.after(VERIFIED_TTL_SECS),
                    verified: Some(who),
                },
                &now,
            )
            .await
            .map_err(|e| fail(e.into()))?;
        Ok(token)
    }

    /// `GET /auth/saml/finish`: the browser that started the sign-in comes back with its
    /// cookie for the identity a verified response asserted; the person is found, linked or
    /// provisioned, their groups mapped, and a session made.
    pub async fn saml_finish(
        &self,
        token: &str,
        browser_secret: Option<&str>,
        from: Option<&str>,
        user_agent: Option<&str>,
        audit_refusal: bool,
    ) -> Result<crate::accounts::NewSession> {
        let login = if token.is_empty() || token.len() > 128 {
            None
        } else {
            self.store
                .take_sso_login(&why(), &sha256_hex(token), &self.now())
                .await?
        };
        let found = match login {
            Some(l) => {
                let rec = self
                    .store
                    .sso_connection(&why(), &l.connection_id)
                    .await?
                    .filter(|c| c.protocol == SAML);
                rec.map(|r| (l, r))
            }
            None => None,
        };
        let Some((login, rec)) = found else {
            if audit_refusal {
                self.audit_sso_failure(SAML, None, "unknown, used or expired token", from)
                    .await;
            }
            return Err(REFUSED);
        };
        let outcome = self
            .saml_member(&rec, &login, browser_secret, from, user_agent)
            .await;
        match outcome {
            Ok(made) => Ok(made),
            Err(Refusal(reason)) => Err(self
                .refuse(SAML, Some(&rec), &reason, from, audit_refusal)
                .await),
        }
    }

    async fn saml_member(
        &self,
        rec: &SsoConnectionRecord,
        login: &SsoLoginRecord,
        browser_secret: Option<&str>,
        from: Option<&str>,
        user_agent: Option<&str>,
    ) -> std::result::Result<crate::accounts::NewSession, Refusal> {
        let bound = browser_secret.is_some_and(|b| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                sha256_hex(b).as_bytes(),
                login.browser_hash.as_bytes(),
            ))
        });
        if !bound {
            return Err(Refusal(
                "the sign-in was started by another browser (not bound to this one)".into(),
            ));
        }
        let who: Asserted = serde_json::from_str(
            login
                .verified
                .as_deref()
                .ok_or_else(|| Refusal("the response was not verified".into()))?,
        )?;
        let config: Config = serde_json::from_str(&rec.config)?;
        let admission = Admission {
            allowed_domains: &config.allowed_domains,
            group_mapping: &config.group_mapping,
        };
        self.provider_member(rec, &who, &admission, from, user_agent)
            .await
    }
}

/// Text escaped for HTML or XML content and attribute values.
pub fn escape_markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A connection's settings as the audit log keeps them.
fn saml_for_audit(v: &SamlConnection) -> serde_json::Value {
    json!({"name": v.name, "idp_entity_id": v.idp_entity_id, "idp_sso_url": v.idp_sso_url,
        "idp_metadata_url": v.idp_metadata_url,
        "idp_certificate_sha256": v.idp_certificate_sha256,
        "allowed_domains": v.allowed_domains, "email_attribute": v.email_attribute,
        "group_attribute": v.group_attribute, "group_mapping": v.group_mapping})
}

#[cfg(all(test, feature = "saml"))]
mod tests {
    use super::xml::one_assertion;

    const NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";

    #[test]
    fn exactly_one_assertion_in_the_saml_namespace() {
        let one = format!("<r xmlns:a=\"{NS}\"><a:Assertion ID=\"x\"/></r>");
        assert!(one_assertion(&one).is_ok());
        // A default namespace counts the same as a prefix.
        let default = format!("<r><Assertion xmlns=\"{NS}\" ID=\"x\"/></r>");
        assert!(one_assertion(&default).is_ok());
        for bad in [
            format!("<r xmlns:a=\"{NS}\"><a:Assertion/><a:Assertion/></r>"),
            format!(
                "<r xmlns:a=\"{NS}\"><a:Assertion><a:Advice><a:Assertion/></a:Advice></a:Assertion></r>"
            ),
            format!("<r xmlns:b=\"{NS}\"><b:Assertion/><x:Assertion xmlns:x=\"{NS}\"/></r>"),
            format!("<r xmlns:a=\"{NS}\"><a:EncryptedAssertion/><a:Assertion/></r>"),
            "<r><Assertion/></r>".to_owned(),
            "<r><a:Assertion xmlns:a=\"urn:other\"/></r>".to_owned(),
            format!("<r xmlns:a=\"{NS}\"><a:Assertion>"),
        ] {
            assert!(one_assertion(&bad).is_err(), "{bad}");
        }
    }
}

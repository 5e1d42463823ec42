//! AWS credentials from the standard chain, in its order:
//!
//! 1. the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and
//!    `AWS_SESSION_TOKEN`);
//! 2. a web identity token (EKS service accounts): `AWS_WEB_IDENTITY_TOKEN_FILE` and
//!    `AWS_ROLE_ARN` (`AWS_ROLE_SESSION_NAME` optional), exchanged with STS
//!    `AssumeRoleWithWebIdentity` (`AWS_ENDPOINT_URL_STS` or `AWS_ENDPOINT_URL` to override
//!    the endpoint);
//! 3. the container credentials endpoint (ECS, EKS Pod Identity):
//!    `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (on `169.254.170.2`) or
//!    `AWS_CONTAINER_CREDENTIALS_FULL_URI`, with `AWS_CONTAINER_AUTHORIZATION_TOKEN` or
//!    `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` when set;
//! 4. the EC2 instance metadata service, IMDSv2 only (`AWS_EC2_METADATA_SERVICE_ENDPOINT` to
//!    override it, `AWS_EC2_METADATA_DISABLED=true` to skip it).
//!
//! The source is chosen once, from the environment; temporary credentials are cached and
//! fetched again five minutes before they expire. Every fetch has a timeout and the bounded
//! retries of [`crate::retry`] (service `credentials`).

use crate::retry::Outcome;
use crate::sigv4::Credentials;
use crate::{CryptoError, Result};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// Fetched again this long before they expire.
const REFRESH_BEFORE: time::Duration = time::Duration::minutes(5);
const ECS_HOST: &str = "http://169.254.170.2";
const IMDS: &str = "http://169.254.169.254";

/// Where credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Environment,
    WebIdentity {
        role_arn: String,
        token_file: String,
        session_name: String,
        sts: String,
    },
    Container {
        url: String,
        token: Option<String>,
        token_file: Option<String>,
    },
    InstanceMetadata {
        endpoint: String,
    },
}

impl Source {
    /// The first source of the chain the environment configures.
    pub fn from_env(region: &str) -> Result<Self> {
        Self::from_vars(region, |name| {
            std::env::var(name).ok().filter(|v| !v.is_empty())
        })
    }

    /// As [`Source::from_env`], reading variables through `var`.
    pub fn from_vars(region: &str, var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        if var("AWS_ACCESS_KEY_ID").is_some() && var("AWS_SECRET_ACCESS_KEY").is_some() {
            return Ok(Self::Environment);
        }
        if let (Some(token_file), Some(role_arn)) =
            (var("AWS_WEB_IDENTITY_TOKEN_FILE"), var("AWS_ROLE_ARN"))
        {
            let sts = var("AWS_ENDPOINT_URL_STS")
                .or_else(|| var("AWS_ENDPOINT_URL"))
                .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
            return Ok(Self::WebIdentity {
                role_arn,
                token_file,
                session_name: var("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| "holdfast".into()),
                sts: sts.trim_end_matches('/').to_owned(),
            });
        }
        let container = var("AWS_CONTAINER_CREDENTIALS_FULL_URI").or_else(|| {
            var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").map(|p| format!("{ECS_HOST}{p}"))
        });
        if let Some(url) = container {
            return Ok(Self::Container {
                url,
                token: var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
                token_file: var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
            });
        }
        if var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err(CryptoError::Kms(
                "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a web \
                 identity (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN) or a container \
                 credentials URI; instance metadata is disabled"
                    .into(),
            ));
        }
        let endpoint = var("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| IMDS.into());
        Ok(Self::InstanceMetadata {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Environment => "environment",
            Self::WebIdentity { .. } => "web identity",
            Self::Container { .. } => "container endpoint",
            Self::InstanceMetadata { .. } => "instance metadata",
        }
    }
}

struct Cached {
    credentials: Arc<Credentials>,
    /// `None`: they do not expire (the environment's).
    refresh_at: Option<OffsetDateTime>,
}

/// Credentials from one [`Source`], cached until shortly before they expire.
pub struct CredentialChain {
    source: Source,
    http: reqwest::Client,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

impl CredentialChain {
    pub fn new(source: Source) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| CryptoError::Kms(e.to_string()))?;
        Ok(Self {
            source,
            http,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// Credentials given outright (tests, tools).
    pub fn fixed(credentials: Credentials) -> Result<Self> {
        let mut chain = Self::new(Source::Environment)?;
        chain.cached = tokio::sync::Mutex::new(Some(Cached {
            credentials: Arc::new(credentials),
            refresh_at: None,
        }));
        Ok(chain)
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Current credentials: cached, or fetched from the source.
    pub async fn get(&self) -> Result<Arc<Credentials>> {
        let mut cached = self.cached.lock().await;
        #[allow(clippy::disallowed_methods)] // expiry is the real time's
        let now = OffsetDateTime::now_utc();
        if let Some(c) = cached.as_ref()
            && c.refresh_at.is_none_or(|at| now < at)
        {
            return Ok(c.credentials.clone());
        }
        let (credentials, expires) = self.fetch().await?;
        let credentials = Arc::new(credentials);
        *cached = Some(Cached {
            credentials: credentials.clone(),
            refresh_at: expires.map(|e| e - REFRESH_BEFORE),
        });
        Ok(credentials)
    }

    async fn fetch(&self) -> Result<(Credentials, Option<OffsetDateTime>)> {
        let failed = |e: CryptoError| {
            CryptoError::Kms(format!(
                "AWS credentials from the {}: {e}",
                self.source.name()
            ))
        };
        match &self.source {
            Source::Environment => Credentials::from_env().map(|c| (c, None)),
            Source::WebIdentity {
                role_arn,
                token_file,
                session_name,
                sts,
            } => {
                let token = std::fs::read_to_string(token_file).map_err(|e| {
                    CryptoError::Kms(format!("the web identity token file {token_file}: {e}"))
                })?;
                let form = [
                    ("Action", "AssumeRoleWithWebIdentity"),
                    ("Version", "2011-06-15"),
                    ("RoleArn", role_arn.as_str()),
                    ("RoleSessionName", session_name.as_str()),
                    ("WebIdentityToken", token.trim()),
                ];
                let body = form
                    .iter()
                    .map(|(k, v)| format!("{k}={}", crate::sigv4::uri_encode(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                let text = crate::retry::retry("credentials", || {
                    crate::retry::http_outcome(
                        "sts",
                        self.http
                            .post(format!("{sts}/"))
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body(body.clone()),
                    )
                })
                .await
                .map_err(failed)?;
                from_sts_xml(&text).map_err(failed)
            }
            Source::Container {
                url,
                token,
                token_file,
            } => {
                let token = match (token_file, token) {
                    (Some(f), _) => Some(
                        std::fs::read_to_string(f)
                            .map_err(|e| CryptoError::Kms(format!("the token file {f}: {e}")))?
                            .trim()
                            .to_owned(),
                    ),
                    (None, t) => t.clone(),
                };
                let text = crate::retry::retry("credentials", || {
                    let mut req = self.http.get(url);
                    if let Some(t) = &token {
                        req = req.header("authorization", t);
                    }
                    crate::retry::http_outcome("container credentials", req)
                })
                .await
                .map_err(failed)?;
                from_json(&text).map_err(failed)
            }
            Source::InstanceMetadata { endpoint } => {
                let text = crate::retry::retry("credentials", || self.imds(endpoint))
                    .await
                    .map_err(failed)?;
                from_json(&text).map_err(failed)
            }
        }
    }

    /// IMDSv2: a session token, the instance role's name, then its credentials.
    async fn imds(&self, endpoint: &str) -> Outcome<String, CryptoError> {
        let session = self
            .http
            .put(format!("{endpoint}/latest/api/token"))
            .header("x-aws-ec2-metadata-token-ttl-seconds", "300");
        let token = match crate::retry::http_outcome("instance metadata", session).await {
            Outcome::Done(t) => t,
            other => return other,
        };
        let base = format!("{endpoint}/latest/meta-data/iam/security-credentials/");
        let get = |url: String| {
            self.http
                .get(url)
                .header("x-aws-ec2-metadata-token", token.trim())
        };
        let role = match crate::retry::http_outcome("instance metadata", get(base.clone())).await {
            Outcome::Done(r) => r,
            other => return other,
        };
        let Some(role) = role.lines().map(str::trim).find(|l| !l.is_empty()) else {
            return Outcome::Fail(CryptoError::Kms("the instance has no IAM role".into()));
        };
        crate::retry::http_outcome("instance metadata", get(format!("{base}{role}"))).await
    }
}

fn expiry(text: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| CryptoError::Kms(format!("expiration {text:?}: {e}")))
}

/// `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}` (container and instance
/// metadata).
fn from_json(text: &str) -> Result<(Credentials, Option<OffsetDateTime>)> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| CryptoError::Kms(format!("not JSON: {e}")))?;
    let field = |name: &str| {
        v.get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let (Some(id), Some(secret)) = (field("AccessKeyId"), field("SecretAccessKey")) else {
        return Err(CryptoError::Kms(
            "no AccessKeyId and SecretAccessKey in the answer".into(),
        ));
    };
    let expires = field("Expiration").map(|e| expiry(&e)).transpose()?;
    Ok((
        Credentials {
            access_key_id: id,
            secret_access_key: SecretString::from(secret),
            session_token: field("Token").map(SecretString::from),
        },
        expires,
    ))
}

/// The text of the first `<name>…</name>` in `xml`.
fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml.get(start..)?.find(&format!("</{name}>"))?;
    xml.get(start..start + len)
}

/// The credentials in an `AssumeRoleWithWebIdentity` answer.
fn from_sts_xml(xml: &str) -> Result<(Credentials, Option<OffsetDateTime>)> {
    let creds = tag(xml, "Credentials")
        .ok_or_else(|| CryptoError::Kms("no Credentials in the STS answer".into()))?;
    let field = |name: &str| {
        tag(creds, name)
            .map(str::to_owned)
            .ok_or_else(|| CryptoError::Kms(format!("no {name} in the STS answer")))
    };
    Ok((
        Credentials {
            access_key_id: field("AccessKeyId")?,
            secret_access_key: SecretString::from(field("SecretAccessKey")?),
            session_token: Some(SecretString::from(field("SessionToken")?)),
        },
        Some(expiry(&field("Expiration")?)?),
    ))
}

impl std::fmt::Debug for CredentialChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CredentialChain({})", self.source.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_chain_takes_the_first_configured_source() {
        let all = [
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_ROLE_ARN", "arn:r"),
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/creds"),
        ];
        let pick = |skip: usize| Source::from_vars("eu-west-1", vars(&all[skip..])).ok();
        assert_eq!(pick(0), Some(Source::Environment));
        assert!(matches!(
            pick(2),
            Some(Source::WebIdentity { ref sts, ref session_name, .. })
                if sts == "https://sts.eu-west-1.amazonaws.com" && session_name == "holdfast"
        ));
        assert!(matches!(
            pick(4),
            Some(Source::Container { ref url, .. }) if url == "http://169.254.170.2/v2/creds"
        ));
        assert!(matches!(
            pick(5),
            Some(Source::InstanceMetadata { ref endpoint }) if endpoint == IMDS
        ));
        assert!(Source::from_vars("r", vars(&[("AWS_EC2_METADATA_DISABLED", "true")])).is_err());
    }

    #[test]
    fn answers_parse() {
        let xml = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>\
            <Credentials><AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>sk</SecretAccessKey>\
            <SessionToken>tok</SessionToken><Expiration>2026-12-01T20:39:46.149377Z</Expiration>\
            </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        let (c, e) = from_sts_xml(xml).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.access_key_id, "ASIA1");
        assert_eq!(
            c.session_token
                .map(|t| t.expose_secret().to_owned())
                .as_deref(),
            Some("tok")
        );
        assert!(e.is_some());
        let (c, e) = from_json(
            r#"{"AccessKeyId": "AK", "SecretAccessKey": "S", "Token": "T", "Expiration": "2026-12-02T19:39:43Z"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.access_key_id, "AK");
        assert!(e.is_some());
        assert!(from_json("{}").is_err());
        assert!(from_sts_xml("<Error/>").is_err());
    }
}

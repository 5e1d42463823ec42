-- Sign-in through an organization's identity provider (OpenID Connect). The client secret is
-- sealed under the organization's data key (like provider secrets) and never returned.
CREATE TABLE sso_connections (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    secret_dek_version BIGINT NOT NULL,
    secret_ciphertext TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE UNIQUE INDEX sso_connections_name ON sso_connections(org_id, name);
-- Which member a provider's subject is: the first sign-in links it, later ones follow it.
CREATE TABLE sso_identities (
    connection_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created TEXT NOT NULL,
    last_login TEXT NOT NULL,
    PRIMARY KEY (connection_id, subject)
);
-- Sign-ins started and not yet finished: the state (hashed), the browser that started it
-- (a hash of its cookie), the nonce and the PKCE verifier. Each is used at most once.
CREATE TABLE sso_logins (
    state_hash TEXT PRIMARY KEY,
    browser_hash TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    code_verifier TEXT NOT NULL,
    created TEXT NOT NULL,
    expires TEXT NOT NULL,
    used TEXT
);
CREATE INDEX sso_logins_expires ON sso_logins(expires);

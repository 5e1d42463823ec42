-- SAML connections live beside OpenID Connect ones: `protocol` tells them apart (a SAML
-- connection has no secret: its settings hold the identity provider's metadata).
ALTER TABLE sso_connections ADD COLUMN protocol TEXT NOT NULL DEFAULT 'oidc';
-- A SAML response verified at the assertion consumer service, waiting for the browser that
-- started the sign-in to come back with its cookie (the provider's cross-site POST does not
-- carry it): the identity it asserts, as JSON.
ALTER TABLE sso_logins ADD COLUMN verified TEXT;
-- Assertions already used, kept until they expire: a replayed assertion is refused.
CREATE TABLE saml_assertions (
    connection_id TEXT NOT NULL,
    assertion_id TEXT NOT NULL,
    expires TEXT NOT NULL,
    PRIMARY KEY (connection_id, assertion_id)
);
CREATE INDEX saml_assertions_expires ON saml_assertions(expires);

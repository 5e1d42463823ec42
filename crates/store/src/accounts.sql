-- Local accounts and browser sessions. Passwords are argon2id PHC strings; links (invite,
-- reset) and sessions are kept only as SHA-256 hashes of their 256-bit secrets.
CREATE TABLE passwords (
    user_id TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE account_links (
    id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    user_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    created TEXT NOT NULL,
    expires TEXT NOT NULL,
    used TEXT
);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    csrf_hash TEXT NOT NULL,
    user_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    method TEXT NOT NULL,
    created TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    expires TEXT NOT NULL,
    revoked TEXT,
    from_addr TEXT,
    user_agent TEXT
);
CREATE INDEX sessions_user ON sessions(org_id, user_id, created);
-- Failed sign-ins by account and by address, for throttling; older than the window are
-- removed as new ones come.
CREATE TABLE login_failures (
    subject TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX login_failures_subject ON login_failures(subject, at);
CREATE INDEX login_failures_at ON login_failures(at);
-- Whether members of an organization may sign in with a password (no row: they may).
CREATE TABLE sign_in_settings (
    org_id TEXT PRIMARY KEY,
    password_login BIGINT NOT NULL,
    updated TEXT NOT NULL
);
-- Sign-in finds members by their email, case-insensitively.
CREATE INDEX users_email_lower ON users(lower(email));

-- Keyed chains, one per organization (see holdfast_core::audit). Entries written before
-- keep chain NULL and form the legacy chain.
ALTER TABLE audit_log ADD COLUMN chain TEXT;
ALTER TABLE audit_log ADD COLUMN chain_seq BIGINT;
CREATE UNIQUE INDEX audit_chain ON audit_log(chain, chain_seq);

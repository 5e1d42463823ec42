//! Holdfast's pure domain core: identifiers, transaction ids, row merge semantics, the
//! experiment summary rules and the authorization decision. Nothing here does IO or awaits.

pub mod audit;
pub mod authz;
pub mod btql;
pub mod clock;
pub mod merge;
pub mod object;
pub mod pricing;
pub mod qexpr;
pub mod summary;
pub mod xact;

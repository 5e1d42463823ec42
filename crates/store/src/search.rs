//! Word search over rows, inside the store (and so inside its encryption at rest).
//!
//! Every row version's words (as `MATCH` sees them: [`holdfast_core::qexpr::value_words`])
//! of `input`, `output`, `expected`, `metadata` and `error` are indexed.
//!
//! - Embedded store: an FTS5 table `row_text` without stored content or positions, one
//!   document per version (`rowid` = the version's `seq`) holding each word as one token:
//!   the object's scope (`s` and 16 hex digits of a hash of its type and id), a letter naming
//!   the field (`a` input, `b` output, `c` expected, `d` metadata, `e` error) and the word.
//!   A search so reads only the postings of that object's words, with no intersection: an
//!   earlier form with one scope token per document spent most of a 1,000-row search's
//!   index time seeking through that token's postings (one entry per version in the
//!   object). Terms sharing a scope are adjacent in FTS5's sorted segments, which store
//!   each term after its common prefix with the previous one. Two objects whose scopes
//!   collide would only share candidates: rows are read by object.
//! - PostgreSQL: a table `row_words` of one `tsvector` per version (`seq`) with a GIN index;
//!   the fields are weights (`input` A, `output` B, `expected` C, `metadata` and `error` D),
//!   and the same object token is one more lexeme. The lexemes are the words themselves (a
//!   literal built here), never run through a text-search parser, so both backends find
//!   exactly the same words.
//!
//! Indexing a version in its commit cost 80% of ingest throughput on the embedded store (FTS5
//! hashing, sorting and merging ~300 words a span, on the single writer) and 84% on
//! PostgreSQL (a `tsvector` column with GIN), so the writer indexes versions after they
//! commit: whenever it is idle, and otherwise in small batches that take at most a tenth of
//! its time. A search also names every row with a version not yet indexed, so a row
//! acknowledged by a write is found by the next query whatever the index's lag:
//!
//! - Embedded store: one writer commits versions in `seq` order, so
//!   `counters.text_indexed_seq` says up to which `seq` every version is indexed, and the
//!   rows after it are the unindexed ones.
//! - PostgreSQL: the statement storing versions also lists the live ones in
//!   `row_words_pending` (a counter would do, as it does for the value index: writers are
//!   serialized by the transaction counter, so versions commit in `seq` order); indexing
//!   takes a batch from that list (`FOR UPDATE SKIP LOCKED`, so replicas share the work and a
//!   crash leaves the batch listed) and writes its words in the same transaction. A version is
//!   therefore always either listed or indexed, and a search reads both in one statement (one
//!   snapshot).
//!
//! On the embedded store the index is **exact**, like the value index: indexing a version
//! removes the document of the row's previous version (FTS5 `contentless_delete`), a
//! version replaced within the batch is never added, and a deletion leaves the row none. So
//! a version found there is its row's newest indexed version, and, unless the row has a
//! version the index does not hold yet or one after the query's snapshot (both listed, and
//! read through `row_index`), the row's current one: [`Store::search_read`] reads it once,
//! without looking the row up (at 1M spans, a found row then costs one random page read
//! instead of two). On PostgreSQL the index answers which rows *had* a version holding the
//! words. Either way callers evaluate the whole filter again on what is read, so an outdated
//! or shared entry can only cost a read, never a wrong answer.
//! A field with more than [`MAX_WORDS_PER_FIELD`] distinct words indexes [`OVERFLOW`] in
//! their place, and every search also asks for that word, so such a row is always checked.
//!
//! Stores written before this index existed are indexed by the writer like new versions
//! (their versions are after the counter, or listed by the migration).

use crate::db::{Pools, with_pool};
use crate::index::{RowIndex, Version, newer};
use crate::rows::{StoredRow, decode, decode_data};
use crate::{Result, Store, StoreError};
use holdfast_core::authz::ObjectPass;
use holdfast_core::qexpr::value_words;
use holdfast_core::xact::XactId;
use serde_json::{Map, Value};
use sha2::Digest;
use sqlx::QueryBuilder;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Whether the writer lists PostgreSQL versions for the word index (always, except in a
/// benchmark build measuring ingest without the indexes).
pub(crate) fn lists_words(pools: &Pools) -> bool {
    matches!(pools, Pools::Postgres(_)) && !cfg!(feature = "bench-no-search-index")
}

/// Longest `tsvector` literal indexed as it is: PostgreSQL refuses a `tsvector` over 1 MiB,
/// so a version with more words is indexed as [`OVERFLOW`] in each of its fields.
const MAX_TSVECTOR_BYTES: usize = 512 * 1024;

/// The indexed fields, in column (and weight) order.
pub const FIELDS: [&str; 5] = ["input", "output", "expected", "metadata", "error"];
/// The letter each field's words carry in the embedded store's index.
const PREFIXES: [char; 5] = ['a', 'b', 'c', 'd', 'e'];
/// PostgreSQL weight of each field.
const WEIGHTS: [char; 5] = ['A', 'B', 'C', 'D', 'D'];
/// Distinct words of one field indexed one by one; past this, [`OVERFLOW`].
pub const MAX_WORDS_PER_FIELD: usize = 20_000;
/// Longest word indexed as itself, in bytes (PostgreSQL refuses lexemes over 2,047 bytes); a
/// field with a longer word indexes [`OVERFLOW`] in its place.
pub const MAX_WORD_BYTES: usize = 255;
/// Stands for "too many words to list": searches always match it.
pub const OVERFLOW: &str = "hf0overflow";
/// Rows a search may name before the caller is told to read the object instead.
pub const MAX_CANDIDATES: usize = 100_000;

/// One field's distinct words, per indexed field.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SearchText(pub [Vec<String>; 5]);

pub(crate) fn search_text(row: &Map<String, Value>) -> SearchText {
    let mut out = SearchText::default();
    for (field, words) in FIELDS.iter().zip(out.0.iter_mut()) {
        let Some(v) = row.get(*field) else { continue };
        let mut seen = HashSet::new();
        let mut overflow = false;
        value_words(v, &mut |w| {
            if w.len() > MAX_WORD_BYTES {
                overflow = true;
            } else if seen.len() <= MAX_WORDS_PER_FIELD && !seen.contains(&w) {
                seen.insert(w);
            }
        });
        if seen.len() > MAX_WORDS_PER_FIELD {
            words.push(OVERFLOW.to_owned());
        } else {
            words.extend(seen);
            if overflow {
                words.push(OVERFLOW.to_owned());
            }
        }
    }
    out
}

/// The FTS5 token naming an object.
fn scope(object_type: &str, object_id: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(object_type.as_bytes());
    h.update([0u8]);
    h.update(object_id.as_bytes());
    let d = h.finalize();
    let hex: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("s{hex}")
}

/// The embedded store's document of a version: each word as a token of its object's scope,
/// its field's prefix and the word.
fn document(v: &ToIndex<'_>) -> String {
    let scope = scope(v.object_type, v.object_id);
    let mut doc = String::new();
    for (prefix, words) in PREFIXES.iter().zip(&v.text.0) {
        for w in words {
            if !doc.is_empty() {
                doc.push(' ');
            }
            doc.push_str(&scope);
            doc.push(*prefix);
            doc.push_str(w);
        }
    }
    doc
}

/// PostgreSQL's document of a version: its words as a `tsvector` literal and its object's
/// token; a literal too long to index is replaced by [`OVERFLOW`] in each field with words.
fn pg_document(scope_token: &str, t: &SearchText) -> String {
    let words = tsvector(t);
    if words.len() <= MAX_TSVECTOR_BYTES {
        return format!("'{scope_token}' {words}");
    }
    let mut overflow = SearchText::default();
    for (o, w) in overflow.0.iter_mut().zip(&t.0) {
        if !w.is_empty() {
            o.push(OVERFLOW.to_owned());
        }
    }
    format!("'{scope_token}' {}", tsvector(&overflow))
}

/// The `tsvector` literal of a version's words: `'word':1A,2B ...` (a word is letters and
/// digits only, so it needs no escaping).
fn tsvector(t: &SearchText) -> String {
    let mut at: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (i, words) in t.0.iter().enumerate() {
        let weight = WEIGHTS.get(i).copied().unwrap_or('D');
        for w in words {
            at.entry(w.as_str())
                .or_default()
                .push(format!("{}{weight}", i + 1));
        }
    }
    at.into_iter()
        .map(|(w, pos)| format!("'{w}':{}", pos.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Rows having every word of `words` in field `FIELDS[field]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TextQuery {
    pub field: usize,
    pub words: Vec<String>,
}

fn is_word(w: &str) -> bool {
    !w.is_empty() && w.chars().all(char::is_alphanumeric)
}

/// The FTS5 query: any of the conjunctions, of the object's words.
fn fts5_query(scope: &str, any_of: &[TextQuery]) -> String {
    let alternatives: Vec<String> = any_of
        .iter()
        .filter_map(|q| {
            let prefix = PREFIXES.get(q.field)?;
            let token = |w: &str| format!("\"{scope}{prefix}{w}\"");
            let all: Vec<String> = q.words.iter().map(|w| token(w)).collect();
            Some(format!("({}) OR {}", all.join(" AND "), token(OVERFLOW)))
        })
        .collect();
    alternatives.join(" OR ")
}

/// The `tsquery` literal: any of the conjunctions, within the object's scope.
fn pg_query(scope_token: &str, any_of: &[TextQuery]) -> String {
    format!("'{scope_token}' & ({})", tsquery(any_of))
}

/// The `tsquery` literal of any of the conjunctions.
fn tsquery(any_of: &[TextQuery]) -> String {
    any_of
        .iter()
        .filter_map(|q| {
            let weight = WEIGHTS.get(q.field)?;
            let all: Vec<String> = q.words.iter().map(|w| format!("'{w}':{weight}")).collect();
            Some(format!("(({}) | '{OVERFLOW}':{weight})", all.join(" & ")))
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A version to index: its `seq`, object and words.
pub(crate) struct ToIndex<'a> {
    pub seq: i64,
    pub object_type: &'a str,
    pub object_id: &'a str,
    pub text: &'a SearchText,
}

/// Adds versions' documents to the embedded store's `row_text`.
async fn insert_documents(
    conn: &mut sqlx::SqliteConnection,
    versions: &[ToIndex<'_>],
) -> Result<()> {
    for chunk in versions.chunks(500) {
        let mut qb = QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO row_text (rowid, words) ");
        qb.push_values(chunk, |mut b, v| {
            b.push_bind(v.seq).push_bind(document(v));
        });
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Removes versions' documents from the embedded store's `row_text` (a contentless table
/// with `contentless_delete`, so by `rowid` alone).
pub(crate) async fn delete_documents(
    conn: &mut sqlx::SqliteConnection,
    seqs: &[i64],
) -> Result<()> {
    for chunk in seqs.chunks(500) {
        let mut qb = QueryBuilder::<sqlx::Sqlite>::new("DELETE FROM row_text WHERE rowid IN (");
        let mut sep = qb.separated(", ");
        for seq in chunk {
            sep.push_bind(*seq);
        }
        qb.push(")");
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// A version read for the indexes written after the commit.
pub(crate) struct Unindexed {
    pub seq: i64,
    pub xact: i64,
    pub object_type: String,
    pub object_id: String,
    pub row_id: String,
    /// `None` for a deletion.
    pub data: Option<Map<String, Value>>,
}

/// Most stored bytes one indexing batch reads (at least one version; the embedded store's
/// also the rest of its last transaction), so that a batch of large rows does not hold
/// `limit` times the largest row in memory.
pub(crate) const MAX_BATCH_BYTES: i64 = 16 * 1024 * 1024;

/// How many of the first (seq, stored bytes) fit in `max_bytes`: at least one.
pub(crate) fn within_bytes(listed: &[(i64, i64)], max_bytes: i64) -> usize {
    let mut bytes = 0i64;
    let fit = listed
        .iter()
        .take_while(|(_, len)| {
            bytes = bytes.saturating_add(*len);
            bytes <= max_bytes
        })
        .count();
    fit.max(listed.len().min(1))
}

/// Statements of the indexes written after the commit that both backends run alike, once
/// per backend (`on_sqlite`, `on_postgres`): PostgreSQL's writers are serialized by the
/// transaction counter like the embedded store's (see the crate docs), so versions commit in
/// `seq` order there too.
macro_rules! backend_statements {
    ($m:ident, $DB:ty) => {
        pub(crate) mod $m {
            use super::*;

            /// The versions after `from`: `limit` of them (fewer when they pass [`MAX_BATCH_BYTES`]),
            /// and the rest of the last one's transaction; whether versions were left for the byte
            /// budget.
            pub(crate) async fn unindexed(
                conn: &mut <$DB as sqlx::Database>::Connection,
                from: i64,
                limit: i64,
            ) -> Result<(Vec<Unindexed>, bool)> {
                type Found = (i64, i64, String, String, String, bool, Vec<u8>);
                const SELECT: &str = "SELECT seq, xact_id, object_type, object_id, row_id, is_deleted, data \
                                      FROM rows WHERE seq > $1";
                let sizes: Vec<(i64, i64)> =
                    sqlx::query_as(
                        "SELECT seq, CAST(length(data) AS BIGINT) FROM rows WHERE seq > $1 \
                         ORDER BY seq LIMIT $2",
                    )
                        .bind(from)
                        .bind(limit)
                        .fetch_all(&mut *conn)
                        .await?;
                let fit = within_bytes(&sizes, MAX_BATCH_BYTES);
                let cut = fit < sizes.len();
                let Some(&(to, _)) = fit.checked_sub(1).and_then(|last| sizes.get(last)) else {
                    return Ok((Vec::new(), false));
                };
                let mut rows: Vec<Found> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{SELECT} AND seq <= $2 ORDER BY seq"
                )))
                .bind(from)
                .bind(to)
                .fetch_all(&mut *conn)
                .await?;
                // A batch ends with a whole transaction, so that the indexes always hold whole
                // transactions: what they hold is then what a read at a transaction sees.
                if let Some(&(last, xact, ..)) = rows.last() {
                    let rest: Vec<Found> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "{SELECT} AND xact_id = $2 ORDER BY seq"
                    )))
                    .bind(last)
                    .bind(xact)
                    .fetch_all(&mut *conn)
                    .await?;
                    rows.extend(rest);
                }
                let versions = rows
                    .into_iter()
                    .map(
                        |(seq, xact, object_type, object_id, row_id, deleted, data)| {
                            let data = if deleted {
                                None
                            } else {
                                Some(decode_data(&row_id, &data)?)
                            };
                            Ok(Unindexed {
                                seq,
                                xact,
                                object_type,
                                object_id,
                                row_id,
                                data,
                            })
                        },
                    )
                    .collect::<Result<Vec<_>>>()?;
                Ok((versions, cut))
            }

            /// The ids `select` names (a query over `rows r` with one parameter, `$1` = `first`), among
            /// the rows of the pass's object; at most `limit`, sorted.
            pub(crate) async fn object_row_ids<'c, E, T>(
                conn: E,
                select: &str,
                first: T,
                pass: &ObjectPass,
                limit: i64,
            ) -> Result<Vec<String>>
            where
                E: sqlx::Executor<'c, Database = $DB>,
                T: for<'q> sqlx::Encode<'q, $DB> + sqlx::Type<$DB> + Send + 'static,
            {
                let sql = format!(
                    "{select} AND r.object_type = $2 AND r.object_id = $3 AND r.org_id = $4 \
                     ORDER BY r.row_id LIMIT $5"
                );
                Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(first)
                    .bind(pass.object_type().as_str())
                    .bind(pass.object_id().to_owned())
                    .bind(pass.org_id().to_owned())
                    .bind(limit)
                    .fetch_all(conn)
                    .await?)
            }
        }
    };
}
backend_statements!(on_sqlite, sqlx::Sqlite);
backend_statements!(on_postgres, sqlx::Postgres);

/// Adds up to `limit` versions to the indexes written after the commit; how many it read
/// and whether more are waiting.
pub(crate) async fn catch_up_indexes(
    pools: &Pools,
    index: &RowIndex,
    limit: i64,
) -> Result<(i64, bool)> {
    match pools {
        Pools::Sqlite(p) => catch_up_sqlite(p, index, limit).await,
        Pools::Postgres(p) => {
            let (words, more_words) = catch_up_postgres(p, limit).await?;
            let (values, more_values) = crate::values::catch_up_postgres(p, limit).await?;
            Ok((words.max(values), more_words || more_values))
        }
    }
}

/// Embedded store: adds up to `limit` versions to the word index (after
/// `text_indexed_seq`) and to the value index (after `values_indexed_seq`, see `values`),
/// in one transaction with the counters' advance.
async fn catch_up_sqlite(
    p: &sqlx::SqlitePool,
    index: &RowIndex,
    limit: i64,
) -> Result<(i64, bool)> {
    let mut tx = p.begin().await?;
    let (text_from, values_from): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT value FROM counters WHERE name = 'text_indexed_seq'), \
                (SELECT value FROM counters WHERE name = 'values_indexed_seq')",
    )
    .fetch_one(&mut *tx)
    .await?;
    let from = text_from.min(values_from);
    let (batch, cut) = on_sqlite::unindexed(&mut tx, from, limit).await?;
    let Some(last) = batch.last().map(|b| b.seq) else {
        return Ok((0, false));
    };
    // Both indexes are exact: a version's entries replace those of the row's previous one.
    let after: Vec<&Unindexed> = batch.iter().filter(|v| v.seq > from).collect();
    let previous = crate::values::previous_versions(&mut tx, index, &after).await?;
    // Documents of versions replaced: those indexed before go, those in this batch never come.
    let mut replaced: HashSet<i64> = HashSet::new();
    let mut stale: Vec<i64> = Vec::new();
    for v in batch.iter().filter(|v| v.seq > text_from) {
        match previous.get(&v.seq) {
            Some(prev) if prev.seq > text_from => {
                replaced.insert(prev.seq);
            }
            Some(prev) if !prev.deleted => stale.push(prev.seq),
            _ => {}
        }
    }
    delete_documents(&mut tx, &stale).await?;
    let texts: Vec<(i64, &str, &str, SearchText)> = batch
        .iter()
        .filter(|v| v.seq > text_from && !replaced.contains(&v.seq))
        .filter_map(|v| {
            let text = search_text(v.data.as_ref()?);
            Some((v.seq, v.object_type.as_str(), v.object_id.as_str(), text))
        })
        .filter(|(.., text)| text.0.iter().any(|w| !w.is_empty()))
        .collect();
    let versions: Vec<ToIndex<'_>> = texts
        .iter()
        .map(|(seq, t, o, text)| ToIndex {
            seq: *seq,
            object_type: t,
            object_id: o,
            text,
        })
        .collect();
    insert_documents(&mut tx, &versions).await?;
    crate::values::on_sqlite::index_versions(&mut tx, values_from, &batch, &previous).await?;
    sqlx::query(
        "UPDATE counters SET value = max(value, $1) \
         WHERE name IN ('text_indexed_seq', 'values_indexed_seq')",
    )
    .bind(last)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let n = batch.len() as i64;
    Ok((n, cut || n >= limit))
}

/// PostgreSQL: takes up to `limit` versions (and [`MAX_BATCH_BYTES`]) off
/// `row_words_pending`, skipping those another replica is indexing, and writes their words,
/// in one transaction.
async fn catch_up_postgres(p: &sqlx::PgPool, limit: i64) -> Result<(i64, bool)> {
    let mut tx = p.begin().await?;
    let listed: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT l.seq, COALESCE(octet_length(r.data), 0)::BIGINT FROM row_words_pending l \
         LEFT JOIN rows r ON r.seq = l.seq \
         ORDER BY l.seq LIMIT $1 FOR UPDATE OF l SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let chosen: Vec<i64> = listed
        .iter()
        .take(within_bytes(&listed, MAX_BATCH_BYTES))
        .map(|(seq, _)| *seq)
        .collect();
    sqlx::query("DELETE FROM row_words_pending WHERE seq = ANY($1)")
        .bind(&chosen)
        .execute(&mut *tx)
        .await?;
    let taken: Vec<(i64, String, String, String, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, object_type, object_id, row_id, data FROM rows WHERE seq = ANY($1)",
    )
    .bind(&chosen)
    .fetch_all(&mut *tx)
    .await?;
    let documents: Vec<(i64, String)> = taken
        .iter()
        .filter_map(|(seq, object_type, object_id, row_id, data)| {
            let text = match decode_data(row_id, data) {
                Ok(row) => search_text(&row),
                // Unreadable: every search names it, and reading it reports the damage.
                Err(_) => SearchText(std::array::from_fn(|_| vec![OVERFLOW.to_owned()])),
            };
            let has_words = text.0.iter().any(|w| !w.is_empty());
            has_words.then(|| (*seq, pg_document(&scope(object_type, object_id), &text)))
        })
        .collect();
    for chunk in documents.chunks(500) {
        let mut qb = QueryBuilder::<sqlx::Postgres>::new("INSERT INTO row_words (seq, words) ");
        qb.push_values(chunk, |mut b, (seq, doc)| {
            b.push_bind(*seq)
                .push_bind(doc.as_str())
                .push_unseparated("::tsvector");
        });
        qb.push(" ON CONFLICT (seq) DO NOTHING");
        qb.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    let more = chosen.len() < listed.len() || listed.len() as i64 >= limit;
    Ok((chosen.len() as i64, more))
}

/// Rows with a version after `$1`: the query of [`on_sqlite::object_row_ids`] for what an index does not
/// hold yet.
pub(crate) const ROWS_AFTER: &str = "SELECT DISTINCT r.row_id FROM rows r WHERE r.seq > $1";

/// The rows with a version in a transaction after `$1`: a query of [`on_sqlite::object_row_ids`].
pub(crate) const CHANGED_AFTER: &str = "SELECT DISTINCT r.row_id FROM rows r WHERE r.xact_id > $1";

/// PostgreSQL: the versions (of any object) the word index finds for `tsquery` or not yet
/// indexed, at most `max` and one more; one statement, so one snapshot (a version moving from
/// the list to the index meanwhile is in one of them).
async fn pg_candidates(p: &sqlx::PgPool, tsquery: &str, max: usize) -> Result<Vec<i64>> {
    let query = sqlx::query_scalar(PG_CANDIDATES)
        .bind(tsquery)
        .bind(i64::try_from(max.saturating_add(1)).unwrap_or(i64::MAX));
    Ok(crate::db::fetch_told!(p, Some(crate::db::GIN_SEARCH), query).await?)
}

/// The statement of [`pg_candidates`].
const PG_CANDIDATES: &str = "SELECT seq FROM row_words WHERE words @@ $1::tsquery \
     UNION ALL SELECT seq FROM row_words_pending LIMIT $2";

/// PostgreSQL: the ids of the pass's object's rows with a version the word index finds for
/// `tsquery` or not yet indexed, sorted; `None` when there are more than twice `cap`
/// versions (the caller checks the rows against `cap`). Two statements, so that no planner choice can turn the search into a read of
/// the object: the first asks the GIN index and the list in one snapshot (a version moving
/// from the list to the index meanwhile is in one of them), the second reads the versions by
/// `seq` (the primary key) and keeps the object's.
async fn pg_search(
    p: &sqlx::PgPool,
    pass: &ObjectPass,
    tsquery: &str,
    cap: usize,
) -> Result<Option<Vec<String>>> {
    let max_versions = cap.saturating_mul(2);
    let seqs = pg_candidates(p, tsquery, max_versions).await?;
    if seqs.len() > max_versions {
        return Ok(None);
    }
    let found: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT row_id, object_type, object_id, org_id FROM rows WHERE seq = ANY($1)",
    )
    .bind(&seqs)
    .fetch_all(p)
    .await?;
    let (object_type, object_id) = (pass.object_type().as_str(), pass.object_id());
    let ids: std::collections::BTreeSet<String> = found
        .into_iter()
        .filter(|(_, t, o, org)| t == object_type && o == object_id && org == pass.org_id())
        .map(|(id, ..)| id)
        .collect();
    Ok(Some(ids.into_iter().collect()))
}

/// The queries as the index is asked them: refused unless every one has words of letters
/// and digits; a word too long to index is found through the OVERFLOW its rows carry.
fn checked_queries(any_of: &[TextQuery]) -> Result<Vec<TextQuery>> {
    if any_of.is_empty()
        || any_of
            .iter()
            .any(|q| q.words.is_empty() || !q.words.iter().all(|w| is_word(w)))
    {
        return Err(StoreError::InvalidRow(
            "a search needs words of letters and digits".into(),
        ));
    }
    Ok(any_of
        .iter()
        .map(|q| {
            let short: Vec<String> = q
                .words
                .iter()
                .filter(|w| w.len() <= MAX_WORD_BYTES)
                .cloned()
                .collect();
            TextQuery {
                field: q.field,
                words: if short.is_empty() {
                    vec![OVERFLOW.to_owned()]
                } else {
                    short
                },
            }
        })
        .collect())
}

impl Store {
    /// The ids of the rows of an object that have (or had) a version matching any of the
    /// queries, sorted; `None` when there are more than `cap`.
    pub async fn search_rows(
        &self,
        pass: &ObjectPass,
        any_of: &[TextQuery],
        cap: usize,
        as_of: Option<XactId>,
    ) -> Result<Option<Vec<String>>> {
        let any_of = checked_queries(any_of)?;
        let any_of = any_of.as_slice();
        let (object_type, object_id) = (pass.object_type().as_str(), pass.object_id());
        let limit = i64::try_from(cap.saturating_add(1)).unwrap_or(i64::MAX);
        let ids: Vec<String> = match &self.read {
            Pools::Sqlite(p) => {
                // The counter first: every version up to it is in the index, and every one
                // after it is named below, whatever the writer indexes meanwhile.
                let indexed: i64 = sqlx::query_scalar(
                    "SELECT value FROM counters WHERE name = 'text_indexed_seq'",
                )
                .fetch_one(p)
                .await?;
                let mut ids = on_sqlite::object_row_ids(
                    p,
                    "SELECT DISTINCT r.row_id FROM rows r \
                     WHERE r.seq IN (SELECT rowid FROM row_text WHERE row_text MATCH $1)",
                    fts5_query(&scope(object_type, object_id), any_of),
                    pass,
                    limit,
                )
                .await?;
                let unindexed =
                    on_sqlite::object_row_ids(p, ROWS_AFTER, indexed, pass, limit).await?;
                ids.extend(unindexed);
                // The index is exact, so a row changed since `as_of` may have held the
                // words then and no longer: such rows are read too.
                if let Some(at) = as_of {
                    ids.extend(
                        on_sqlite::object_row_ids(p, CHANGED_AFTER, at.as_i64(), pass, limit)
                            .await?,
                    );
                }
                ids.sort();
                ids.dedup();
                ids
            }
            Pools::Postgres(p) => {
                match pg_search(
                    p,
                    pass,
                    &pg_query(&scope(object_type, object_id), any_of),
                    cap,
                )
                .await?
                {
                    Some(ids) => ids,
                    None => return Ok(None),
                }
            }
        };
        Ok((ids.len() <= cap).then_some(ids))
    }

    /// The newest live version at `as_of` of each of these rows of an object, in row-id
    /// order (rows deleted or absent at `as_of` are left out).
    pub async fn read_row_ids(
        &self,
        pass: &ObjectPass,
        ids: &[String],
        as_of: Option<XactId>,
    ) -> Result<Vec<StoredRow>> {
        self.read_row_ids_with(pass, ids, as_of, &mut HashMap::new())
            .await
    }

    /// [`Store::read_row_ids`], taking the data of versions already read from `known`.
    async fn read_row_ids_with(
        &self,
        pass: &ObjectPass,
        ids: &[String],
        as_of: Option<XactId>,
        known: &mut HashMap<i64, Vec<u8>>,
    ) -> Result<Vec<StoredRow>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(500) {
            let live: Vec<(String, Version)> = self
                .latest_versions(pass, chunk, as_of)
                .await?
                .into_iter()
                .filter(|(_, v)| !v.deleted)
                .collect();
            if live.is_empty() {
                continue;
            }
            out.extend(self.load_versions_with(pass, live, known).await?);
        }
        Ok(out)
    }

    /// The newest version at `as_of` of each of these rows of an object that has one.
    async fn latest_versions(
        &self,
        pass: &ObjectPass,
        ids: &[String],
        as_of: Option<XactId>,
    ) -> Result<BTreeMap<String, Version>> {
        let as_of = as_of.map(XactId::as_i64).unwrap_or(i64::MAX);
        let (object_type, object_id) = (pass.object_type().as_str(), pass.object_id());
        loop {
            let generation = self.index.generation();
            let found: Vec<(String, i64, i64, bool)> = with_pool!(&self.read, |p, DB| {
                let mut qb = QueryBuilder::<DB>::new(
                    "SELECT ri.row_id, ri.xact_id, ri.seq, ri.is_deleted FROM row_index ri \
                     WHERE ri.object_type = ",
                );
                qb.push_bind(object_type);
                qb.push(" AND ri.object_id = ").push_bind(object_id);
                qb.push(" AND ri.row_id IN (");
                let mut sep = qb.separated(", ");
                for id in ids {
                    sep.push_bind(id.as_str());
                }
                qb.push(
                    ") AND ri.xact_id = (SELECT MAX(x.xact_id) FROM row_index x \
                     WHERE x.object_type = ri.object_type AND x.object_id = ri.object_id \
                     AND x.row_id = ri.row_id AND x.xact_id <= ",
                );
                qb.push_bind(as_of);
                qb.push(")");
                qb.build_query_as().fetch_all(p).await?
            });
            let mut latest: BTreeMap<String, Version> = found
                .into_iter()
                .map(|(id, xact, seq, deleted)| (id, Version { xact, seq, deleted }))
                .collect();
            let tail = self.index.view();
            // A catch-up moved versions from the tail meanwhile: read again.
            if tail.generation() != generation {
                continue;
            }
            for id in ids {
                let pending = tail.latest(object_type, object_id, id, as_of);
                if let Some(v) = newer(latest.get(id).copied(), pending) {
                    latest.insert(id.clone(), v);
                }
            }
            return Ok(latest);
        }
    }

    /// What a word search finds, read: like [`Store::search_rows`], but when the index names
    /// at most `read_at_most` versions of the object (indexed or not yet), the rows are read
    /// at `as_of` at once and returned ([`Found::Rows`]). Each named version is read with its
    /// data in one pass; on the embedded store it is the row's current version unless the
    /// row changed after the index or the snapshot (see the module docs), so a found row
    /// costs one read; on PostgreSQL one read and a `row_index` lookup.
    pub async fn search_read(
        &self,
        pass: &ObjectPass,
        any_of: &[TextQuery],
        cap: usize,
        read_at_most: usize,
        as_of: Option<XactId>,
    ) -> Result<Option<Found>> {
        let any_of = checked_queries(any_of)?;
        let (object_type, object_id) = (pass.object_type().as_str(), pass.object_id());
        let scope = scope(object_type, object_id);
        let over = i64::try_from(read_at_most.saturating_add(1)).unwrap_or(i64::MAX);
        // On the embedded store the index is exact: a found version is its row's newest
        // indexed one, and so its current one at `as_of` unless the row has a version the
        // index does not hold yet, or one after `as_of` (`recent`, read with a lookup).
        let (seqs, recent): (Vec<i64>, Option<Recent>) = match &self.read {
            Pools::Sqlite(p) => {
                // As in `search_rows`: the counter first.
                let indexed: i64 = sqlx::query_scalar(
                    "SELECT value FROM counters WHERE name = 'text_indexed_seq'",
                )
                .fetch_one(p)
                .await?;
                let mut seqs: Vec<i64> = sqlx::query_scalar(
                    "SELECT rowid FROM row_text WHERE row_text MATCH $1 LIMIT $2",
                )
                .bind(fts5_query(&scope, &any_of))
                .bind(over)
                .fetch_all(p)
                .await?;
                let tail: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT seq, row_id FROM rows WHERE seq > $1 AND object_type = $2 \
                     AND object_id = $3 AND org_id = $4 LIMIT $5",
                )
                .bind(indexed)
                .bind(object_type)
                .bind(object_id)
                .bind(pass.org_id())
                .bind(over)
                .fetch_all(p)
                .await?;
                let mut recent: HashSet<String> = HashSet::new();
                for (seq, id) in tail {
                    seqs.push(seq);
                    recent.insert(id);
                }
                // A row changed since `as_of` may have held the words then and no longer
                // (its document replaced): such rows are read too, at `as_of`.
                let changed = match as_of {
                    Some(at) => {
                        on_sqlite::object_row_ids(p, CHANGED_AFTER, at.as_i64(), pass, over).await?
                    }
                    None => Vec::new(),
                };
                if seqs.len() + changed.len() > read_at_most {
                    return Ok(self
                        .search_rows(pass, &any_of, cap, as_of)
                        .await?
                        .map(Found::Ids));
                }
                recent.extend(changed.iter().cloned());
                let recent = Recent {
                    lookup: recent,
                    changed,
                };
                (seqs, Some(recent))
            }
            Pools::Postgres(p) => (
                pg_candidates(p, &pg_query(&scope, &any_of), read_at_most).await?,
                None,
            ),
        };
        if seqs.len() > read_at_most {
            return Ok(self
                .search_rows(pass, &any_of, cap, as_of)
                .await?
                .map(Found::Ids));
        }
        self.read_versions(pass, &seqs, as_of, recent.as_ref())
            .await
            .map(|rows| Some(Found::Rows(rows)))
    }

    /// The current versions at `as_of` of the rows of an object that these versions (`seq`,
    /// of any object) belong to, in row-id order. The named versions are read with their
    /// data. With `exact`, a named version of a row not in its `lookup` is taken as the row's
    /// current one (the caller knows it is), and the rows of its `changed` are read too. The
    /// others are looked up in `row_index`, and read again only when their current version
    /// is another.
    async fn read_versions(
        &self,
        pass: &ObjectPass,
        seqs: &[i64],
        as_of: Option<XactId>,
        exact: Option<&Recent>,
    ) -> Result<Vec<StoredRow>> {
        let mut known: HashMap<i64, Vec<u8>> = HashMap::new();
        let mut ids: std::collections::BTreeSet<String> = exact
            .map(|r| r.changed.iter().cloned().collect())
            .unwrap_or_default();
        let exact_except = exact.map(|r| &r.lookup);
        let mut current: BTreeMap<String, StoredRow> = BTreeMap::new();
        let size = seqs
            .len()
            .div_ceil(crate::db::read_parts())
            .clamp(250, 1000);
        let reads = seqs.chunks(size).map(|chunk| self.read_seqs(pass, chunk));
        for found in futures::future::try_join_all(reads).await? {
            for (seq, id, xact, deleted, data) in found {
                let exact = exact_except.is_some_and(|recent| !recent.contains(&id));
                // Two named versions of one row would mean the index is not exact after
                // all: that row is looked up.
                if exact && !deleted && !ids.contains(&id) && !current.contains_key(&id) {
                    let row = decode(id.clone(), xact, &data)?;
                    current.insert(id, row);
                } else {
                    current.remove(&id);
                    ids.insert(id);
                    known.insert(seq, data);
                }
            }
        }
        let ids: Vec<String> = ids.into_iter().collect();
        for row in self
            .read_row_ids_with(pass, &ids, as_of, &mut known)
            .await?
        {
            current.insert(row.row_id.clone(), row);
        }
        Ok(current.into_values().collect())
    }
}

impl Store {
    /// These versions (`seq`) of an object, with their data.
    async fn read_seqs(
        &self,
        pass: &ObjectPass,
        seqs: &[i64],
    ) -> Result<Vec<(i64, String, i64, bool, Vec<u8>)>> {
        Ok(with_pool!(&self.read, |p, DB| {
            let mut qb = QueryBuilder::<DB>::new(
                "SELECT seq, row_id, xact_id, is_deleted, data FROM rows WHERE org_id = ",
            );
            qb.push_bind(pass.org_id());
            qb.push(" AND object_type = ")
                .push_bind(pass.object_type().as_str());
            qb.push(" AND object_id = ").push_bind(pass.object_id());
            qb.push(" AND seq IN (");
            let mut sep = qb.separated(", ");
            for seq in seqs {
                sep.push_bind(*seq);
            }
            qb.push(")");
            qb.build_query_as().fetch_all(p).await?
        }))
    }
}

/// The rows an exact search looks up rather than take a found version for their current
/// one: those with a version the index does not hold yet or after the snapshot (`lookup`);
/// those of the latter (`changed`) are read whether found or not.
struct Recent {
    lookup: HashSet<String>,
    changed: Vec<String>,
}

/// What [`Store::search_read`] found.
#[derive(Debug)]
pub enum Found {
    /// The rows, read (current live versions at the snapshot, in row-id order).
    Rows(Vec<StoredRow>),
    /// Too many to read at once: their ids, sorted, for the caller to read in pages.
    Ids(Vec<String>),
}

impl Store {
    /// Whether searches can use the word index (not in a benchmark build without it on
    /// PostgreSQL, whose versions are then never listed).
    pub fn has_word_index(&self) -> bool {
        matches!(self.read, Pools::Sqlite(_)) || lists_words(&self.read)
    }

    /// Versions committed but not yet in the word or value index (on PostgreSQL, the larger
    /// of the two backlogs).
    pub async fn text_index_lag(&self) -> Result<i64> {
        index_lag(&self.read).await
    }
}

/// Versions committed but not yet in the word or value index (on PostgreSQL, the larger of
/// the two backlogs).
pub(crate) async fn index_lag(pools: &Pools) -> Result<i64> {
    match pools {
        Pools::Sqlite(p) => Ok(sqlx::query_scalar(
            "SELECT COALESCE((SELECT MAX(seq) FROM rows), 0) - \
             (SELECT min(value) FROM counters \
              WHERE name IN ('text_indexed_seq', 'values_indexed_seq'))",
        )
        .fetch_one(p)
        .await?),
        Pools::Postgres(p) => Ok(sqlx::query_scalar(
            "SELECT GREATEST((SELECT count(*) FROM row_words_pending), \
                    (SELECT count(*) FROM rows WHERE seq > \
                     (SELECT value FROM counters WHERE name = 'values_indexed_seq')))",
        )
        .fetch_one(p)
        .await?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::IncomingRow;
    use crate::testing::{
        TestDatabase, caught_up, dataset_pass, incoming, plan_of, planned, temp_dir,
    };
    use serde_json::json;

    fn q(field: &str, words: &[&str]) -> TextQuery {
        TextQuery {
            field: FIELDS.iter().position(|f| *f == field).unwrap(),
            words: words.iter().map(|w| (*w).to_owned()).collect(),
        }
    }

    #[test]
    fn words_and_literals() {
        let row = json!({"input": {"q": "Hello, World 42"}, "metadata": {"n": 2.5, "k": ["a-b"]},
                         "output": null, "tags": ["not indexed"]});
        let t = search_text(row.as_object().unwrap());
        let sorted = |i: usize| {
            let mut v = t.0[i].clone();
            v.sort();
            v
        };
        assert_eq!(sorted(0), ["42", "hello", "world"]);
        assert_eq!(sorted(3), ["2", "5", "a", "b"]);
        assert!(t.0[1].is_empty() && t.0[2].is_empty());
        assert_eq!(
            tsvector(&t),
            "'2':4D '42':1A '5':4D 'a':4D 'b':4D 'hello':1A 'world':1A"
        );
        assert_eq!(
            tsquery(&[q("input", &["x", "y"]), q("error", &["z"])]),
            "(('x':A & 'y':A) | 'hf0overflow':A) | (('z':D) | 'hf0overflow':D)"
        );
        let long = format!("short {}", "x".repeat(MAX_WORD_BYTES + 1));
        let t = search_text(json!({"error": long}).as_object().unwrap());
        let mut e = t.0[4].clone();
        e.sort();
        assert_eq!(e, [OVERFLOW, "short"]);
        let many: String = (0..MAX_WORDS_PER_FIELD + 1)
            .map(|i| format!("w{i} "))
            .collect();
        let t = search_text(json!({"output": many}).as_object().unwrap());
        assert_eq!(t.0[1], [OVERFLOW]);
    }

    async fn indexed_docs(store: &Store) -> i64 {
        let Pools::Sqlite(p) = &store.read else {
            unreachable!()
        };
        sqlx::query_scalar("SELECT count(*) FROM row_text")
            .fetch_one(p)
            .await
            .unwrap()
    }

    /// Rows are found as soon as they are written, indexed or not; the writer indexes them
    /// when idle, including a store's rows from before the index existed.
    #[tokio::test(flavor = "multi_thread")]
    async fn rows_are_found_before_and_after_indexing() {
        let dir = temp_dir("search");
        let path = dir.join("t.db");
        let pass = dataset_pass("d");
        let needle = || [q("input", &["needle"])];
        {
            let store = Store::open_sqlite(&path, None).await.unwrap();
            let rows = (0..2500)
                .map(|i| incoming(json!({"id": format!("r{i:04}"), "created": "t",
                                         "input": format!("row {i} {}", if i % 1000 == 7 { "needle" } else { "hay" })})))
                .collect();
            store
                .write_rows(vec![(pass.clone(), rows)], "now")
                .await
                .unwrap();
            let found = store
                .search_rows(&pass, &needle(), 5000, None)
                .await
                .unwrap();
            assert!(found.unwrap().len() >= 3, "unindexed rows are candidates");
            caught_up(&store).await;
            assert_eq!(indexed_docs(&store).await, 2500);
            let found = store
                .search_rows(&pass, &needle(), 100, None)
                .await
                .unwrap();
            assert_eq!(found.unwrap(), ["r0007", "r1007", "r2007"]);
            // As a store from before the index: nothing indexed.
            if let Pools::Sqlite(p) = &store.write {
                sqlx::query("DELETE FROM row_text")
                    .execute(p)
                    .await
                    .unwrap();
                sqlx::query("UPDATE counters SET value = 0 WHERE name = 'text_indexed_seq'")
                    .execute(p)
                    .await
                    .unwrap();
            }
            store.close().await;
        }
        let store = Store::open_sqlite(&path, None).await.unwrap();
        caught_up(&store).await;
        assert_eq!(indexed_docs(&store).await, 2500);
        let found = store
            .search_rows(&pass, &needle(), 100, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found, ["r0007", "r1007", "r2007"]);
        let rows = store.read_row_ids(&pass, &found, None).await.unwrap();
        assert_eq!(rows.len(), 3);
        // More candidates than the cap: the caller is told to read the object instead.
        let hay = store
            .search_rows(&pass, &[q("input", &["hay"])], 100, None)
            .await
            .unwrap();
        assert!(hay.is_none());
        // Another object's rows are not candidates.
        let other = dataset_pass("e");
        let found = store
            .search_rows(&other, &[q("input", &["needle"])], 100, None)
            .await
            .unwrap();
        assert_eq!(found.unwrap(), Vec::<String>::new());
        // Words that are not letters and digits are refused, never passed on.
        assert!(
            store
                .search_rows(&pass, &[q("input", &["\" OR scope : *"])], 100, None)
                .await
                .is_err()
        );
        store.close().await;
    }

    /// The rows a read search returns whose input holds `needle`, as (id, input).
    async fn needles(
        store: &Store,
        pass: &ObjectPass,
        read_at_most: usize,
        as_of: Option<XactId>,
    ) -> Vec<(String, String)> {
        let found = store
            .search_read(pass, &[q("input", &["needle"])], 5000, read_at_most, as_of)
            .await
            .unwrap()
            .unwrap();
        let rows = match found {
            Found::Rows(rows) => rows,
            Found::Ids(ids) => {
                assert!(ids.len() > read_at_most, "ids only when there are too many");
                store.read_row_ids(pass, &ids, as_of).await.unwrap()
            }
        };
        assert!(
            rows.windows(2).all(|w| w[0].row_id < w[1].row_id),
            "row-id order"
        );
        rows.into_iter()
            .map(|r| {
                let input = r.data.get("input").and_then(Value::as_str).unwrap_or("");
                (r.row_id, input.to_owned())
            })
            .filter(|(_, input)| input.contains("needle"))
            .collect()
    }

    /// A read search returns each found row's version at the snapshot, read once, whether its
    /// versions are indexed or not: a row changed since it matched comes back as it is now (for
    /// the caller's filter to refuse), a deleted one not at all, an older snapshot sees the
    /// version it held, and other objects' rows are never read. Past `read_at_most` versions
    /// it returns ids, which read the same rows.
    async fn search_read_cases(store: &Store) {
        let pass = dataset_pass("d");
        let other = dataset_pass("e");
        let ids = |v: &[&str]| -> Vec<String> { v.iter().map(|s| (*s).to_owned()).collect() };
        store
            .write_rows(
                vec![
                    (pass.clone(), needle_rows(0, 2500)),
                    (other.clone(), needle_rows(0, 50)),
                ],
                "now",
            )
            .await
            .unwrap();
        let first = store.current_xact().await.unwrap();
        let expect = ["r0007", "r1007", "r2007"];
        let found = |v: Vec<(String, String)>| v.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        // Unindexed: every version of the object is a candidate, so ids past the bound.
        assert_eq!(found(needles(store, &pass, 1000, None).await), ids(&expect));
        assert_eq!(found(needles(store, &pass, 3000, None).await), ids(&expect));
        caught_up(store).await;
        assert_eq!(found(needles(store, &pass, 1000, None).await), ids(&expect));
        assert_eq!(found(needles(store, &pass, 2, None).await), ids(&expect));
        assert_eq!(
            found(needles(store, &other, 1000, None).await),
            ids(&["r0007"])
        );
        // A replaced and a deleted row, read before and after indexing.
        store
            .write_rows(
                vec![(
                    pass.clone(),
                    vec![
                        incoming(json!({"id": "r0007", "created": "t", "input": "hay now"})),
                        incoming(json!({"id": "r1007", "_object_delete": true})),
                    ],
                )],
                "now",
            )
            .await
            .unwrap();
        for _ in 0..2 {
            assert_eq!(
                found(needles(store, &pass, 1000, None).await),
                ids(&["r2007"])
            );
            for read_at_most in [1000, 2] {
                let then = needles(store, &pass, read_at_most, first).await;
                assert_eq!(found(then.clone()), ids(&expect), "the older snapshot");
                assert!(then.iter().all(|(_, input)| input.ends_with("needle")));
            }
            caught_up(store).await;
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn searches_read_found_rows_at_their_snapshot() {
        let dir = temp_dir("search-read");
        let store = Store::open_sqlite(&dir.join("t.db"), None).await.unwrap();
        search_read_cases(&store).await;
        // Exact: one document per live row (the replaced row's old one went, the deleted
        // row's too).
        assert_eq!(indexed_docs(&store).await, 2499 + 50);
        store.close().await;
        if let Some(db) = TestDatabase::create("search_read").await {
            let store = Store::open_postgres(&db.url).await.unwrap();
            search_read_cases(&store).await;
            store.close().await;
            db.drop_database().await;
        }
    }

    /// Every word `MATCH` sees is one token of the index, whatever its script: words with
    /// combining marks (which FTS5's `unicode61` split), symbols that are letters, accents,
    /// and case-folded letters.
    async fn every_script_cases(store: &Store) {
        let pass = dataset_pass("scripts");
        let texts = [
            "किताब पढ़ो",
            "ⓐⓑⓒ circled",
            "naïve café",
            "東京タワー",
            "İstanbul Straße",
            "ภาษาไทย",
        ];
        let rows: Vec<IncomingRow> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| incoming(json!({"id": format!("s{i}"), "created": "t", "input": t})))
            .collect();
        store
            .write_rows(vec![(pass.clone(), rows)], "now")
            .await
            .unwrap();
        caught_up(store).await;
        for (i, text) in texts.iter().enumerate() {
            for word in holdfast_core::qexpr::words(text) {
                let found = store
                    .search_read(&pass, &[q("input", &[&word])], 100, 100, None)
                    .await
                    .unwrap_or_else(|e| panic!("{word}: {e}"));
                let Some(Found::Rows(rows)) = found else {
                    panic!("{word}: {found:?}")
                };
                let ids: Vec<&str> = rows.iter().map(|r| r.row_id.as_str()).collect();
                assert_eq!(ids, [format!("s{i}")], "{word} of {text}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn words_of_every_script_are_found() {
        let dir = temp_dir("search-scripts");
        let store = Store::open_sqlite(&dir.join("t.db"), None).await.unwrap();
        every_script_cases(&store).await;
        store.close().await;
        if let Some(db) = TestDatabase::create("search_scripts").await {
            let store = Store::open_postgres(&db.url).await.unwrap();
            every_script_cases(&store).await;
            store.close().await;
            db.drop_database().await;
        }
    }

    /// PostgreSQL: a word search asks the GIN index, though on a small or TOASTed table the
    /// planner would rather read every row (it did at 100k spans: 280-320 ms against 11 ms).
    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_searches_ask_the_word_index() {
        let Some(db) = TestDatabase::create("gin").await else {
            return;
        };
        let store = Store::open_postgres(&db.url).await.unwrap();
        let pass = dataset_pass("d");
        store
            .write_rows(vec![(pass.clone(), needle_rows(0, 2000))], "now")
            .await
            .unwrap();
        caught_up(&store).await;
        let query = pg_query(&scope("dataset", "d"), &[q("input", &["needle"])]);
        let mut tx = planned(&store, crate::db::GIN_SEARCH).await;
        let explain = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {PG_CANDIDATES}")))
            .bind(query)
            .bind(10i64);
        let told = plan_of(&mut tx, explain).await;
        drop(tx);
        assert!(
            told.contains("Bitmap Index Scan on row_words_words")
                && !told.contains("Seq Scan on row_words "),
            "{told}"
        );
        // Untold, PostgreSQL 15 plans a read of every row of this table here.
        let found = store
            .search_rows(&pass, &[q("input", &["needle"])], 100, None)
            .await;
        assert_eq!(found.unwrap().unwrap(), ["r0007", "r1007"]);
        store.close().await;
        db.drop_database().await;
    }

    /// A word that the rows `r{i}` with `i % 1000 == 7` hold in their input.
    fn needle_rows(from: usize, to: usize) -> Vec<IncomingRow> {
        (from..to)
            .map(|i| {
                let word = if i % 1000 == 7 { "needle" } else { "hay" };
                incoming(json!({"id": format!("r{i:04}"), "created": "t",
                                "input": format!("row {i} {word}")}))
            })
            .collect()
    }

    async fn pg_count(store: &Store, table: &str) -> i64 {
        let Pools::Postgres(p) = &store.read else {
            unreachable!()
        };
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(p)
            .await
            .unwrap()
    }

    /// PostgreSQL: two replicas write to one database at once; every write is found by the
    /// next search, both writers index the listed versions, and each live version ends in the
    /// index exactly once, with nothing left listed.
    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_replicas_share_the_word_index() {
        let Some(db) = TestDatabase::create("words").await else {
            return;
        };
        let replicas = [
            Store::open_postgres(&db.url).await.unwrap(),
            Store::open_postgres(&db.url).await.unwrap(),
        ];
        let pass = dataset_pass("d");
        let needle = || [q("input", &["needle"])];
        let mut writes = Vec::new();
        for k in 0..10 {
            let (store, pass) = (replicas[k % 2].clone(), pass.clone());
            writes.push(tokio::spawn(async move {
                let rows = needle_rows(k * 250, (k + 1) * 250);
                store.write_rows(vec![(pass, rows)], "now").await.unwrap();
            }));
        }
        for w in writes {
            w.await.unwrap();
        }
        let expected = ["r0007", "r1007", "r2007"];
        // Indexed or still listed, whichever each version is now.
        let found = replicas[1]
            .search_rows(&pass, &needle(), 5000, None)
            .await
            .unwrap()
            .unwrap();
        assert!(expected.iter().all(|id| found.iter().any(|f| f == id)));
        for store in &replicas {
            caught_up(store).await;
        }
        assert_eq!(pg_count(&replicas[0], "row_words").await, 2500);
        assert_eq!(pg_count(&replicas[0], "row_words_pending").await, 0);
        // The value index too, though both replicas wrote and indexed at once: it relies on
        // versions committing in `seq` order (`created` and its odd entry, for every row).
        assert_eq!(pg_count(&replicas[0], "row_values").await, 5000);
        for store in &replicas {
            let found = store
                .search_rows(&pass, &needle(), 100, None)
                .await
                .unwrap();
            assert_eq!(found.unwrap(), expected);
        }
        // A deleted row is not listed; its old words only name it, and reading leaves it out.
        let gone = vec![incoming(json!({"id": "r1007", "_object_delete": true}))];
        replicas[0]
            .write_rows(vec![(pass.clone(), gone)], "now")
            .await
            .unwrap();
        assert_eq!(pg_count(&replicas[0], "row_words_pending").await, 0);
        let found = replicas[0]
            .search_rows(&pass, &needle(), 100, None)
            .await
            .unwrap()
            .unwrap();
        let rows = replicas[0].read_row_ids(&pass, &found, None).await.unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.row_id.as_str()).collect();
        assert_eq!(ids, ["r0007", "r2007"]);
        caught_up(&replicas[1]).await;
        assert_eq!(pg_count(&replicas[0], "row_values").await, 4998);
        // Another object's rows are not candidates; too many candidates say so.
        let other = dataset_pass("e");
        let found = replicas[0]
            .search_rows(&other, &needle(), 100, None)
            .await
            .unwrap();
        assert_eq!(found.unwrap(), Vec::<String>::new());
        let hay = replicas[0]
            .search_rows(&pass, &[q("input", &["hay"])], 100, None)
            .await
            .unwrap();
        assert!(hay.is_none());
        for store in replicas {
            store.close().await;
        }
        db.drop_database().await;
    }

    /// An indexing batch reads at most its byte budget, and always one version.
    #[test]
    fn batches_are_bounded_in_bytes() {
        let mib = 1024 * 1024;
        assert_eq!(within_bytes(&[], 16 * mib), 0);
        assert_eq!(within_bytes(&[(1, 40 * mib), (2, 1)], 16 * mib), 1);
        assert_eq!(
            within_bytes(&[(1, 8 * mib), (2, 8 * mib), (3, 1)], 16 * mib),
            2
        );
        assert_eq!(within_bytes(&[(1, 10), (2, 10), (3, 10)], 16 * mib), 3);
    }

    /// A version with more words than a `tsvector` holds is indexed as overflow in each
    /// field that has words, so every search of those fields names it.
    #[test]
    fn oversized_documents_overflow() {
        let mut t = SearchText::default();
        t.0[0] = (0..60_000).map(|i| format!("word{i:06}")).collect();
        t.0[3] = vec!["meta".to_owned()];
        let doc = pg_document("sabc", &t);
        assert_eq!(doc, "'sabc' 'hf0overflow':1A,4D");
        t.0[0].truncate(3);
        assert_eq!(
            pg_document("sabc", &t),
            "'sabc' 'meta':4D 'word000000':1A 'word000001':1A 'word000002':1A"
        );
    }
}

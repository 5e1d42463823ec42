//! Score summaries kept in the store: see `score_summaries.sql`.

use crate::db::with_pool;
use crate::{Result, Store};
use holdfast_core::authz::ObjectPass;
use holdfast_core::xact::XactId;
use serde_json::Value;

impl Store {
    /// The score summary kept for `pass`'s object and the newest version of its rows it was
    /// made at, if any. Unreadable kept JSON reads as none.
    pub async fn kept_scores(&self, pass: &ObjectPass) -> Result<Option<(XactId, Value)>> {
        let found: Option<(i64, String)> = with_pool!(&self.read, |p, DB| {
            sqlx::query_as::<DB, (i64, String)>(
                "SELECT newest, scores FROM score_summaries \
                 WHERE org_id = $1 AND object_type = $2 AND object_id = $3",
            )
            .bind(pass.org_id())
            .bind(pass.object_type().as_str())
            .bind(pass.object_id())
            .fetch_optional(p)
            .await?
        });
        Ok(found.and_then(|(newest, scores)| {
            let newest = XactId::from_i64(newest)?;
            Some((newest, serde_json::from_str(&scores).ok()?))
        }))
    }

    /// Keeps `scores`, made from `pass`'s object's rows whose newest version was `newest`,
    /// in place of what was kept.
    pub async fn keep_scores(
        &self,
        pass: &ObjectPass,
        newest: XactId,
        scores: &Value,
    ) -> Result<()> {
        let scores = scores.to_string();
        with_pool!(&self.write, |p, DB| {
            sqlx::query::<DB>(
                "INSERT INTO score_summaries (org_id, object_type, object_id, newest, scores) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (object_type, object_id) \
                 DO UPDATE SET newest = excluded.newest, scores = excluded.scores \
                 WHERE score_summaries.org_id = excluded.org_id",
            )
            .bind(pass.org_id())
            .bind(pass.object_type().as_str())
            .bind(pass.object_id())
            .bind(newest.as_i64())
            .bind(scores)
            .execute(p)
            .await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{dataset_pass, dataset_pass_in};
    use holdfast_core::xact::XactId;
    use serde_json::json;

    /// A kept summary reads back with its version and is replaced by the next one kept; it
    /// is its object's alone, and another organization's pass neither reads nor replaces it.
    #[tokio::test(flavor = "multi_thread")]
    async fn score_summaries_are_kept_per_object() {
        for (store, _db) in crate::testing::both_stores("score_summaries").await {
            let (pass, other) = (dataset_pass("d"), dataset_pass("e"));
            let stranger = dataset_pass_in("o2", "d");
            let at = |n: u64| XactId::from_counter(n).unwrap();
            assert!(store.kept_scores(&pass).await.unwrap().is_none());
            store
                .keep_scores(&pass, at(5), &json!({"acc": 1}))
                .await
                .unwrap();
            store
                .keep_scores(&pass, at(7), &json!({"acc": 2}))
                .await
                .unwrap();
            store
                .keep_scores(&stranger, at(9), &json!({"acc": 3}))
                .await
                .unwrap();
            let kept = store.kept_scores(&pass).await.unwrap();
            assert_eq!(kept, Some((at(7), json!({"acc": 2}))));
            assert!(store.kept_scores(&other).await.unwrap().is_none());
            assert!(store.kept_scores(&stranger).await.unwrap().is_none());
        }
    }
}

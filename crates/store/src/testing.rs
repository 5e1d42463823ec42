//! Helpers for the store's own tests.

use crate::rows::IncomingRow;
use holdfast_core::authz::{
    Acl, Grant, Kind, OWNER_ROLE_ID, ObjectFacts, ObjectPass, Permission, Policy, Principal,
    Subject, object_pass,
};
use holdfast_core::merge::take_control;
use holdfast_core::object::ObjectType;
use serde_json::Value;
use std::path::PathBuf;

/// Waits until the writer has indexed every version's words and values.
pub(crate) async fn caught_up(store: &crate::Store) {
    for _ in 0..400 {
        if store.text_index_lag().await.unwrap() == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the writer did not catch up");
}

/// PostgreSQL: a transaction on the store's read pool that first ran `settings` (one of
/// the statements that tell the planner how to read, or `SELECT 1` for none), for a test
/// to `EXPLAIN` a statement in; with the tables analyzed first, as they are in use. Drop it
/// before closing the store, which waits for its connection.
pub(crate) async fn planned(
    store: &crate::Store,
    settings: &str,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let crate::db::Pools::Postgres(p) = &store.read else {
        panic!("a PostgreSQL store")
    };
    sqlx::query("ANALYZE").execute(p).await.unwrap();
    let mut tx = p.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(settings.to_owned()))
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

/// A plan's lines as `EXPLAIN` gives them, one string.
pub(crate) async fn plan_of(
    tx: &mut sqlx::PgConnection,
    explain: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> String {
    let lines: Vec<String> = explain
        .fetch_all(tx)
        .await
        .unwrap()
        .iter()
        .map(|r| sqlx::Row::get::<String, _>(r, 0))
        .collect();
    lines.join("\n")
}

/// A fresh PostgreSQL database for one test when `TEST_DATABASE_URL` names a server; dropped
/// by [`TestDatabase::drop_database`].
pub(crate) struct TestDatabase {
    server: sqlx::PgPool,
    name: String,
    pub url: String,
}

impl TestDatabase {
    pub(crate) async fn create(name: &str) -> Option<Self> {
        let admin = std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())?;
        // One database per test process; a leftover of an earlier process goes first.
        let name = format!("hf_{name}_{}", std::process::id());
        let server = sqlx::PgPool::connect(&admin).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&server)
        .await
        .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&server)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Some(Self { server, name, url })
    }

    pub(crate) async fn drop_database(self) {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {} WITH (FORCE)",
            self.name
        )))
        .execute(&self.server)
        .await;
    }
}

/// A fresh directory for one test.
/// The embedded store, and a PostgreSQL one when `TEST_DATABASE_URL` is set: a test of a store
/// behaviour runs on each (and drops the database it was given afterwards). `name` is a
/// lower-case identifier.
pub(crate) async fn both_stores(name: &str) -> Vec<(crate::Store, Option<TestDatabase>)> {
    let dir = temp_dir(name);
    let mut stores = vec![(
        crate::Store::open_sqlite(&dir.join("db"), None)
            .await
            .unwrap(),
        None,
    )];
    if let Some(db) = TestDatabase::create(name).await {
        stores.push((
            crate::Store::open_postgres(&db.url).await.unwrap(),
            Some(db),
        ));
    }
    stores
}

pub(crate) fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A pass to update dataset `id` of project `p` in organization `o`, held by its owner.
pub(crate) fn dataset_pass(id: &str) -> ObjectPass {
    dataset_pass_in("o", id)
}

/// [`dataset_pass`] in organization `org`.
pub(crate) fn dataset_pass_in(org: &str, id: &str) -> ObjectPass {
    let principal = Principal {
        user_id: "u".into(),
        org_id: org.into(),
        key_id: "k".into(),
        scope: Default::default(),
        expires_at: None,
        trail: Default::default(),
    };
    let owner = Acl {
        object_type: Kind::Organization,
        object_id: org.into(),
        subject: Subject::User("u".into()),
        grant: Grant::Role(OWNER_ROLE_ID.into()),
        restrict_object_type: None,
    };
    let policy = Policy::new(org, Default::default(), Default::default(), vec![owner]);
    let facts = ObjectFacts {
        org_id: org,
        project_id: "p",
        object_type: ObjectType::Dataset,
        object_id: id,
    };
    object_pass(&principal, &policy, Permission::Update, facts).unwrap()
}

/// A row as a request carries it.
pub(crate) fn incoming(v: Value) -> IncomingRow {
    let mut data = v.as_object().cloned().unwrap();
    let control = take_control(&mut data).unwrap();
    let row_id = data.get("id").and_then(Value::as_str).unwrap().to_owned();
    IncomingRow {
        row_id,
        control,
        data,
    }
}

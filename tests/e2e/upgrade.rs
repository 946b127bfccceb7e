//! Rolling upgrades on PostgreSQL: every migration leaves what the previous release reads and
//! writes in place, and a node opens a database that a newer release has migrated.

use std::collections::BTreeMap;

use hookwise::model::Verdict;
use hookwise::store::{GroupCommitSettings, Store};
use sqlx::{Connection, PgConnection};

use crate::store::{attempt, event};
use crate::support::TempPostgres;

/// A column as the previous release sees it: its type, whether it may be NULL, its default.
#[derive(Debug, Clone, PartialEq)]
struct Column {
    data_type: String,
    nullable: bool,
    default: Option<String>,
}

/// Every column of every table in the public schema, by (table, column).
async fn columns(conn: &mut PgConnection) -> BTreeMap<(String, String), Column> {
    let rows: Vec<(String, String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text, \
                c.is_nullable::text, c.column_default::text \
         FROM information_schema.columns c \
         JOIN information_schema.tables t \
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'",
    )
    .fetch_all(conn)
    .await
    .expect("read the schema");
    rows.into_iter()
        .map(|(table, column, data_type, nullable, default)| {
            let column_def = Column {
                data_type,
                nullable: nullable == "YES",
                default,
            };
            ((table, column), column_def)
        })
        .collect()
}

/// What a migration did that a node of the previous release could trip over: a table or a
/// column gone, a column's type changed or made NOT NULL, or a column that the previous
/// release's inserts leave out (they name only the columns they know) made NOT NULL without a
/// default.
fn breaks_previous_release(
    before: &BTreeMap<(String, String), Column>,
    after: &BTreeMap<(String, String), Column>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (key @ (table, column), was) in before {
        match after.get(key) {
            None => problems.push(format!("{table}.{column} is gone")),
            Some(now) if now.data_type != was.data_type => problems.push(format!(
                "{table}.{column} changed type from {} to {}",
                was.data_type, now.data_type
            )),
            Some(now) if was.nullable && !now.nullable => {
                problems.push(format!("{table}.{column} became NOT NULL"))
            }
            Some(_) => {}
        }
    }
    let tables: std::collections::BTreeSet<&String> = before.keys().map(|(t, _)| t).collect();
    for (key @ (table, column), now) in after {
        let added_to_old_table = tables.contains(table) && !before.contains_key(key);
        if added_to_old_table && !now.nullable && now.default.is_none() {
            problems.push(format!(
                "{table}.{column} was added NOT NULL without a default"
            ));
        }
    }
    problems
}

/// Applies the PostgreSQL migrations one at a time, as an upgrade from each release to the next
/// would, and checks that none of them takes away what the release before it uses.
#[tokio::test]
async fn every_migration_keeps_what_the_previous_release_uses() {
    let pg = TempPostgres::create()
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    let mut conn = PgConnection::connect(&pg.url).await.expect("connect");
    let migrator = sqlx::migrate!("./migrations/postgres");
    let mut before = columns(&mut conn).await;
    let mut problems = Vec::new();
    for migration in migrator.iter() {
        sqlx::raw_sql(&migration.sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("migration {} fails: {e}", migration.version));
        let after = columns(&mut conn).await;
        for problem in breaks_previous_release(&before, &after) {
            problems.push(format!(
                "migration {} ({}): {problem}",
                migration.version, migration.description
            ));
        }
        before = after;
    }
    conn.close().await.expect("close");
    pg.drop_db().await.expect("drop test database");
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        before.len() > 50,
        "the migrations made {} columns",
        before.len()
    );
}

/// The check itself catches what it looks for (so the test above can fail).
#[test]
fn breaking_changes_are_recognised() {
    let column = |data_type: &str, nullable: bool, default: Option<&str>| Column {
        data_type: data_type.into(),
        nullable,
        default: default.map(String::from),
    };
    let key = |t: &str, c: &str| (t.to_string(), c.to_string());
    let before = BTreeMap::from([
        (key("events", "id"), column("uuid", false, None)),
        (key("events", "note"), column("text", true, None)),
    ]);
    let mut after = before.clone();
    after.insert(key("events", "extra"), column("text", true, None));
    after.insert(key("events", "counted"), column("bigint", false, Some("0")));
    after.insert(key("fresh", "required"), column("text", false, None));
    assert_eq!(
        breaks_previous_release(&before, &after),
        Vec::<String>::new()
    );

    let mut after = before.clone();
    after.remove(&key("events", "note"));
    after.insert(key("events", "id"), column("text", false, None));
    after.insert(key("events", "required"), column("text", false, None));
    assert_eq!(
        breaks_previous_release(&before, &after),
        [
            "events.id changed type from uuid to text",
            "events.note is gone",
            "events.required was added NOT NULL without a default",
        ]
    );
    let mut after = before.clone();
    after.insert(key("events", "note"), column("text", false, None));
    assert_eq!(
        breaks_previous_release(&before, &after),
        ["events.note became NOT NULL"]
    );
}

/// A node keeps working, and starts again, on a database that a newer release has migrated:
/// the migration it does not know is skipped, the column it does not know is left alone.
#[tokio::test]
async fn a_node_opens_a_database_that_a_newer_release_migrated() {
    let pg = TempPostgres::create()
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    let base = std::env::temp_dir();
    let store = Store::open(&pg.url, &base, GroupCommitSettings::default())
        .await
        .expect("open store");
    let first = store
        .ingest(
            event("github", "before-the-upgrade"),
            attempt("github", Verdict::Accepted, 202),
        )
        .await
        .expect("ingest");
    store.close().await;

    // What a newer release's first node does when it starts: a migration of its own, which
    // adds a column (as every migration may).
    let mut conn = PgConnection::connect(&pg.url).await.expect("connect");
    sqlx::raw_sql(
        "ALTER TABLE events ADD COLUMN from_a_newer_release TEXT;
         INSERT INTO _sqlx_migrations
             (version, description, success, checksum, execution_time)
         VALUES (99990001, 'from a newer release', TRUE, '\\x00', 1);",
    )
    .execute(&mut conn)
    .await
    .expect("migrate as a newer release");
    conn.close().await.expect("close");

    let store = Store::open(&pg.url, &base, GroupCommitSettings::default())
        .await
        .expect("a node of the previous release opens the newer database");
    let second = store
        .ingest(
            event("github", "after-the-upgrade"),
            attempt("github", Verdict::Accepted, 202),
        )
        .await
        .expect("ingest after the upgrade");
    for (id, delivery) in [
        (first.event_id, "before-the-upgrade"),
        (second.event_id, "after-the-upgrade"),
    ] {
        let stored = store.get_event(id).await.expect("read").expect("stored");
        assert_eq!(stored.event.delivery_id.as_str(), delivery);
    }
    assert_eq!(store.count_events().await.expect("count"), 2);
    store.close().await;
    pg.drop_db().await.expect("drop test database");
}

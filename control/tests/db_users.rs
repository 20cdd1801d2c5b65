//! Dashboard users and revoked tokens in Postgres (issue 6's `users` / `revoked_tokens` tables, issue 7's roles):
//! the local store is mirrored both ways, registration of the first admin is race-free across installs sharing a
//! database, a disabled user loses access, and a database outage loses nothing.

mod db_support;
mod web_support;

use aegis_control::auth::{MemoryUserStore, PasswordHasher, Role, StoreError};
use aegis_control::auth::{UserRecord, UserStore};
use aegis_control::db_link::pg_mirror::PgMirrorStore;
use aegis_control::db_link::DbSide;
use aegis_shared::Secret;
use db_support::{one, temp_dir, TestDb};

async fn user(hasher: &PasswordHasher, name: &str, role: Role) -> UserRecord {
    UserRecord::new(
        name.into(),
        role,
        hasher.hash(format!("{name}-long-password")).await.unwrap(),
        None,
        1_700_000_000_000,
    )
}

fn far_future() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3_600
}

#[tokio::test]
async fn users_and_revocations_are_mirrored_and_first_admin_is_global() {
    let db = TestDb::create("users").await;
    let pg = db.migrated_client().await;
    let hasher = PasswordHasher::new().unwrap();

    // Install A registers the first admin and a viewer, and revokes a token.
    let dir_a = temp_dir("users-a");
    let a = PgMirrorStore::new(
        MemoryUserStore::open(&dir_a).unwrap(),
        DbSide::standalone(Secret::new(db.url())),
    );
    a.insert(user(&hasher, "alice", Role::Admin).await, true)
        .await
        .unwrap();
    a.insert(user(&hasher, "victor", Role::Viewer).await, false)
        .await
        .unwrap();
    a.revoke("jti-logged-out", far_future()).await.unwrap();

    let rows = pg
        .query(
            "SELECT username, role, password_hash FROM users ORDER BY username",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![
            ("alice".to_string(), "admin".to_string()),
            ("victor".to_string(), "viewer".to_string())
        ]
    );
    for r in &rows {
        let h: String = r.get(2);
        assert!(h.starts_with("$argon2id$"), "only hashes are stored");
        assert!(!h.contains("long-password"));
    }
    let n: i64 = one(
        &pg,
        "SELECT count(*) FROM revoked_tokens WHERE jti = 'jti-logged-out' AND expires_at > now()",
        &[],
    )
    .await;
    assert_eq!(n, 1);

    // Install B shares the database with an empty users.json: it may not become "first user", and after a sync
    // it knows both users, their roles, and the revocation.
    let dir_b = temp_dir("users-b");
    let b = PgMirrorStore::new(
        MemoryUserStore::open(&dir_b).unwrap(),
        DbSide::standalone(Secret::new(db.url())),
    );
    assert!(matches!(
        b.insert(user(&hasher, "mallory", Role::Admin).await, true)
            .await,
        Err(StoreError::NotEmpty)
    ));
    // The refused registration made B learn what Postgres has.
    assert_eq!(
        b.find("alice").await.unwrap().map(|u| u.role),
        Some(Role::Admin)
    );
    assert_eq!(
        b.find("victor").await.unwrap().map(|u| u.role),
        Some(Role::Viewer)
    );
    assert!(b.find("mallory").await.unwrap().is_none());
    assert!(b.is_revoked("jti-logged-out").await.unwrap());
    assert!(!b.is_revoked("jti-other").await.unwrap());
    // ... and keeps it across a restart without the database.
    let b_again = MemoryUserStore::open(&dir_b).unwrap();
    assert_eq!(b_again.count().await.unwrap(), 2);

    // A user disabled in Postgres loses access on the next sync.
    pg.execute(
        "UPDATE users SET disabled_at = now() WHERE username = 'victor'",
        &[],
    )
    .await
    .unwrap();
    let r = a.sync().await.unwrap();
    assert_eq!(r.pulled, 1);
    assert!(a.find("victor").await.unwrap().is_none());
    assert!(a.find("alice").await.unwrap().is_some());
}

#[tokio::test]
async fn work_done_while_the_database_is_down_is_pushed_on_the_next_sync() {
    let db = TestDb::create("users_down").await;
    let hasher = PasswordHasher::new().unwrap();
    let dir = temp_dir("users-down");

    // Postgres unreachable (nothing listens on port 1): registration and logout still work locally.
    let dead = format!(
        "postgres://postgres@127.0.0.1:1/{}?sslmode=disable&connect_timeout=1",
        db.name
    );
    let down = PgMirrorStore::new(
        MemoryUserStore::open(&dir).unwrap(),
        DbSide::standalone(Secret::new(dead)),
    );
    down.insert(user(&hasher, "alice", Role::Admin).await, true)
        .await
        .unwrap();
    down.revoke("jti-offline", far_future()).await.unwrap();
    assert!(down.is_dirty());
    assert!(down.sync().await.is_err());
    assert!(down.is_revoked("jti-offline").await.unwrap());
    drop(down);

    // The next start reaches the database: the sync pushes the user and the revocation.
    let pg = db.migrated_client().await;
    let up = PgMirrorStore::new(
        MemoryUserStore::open(&dir).unwrap(),
        DbSide::standalone(Secret::new(db.url())),
    );
    let r = up.sync().await.unwrap();
    assert_eq!((r.pushed_users, r.pushed_revoked), (1, 1));
    assert!(!up.is_dirty());
    let role: String = one(&pg, "SELECT role FROM users WHERE username = 'alice'", &[]).await;
    assert_eq!(role, "admin");
    let n: i64 = one(
        &pg,
        "SELECT count(*) FROM revoked_tokens WHERE jti = 'jti-offline'",
        &[],
    )
    .await;
    assert_eq!(n, 1);
    // A second sync has nothing to do.
    assert_eq!(
        up.sync().await.unwrap(),
        aegis_control::db_link::pg_mirror::SyncReport::default()
    );
}

/// Issue 15.1 with Postgres: disabling a user (by hand, `disabled_at`) ends its sessions on a running bot at the
/// next sync, and re-enabling does not bring the old tokens back (a trigger raised the generation). A role
/// changed by hand ends the sessions too. A delete through the dashboard disables the row by uid, and a user
/// re-created under the name is a new row identity in Postgres that the other install adopts.
#[tokio::test]
async fn disabling_or_changing_a_user_in_postgres_ends_its_sessions() {
    use axum::http::StatusCode;
    use std::sync::Arc;
    use web_support::*;

    let db = TestDb::create("users_bound").await;
    let pg = db.migrated_client().await;
    let store = PgMirrorStore::new(
        MemoryUserStore::open(&temp_dir("users-bound")).unwrap(),
        DbSide::standalone(Secret::new(db.url())),
    );
    let extra = axum::Router::new();
    let h = harness_store(|_| {}, extra, store.clone() as Arc<dyn UserStore>);
    let (admin, _) = admin_and_viewer(&h).await;
    let r = register(
        &h.app,
        "bob",
        "violet-granite-kettle-41",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let bob = login(&h.app, "bob", "violet-granite-kettle-41").await;
    let me = |t: String| {
        let app = h.app.clone();
        async move { status(&app, Req::get("/api/auth/me").bearer(&t)).await }
    };
    assert_eq!(me(bob.token.clone()).await, StatusCode::OK);
    let uid_pg: String = one(&pg, "SELECT uid FROM users WHERE username = 'bob'", &[]).await;
    assert_eq!(uid_pg, store.find("bob").await.unwrap().unwrap().uid);

    // Disabled by hand: gone at the next sync.
    pg.execute(
        "UPDATE users SET disabled_at = now() WHERE username = 'bob'",
        &[],
    )
    .await
    .unwrap();
    store.sync().await.unwrap();
    assert_eq!(me(bob.token.clone()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        login_from(&h.app, LOCAL, "bob", "violet-granite-kettle-41")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Enabled again: bob may sign in, but the token from before stays dead.
    pg.execute(
        "UPDATE users SET disabled_at = NULL WHERE username = 'bob'",
        &[],
    )
    .await
    .unwrap();
    store.sync().await.unwrap();
    assert_eq!(me(bob.token.clone()).await, StatusCode::UNAUTHORIZED);
    let bob2 = login(&h.app, "bob", "violet-granite-kettle-41").await;
    assert_eq!(me(bob2.token.clone()).await, StatusCode::OK);
    // A role changed by hand ends the sessions too.
    pg.execute(
        "UPDATE users SET role = 'admin' WHERE username = 'bob'",
        &[],
    )
    .await
    .unwrap();
    store.sync().await.unwrap();
    assert_eq!(me(bob2.token.clone()).await, StatusCode::UNAUTHORIZED);
    let bob3 = login(&h.app, "bob", "violet-granite-kettle-41").await;
    // A sync with nothing new changes nothing: fresh tokens are not ended by the mirror itself.
    store.sync().await.unwrap();
    assert_eq!(me(bob3.token.clone()).await, StatusCode::OK);

    // Deleted through the dashboard: the row is disabled (by uid), and re-creating the name makes a new
    // account in the same row, which a second install sharing the database adopts with its new uid.
    let dir_b = temp_dir("users-bound-b");
    let b = PgMirrorStore::new(
        MemoryUserStore::open(&dir_b).unwrap(),
        DbSide::standalone(Secret::new(db.url())),
    );
    b.sync().await.unwrap();
    assert_eq!(b.find("bob").await.unwrap().unwrap().uid, uid_pg);
    let mut del = Req::post("/api/users/bob", serde_json::json!({})).session(&admin);
    del.method = axum::http::Method::DELETE;
    assert_eq!(status(&h.app, del).await, StatusCode::OK);
    let disabled: bool = one(
        &pg,
        "SELECT disabled_at IS NOT NULL FROM users WHERE username = 'bob'",
        &[],
    )
    .await;
    assert!(disabled);
    store.sync().await.unwrap();
    assert!(
        store.find("bob").await.unwrap().is_none(),
        "not resurrected by the sync"
    );
    let r = register(
        &h.app,
        "bob",
        "museum-harbor-lantern-77",
        Some(&admin),
        Some("admin"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let (uid_new, enabled, role): (String, bool, String) = {
        let row = pg
            .query_one(
                "SELECT uid, disabled_at IS NULL, role FROM users WHERE username = 'bob'",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_ne!(uid_new, uid_pg);
    assert!(enabled);
    assert_eq!(role, "admin");
    assert_eq!(me(bob3.token.clone()).await, StatusCode::UNAUTHORIZED);
    b.sync().await.unwrap();
    let on_b = b.find("bob").await.unwrap().unwrap();
    assert_eq!((on_b.uid, on_b.role), (uid_new, Role::Admin));
}

/// A user deleted while Postgres is down stays deleted: the tombstone is pushed at the next sync, which must
/// not pull the user back from Postgres.
#[tokio::test]
async fn a_user_deleted_while_the_database_is_down_is_not_pulled_back() {
    let db = TestDb::create("users_tomb").await;
    let pg = db.migrated_client().await;
    let hasher = PasswordHasher::new().unwrap();
    let dir = temp_dir("users-tomb");
    let up = PgMirrorStore::new(
        MemoryUserStore::open(&dir).unwrap(),
        DbSide::standalone(Secret::new(db.url())),
    );
    up.insert(user(&hasher, "alice", Role::Admin).await, true)
        .await
        .unwrap();
    up.insert(user(&hasher, "victor", Role::Viewer).await, false)
        .await
        .unwrap();
    drop(up);
    let dead = format!(
        "postgres://postgres@127.0.0.1:1/{}?sslmode=disable&connect_timeout=1",
        db.name
    );
    let down = PgMirrorStore::new(
        MemoryUserStore::open(&dir).unwrap(),
        DbSide::standalone(Secret::new(dead)),
    );
    assert!(down.delete("victor").await.unwrap().is_some());
    drop(down);
    let again = PgMirrorStore::new(
        MemoryUserStore::open(&dir).unwrap(),
        DbSide::standalone(Secret::new(db.url())),
    );
    let r = again.sync().await.unwrap();
    assert_eq!(r.pushed_deletes, 1);
    assert!(again.find("victor").await.unwrap().is_none());
    let disabled: bool = one(
        &pg,
        "SELECT disabled_at IS NOT NULL FROM users WHERE username = 'victor'",
        &[],
    )
    .await;
    assert!(disabled);
    assert_eq!(again.sync().await.unwrap().pushed_deletes, 0);
    assert!(again.find("victor").await.unwrap().is_none());
}

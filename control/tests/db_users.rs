//! Dashboard users and revoked tokens in Postgres (issue 6's `users` / `revoked_tokens` tables, issue 7's roles):
//! the local store is mirrored both ways, registration of the first admin is race-free across installs sharing a
//! database, a disabled user loses access, and a database outage loses nothing.

mod db_support;

use aegis_control::auth::{MemoryUserStore, PasswordHasher, PgMirrorStore, Role, StoreError};
use aegis_control::auth::{UserRecord, UserStore};
use aegis_control::db_link::DbSide;
use aegis_shared::Secret;
use db_support::{one, temp_dir, TestDb};

async fn user(hasher: &PasswordHasher, name: &str, role: Role) -> UserRecord {
    UserRecord {
        username: name.into(),
        role,
        password_hash: hasher.hash(format!("{name}-long-password")).await.unwrap(),
        email: None,
        created_ms: 1_700_000_000_000,
    }
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
        aegis_control::auth::pg_mirror::SyncReport::default()
    );
}

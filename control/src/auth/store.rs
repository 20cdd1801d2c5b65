//! Users and revoked tokens. [`MemoryUserStore`] serves the no-database mode (persisted to `DATA_DIR/users.json`,
//! mode 600, argon2id hashes only); with a database, `crate::db_link::pg_mirror::PgMirrorStore` mirrors it to Postgres.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;

/// A boxed future, so stores can be used as `dyn UserStore`.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything and may send controls (halt, resume, kill, breaker reset) and create users.
    Admin,
    /// Read-only.
    Viewer,
}

impl Role {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
    /// Parses `admin` / `viewer`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// A fresh account id: 128 random bits, hex.
pub fn new_uid() -> String {
    let mut id = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
    hex::encode(id)
}

/// A stored user. `Debug` hides the hash.
///
/// Tokens are bound to the account, not just to its name (issue 15.1): they carry [`UserRecord::uid`] and
/// [`UserRecord::token_gen`], and a token whose pair differs from the stored user's is refused. A user deleted
/// and created again under the same name gets a new uid; a role change, a password change or disabling bumps
/// the generation. Either way every token issued before stops working at once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Normalised (lower-case) user name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Optional contact address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Random account id fixed at creation (32 hex digits). Empty only in a file written before issue 15;
    /// [`MemoryUserStore::open`] fills it in.
    #[serde(default)]
    pub uid: String,
    /// Token generation, bumped by every change that must end the user's sessions.
    #[serde(default)]
    pub token_gen: u64,
}

impl UserRecord {
    /// A new account with a fresh uid and generation 0.
    pub fn new(
        username: String,
        role: Role,
        password_hash: String,
        email: Option<String>,
        created_ms: u64,
    ) -> Self {
        Self {
            username,
            role,
            password_hash,
            email,
            created_ms,
            uid: new_uid(),
            token_gen: 0,
        }
    }
}

/// A change to an existing user. Whatever it changes, it bumps the user's token generation.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UserChange {
    /// New role.
    pub role: Option<Role>,
    /// New argon2id hash.
    pub password_hash: Option<String>,
}

impl std::fmt::Debug for UserChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserChange")
            .field("role", &self.role)
            .field("password", &self.password_hash.as_ref().map(|_| "<new>"))
            .finish()
    }
}

/// A user deleted while the database was unreachable, still to be disabled in Postgres (by uid, so a new user
/// of the same name is never touched).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// User name.
    pub username: String,
    /// The deleted account's uid.
    pub uid: String,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("username", &self.username)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Store failures. `Display` never includes a hash or a database URL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The user name is taken.
    #[error("user already exists")]
    Exists,
    /// A first-user registration raced another one and lost.
    #[error("users already exist")]
    NotEmpty,
    /// Reading or writing the users file failed.
    #[error("user store I/O error: {0}")]
    Io(String),
    /// The backing database failed.
    #[error("user store database error")]
    Db,
}

/// Where users and revoked token ids live.
pub trait UserStore: Send + Sync + 'static {
    /// Number of users.
    fn count(&self) -> BoxFut<'_, Result<u64, StoreError>>;
    /// Looks a user up by normalised name.
    fn find<'a>(&'a self, username: &'a str) -> BoxFut<'a, Result<Option<UserRecord>, StoreError>>;
    /// Inserts a user. With `only_if_empty`, fails with [`StoreError::NotEmpty`] unless the store has no user at
    /// all, atomically (this is what makes "the first user becomes admin" race-free).
    fn insert(&self, user: UserRecord, only_if_empty: bool) -> BoxFut<'_, Result<(), StoreError>>;
    /// All users (for the admin's user list).
    fn list(&self) -> BoxFut<'_, Result<Vec<UserRecord>, StoreError>>;
    /// Revokes a token id until `exp` (seconds since the epoch), after which it would be refused anyway.
    fn revoke<'a>(&'a self, jti: &'a str, exp: u64) -> BoxFut<'a, Result<(), StoreError>>;
    /// Is this token id revoked?
    fn is_revoked<'a>(&'a self, jti: &'a str) -> BoxFut<'a, Result<bool, StoreError>>;
    /// Deletes a user; returns the deleted record, `None` when there was no such user. Its tokens die with it.
    fn delete<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFut<'a, Result<Option<UserRecord>, StoreError>>;
    /// Applies `change` and bumps the token generation; returns the new record, `None` when there is no such
    /// user.
    fn update<'a>(
        &'a self,
        username: &'a str,
        change: UserChange,
    ) -> BoxFut<'a, Result<Option<UserRecord>, StoreError>>;
}

#[derive(Default, Serialize, Deserialize)]
struct FileData {
    users: Vec<UserRecord>,
    #[serde(default)]
    revoked: HashMap<String, u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    deleted: Vec<Tombstone>,
}

/// In-memory users, optionally persisted to a JSON file written atomically with mode 600.
pub struct MemoryUserStore {
    path: Option<PathBuf>,
    data: Mutex<FileData>,
}

impl std::fmt::Debug for MemoryUserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryUserStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl MemoryUserStore {
    /// A store that lives only in memory (tests).
    pub fn ephemeral() -> Self {
        Self {
            path: None,
            data: Mutex::new(FileData::default()),
        }
    }

    /// Opens (or creates on first write) `DATA_DIR/users.json`. A file readable by group or others is tightened
    /// to 600; a file holding anything but argon2id hashes is refused.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("users.json");
        let data = match std::fs::read(&path) {
            Ok(bytes) => {
                tighten(&path)?;
                let d: FileData = serde_json::from_slice(&bytes)
                    .map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
                if let Some(u) = d
                    .users
                    .iter()
                    .find(|u| !super::password::is_argon2id_hash(&u.password_hash))
                {
                    return Err(StoreError::Io(format!(
                        "{}: user {:?} has no argon2id hash; remove the user and register again",
                        path.display(),
                        u.username
                    )));
                }
                d
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileData::default(),
            Err(e) => return Err(StoreError::Io(format!("{}: {e}", path.display()))),
        };
        let store = Self {
            path: Some(path),
            data: Mutex::new(data),
        };
        // A file from before tokens were bound to accounts: give every user an id now and keep it, so the
        // tokens issued from here on survive a restart. (Tokens issued before carry no id and are refused.)
        {
            let mut d = store.lock();
            let mut filled = false;
            for u in d.users.iter_mut().filter(|u| u.uid.is_empty()) {
                u.uid = new_uid();
                filled = true;
            }
            if filled {
                store.persist(&d)?;
            }
        }
        Ok(store)
    }

    /// Deletes locally. With `remember`, also records a [`Tombstone`] for the Postgres mirror to push later.
    pub fn delete_local(
        &self,
        username: &str,
        remember: bool,
    ) -> Result<Option<UserRecord>, StoreError> {
        let mut d = self.lock();
        let Some(i) = d.users.iter().position(|u| u.username == username) else {
            return Ok(None);
        };
        let gone = d.users.remove(i);
        if remember {
            d.deleted.push(Tombstone {
                username: gone.username.clone(),
                uid: gone.uid.clone(),
            });
        }
        if let Err(e) = self.persist(&d) {
            if remember {
                d.deleted.pop();
            }
            d.users.insert(i, gone);
            return Err(e);
        }
        Ok(Some(gone))
    }

    /// Deletions not yet pushed to Postgres.
    pub fn tombstones(&self) -> Vec<Tombstone> {
        self.lock().deleted.clone()
    }

    /// Forgets tombstones that have been pushed.
    pub fn clear_tombstones(&self, done: &[Tombstone]) -> Result<(), StoreError> {
        let mut d = self.lock();
        let before = d.deleted.len();
        d.deleted.retain(|t| !done.contains(t));
        if d.deleted.len() != before {
            self.persist(&d)?;
        }
        Ok(())
    }

    /// Replaces the record of the same name (used by the mirror to adopt Postgres' newer record or to keep
    /// a local one). Returns false when there is no such user.
    pub fn replace(&self, user: UserRecord) -> Result<bool, StoreError> {
        let mut d = self.lock();
        let Some(i) = d.users.iter().position(|u| u.username == user.username) else {
            return Ok(false);
        };
        let old = std::mem::replace(&mut d.users[i], user);
        if let Err(e) = self.persist(&d) {
            d.users[i] = old;
            return Err(e);
        }
        Ok(true)
    }

    /// Users and unexpired revoked token ids (jti → exp), for mirroring to Postgres.
    pub fn snapshot(&self) -> (Vec<UserRecord>, HashMap<String, u64>) {
        let d = self.lock();
        (d.users.clone(), d.revoked.clone())
    }

    /// Adds users and revocations learnt from elsewhere (the Postgres mirror) and removes `disabled` accounts
    /// (user name and uid), persisting once. A user present on both sides keeps the local record unless the
    /// remote one is a different account (another uid: Postgres decides who holds a name) or a newer generation
    /// of the same account (a role or password change made elsewhere). Remote accounts listed in the local
    /// tombstones are not brought back. Returns how many records changed.
    pub fn merge(
        &self,
        users: Vec<UserRecord>,
        revoked: HashMap<String, u64>,
        disabled: &[(String, String)],
    ) -> Result<usize, StoreError> {
        let mut d = self.lock();
        let before_users = d.users.clone();
        let before_revoked = d.revoked.clone();
        let mut changed = 0;
        let n = d.users.len();
        d.users.retain(|u| {
            !disabled
                .iter()
                .any(|(n, id)| *n == u.username && *id == u.uid)
        });
        changed += n - d.users.len();
        for u in users {
            if !super::password::is_argon2id_hash(&u.password_hash)
                || u.uid.is_empty()
                || d.deleted.iter().any(|t| t.uid == u.uid)
            {
                continue;
            }
            match d.users.iter_mut().find(|x| x.username == u.username) {
                None => {
                    d.users.push(u);
                    changed += 1;
                }
                Some(x) if x.uid != u.uid || x.token_gen < u.token_gen => {
                    *x = u;
                    changed += 1;
                }
                Some(_) => {}
            }
        }
        for (jti, exp) in revoked {
            if d.revoked.insert(jti, exp).is_none() {
                changed += 1;
            }
        }
        if changed > 0 {
            if let Err(e) = self.persist(&d) {
                d.users = before_users;
                d.revoked = before_revoked;
                return Err(e);
            }
        }
        Ok(changed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FileData> {
        // A panic while holding this lock cannot leave FileData half-updated in a way that matters more than
        // losing the store, so recover the guard.
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, d: &FileData) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |e: std::io::Error| StoreError::Io(format!("{}: {e}", path.display()));
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(d).map_err(|e| StoreError::Io(e.to_string()))?;
        {
            let mut f = open_private(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(())
    }
}

#[cfg(unix)]
fn open_private(p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(p)
}
#[cfg(not(unix))]
fn open_private(p: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::create(p)
}

#[cfg(unix)]
fn tighten(p: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(p).map_err(|e| StoreError::Io(e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %p.display(), "users file was readable by others; setting mode 600");
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::Io(e.to_string()))?;
    }
    Ok(())
}
#[cfg(not(unix))]
fn tighten(_: &Path) -> Result<(), StoreError> {
    Ok(())
}

impl UserStore for MemoryUserStore {
    fn count(&self) -> BoxFut<'_, Result<u64, StoreError>> {
        let n = self.lock().users.len() as u64;
        Box::pin(async move { Ok(n) })
    }

    fn find<'a>(&'a self, username: &'a str) -> BoxFut<'a, Result<Option<UserRecord>, StoreError>> {
        let u = self
            .lock()
            .users
            .iter()
            .find(|u| u.username == username)
            .cloned();
        Box::pin(async move { Ok(u) })
    }

    fn insert(&self, user: UserRecord, only_if_empty: bool) -> BoxFut<'_, Result<(), StoreError>> {
        let r = (|| {
            let mut d = self.lock();
            if only_if_empty && !d.users.is_empty() {
                return Err(StoreError::NotEmpty);
            }
            if d.users.iter().any(|u| u.username == user.username) {
                return Err(StoreError::Exists);
            }
            d.users.push(user);
            if let Err(e) = self.persist(&d) {
                d.users.pop();
                return Err(e);
            }
            Ok(())
        })();
        Box::pin(async move { r })
    }

    fn list(&self) -> BoxFut<'_, Result<Vec<UserRecord>, StoreError>> {
        let v = self.lock().users.clone();
        Box::pin(async move { Ok(v) })
    }

    fn revoke<'a>(&'a self, jti: &'a str, exp: u64) -> BoxFut<'a, Result<(), StoreError>> {
        let r = {
            let mut d = self.lock();
            let now = super::token::now_secs();
            d.revoked
                .retain(|_, e| *e + super::token::LEEWAY_SECS >= now);
            d.revoked.insert(jti.to_string(), exp);
            self.persist(&d)
        };
        Box::pin(async move { r })
    }

    fn is_revoked<'a>(&'a self, jti: &'a str) -> BoxFut<'a, Result<bool, StoreError>> {
        let r = self.lock().revoked.contains_key(jti);
        Box::pin(async move { Ok(r) })
    }

    fn delete<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFut<'a, Result<Option<UserRecord>, StoreError>> {
        let r = self.delete_local(username, false);
        Box::pin(async move { r })
    }

    fn update<'a>(
        &'a self,
        username: &'a str,
        change: UserChange,
    ) -> BoxFut<'a, Result<Option<UserRecord>, StoreError>> {
        let r = (|| {
            let mut d = self.lock();
            let Some(i) = d.users.iter().position(|u| u.username == username) else {
                return Ok(None);
            };
            let old = d.users[i].clone();
            apply_change(&mut d.users[i], change);
            if let Err(e) = self.persist(&d) {
                d.users[i] = old;
                return Err(e);
            }
            Ok(Some(d.users[i].clone()))
        })();
        Box::pin(async move { r })
    }
}

/// Applies a change and bumps the generation (the one place that does, so no change can forget it).
pub fn apply_change(u: &mut UserRecord, change: UserChange) {
    if let Some(r) = change.role {
        u.role = r;
    }
    if let Some(h) = change.password_hash {
        u.password_hash = h;
    }
    u.token_gen += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserRecord {
        UserRecord {
            username: name.into(),
            role: Role::Viewer,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0OEm1aJ8f1g0rbC8RP0vI1ql1XzUqvJ7uIylnD8RQ2U".into(),
            email: None,
            created_ms: 1,
            uid: new_uid(),
            token_gen: 0,
        }
    }

    #[tokio::test]
    async fn persists_with_mode_600_and_reloads() {
        let dir = std::env::temp_dir().join(format!("aegis-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = MemoryUserStore::open(&dir).unwrap();
        s.insert(user("alice"), true).await.unwrap();
        assert!(matches!(
            s.insert(user("bob"), true).await,
            Err(StoreError::NotEmpty)
        ));
        assert!(matches!(
            s.insert(user("alice"), false).await,
            Err(StoreError::Exists)
        ));
        s.revoke("abc", u64::MAX / 2).await.unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("users.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = MemoryUserStore::open(&dir).unwrap();
        assert_eq!(again.count().await.unwrap(), 1);
        assert!(again.is_revoked("abc").await.unwrap());
        let text = std::fs::read_to_string(dir.join("users.json")).unwrap();
        assert!(text.contains("$argon2id$"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A users.json from before issue 15 has no account ids: they are filled in once and kept, so tokens
    /// issued after the upgrade survive a restart.
    #[tokio::test]
    async fn legacy_file_gets_stable_account_ids() {
        let dir = std::env::temp_dir().join(format!("aegis-users-legacy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut legacy = serde_json::to_value(FileData {
            users: vec![user("alice")],
            ..FileData::default()
        })
        .unwrap();
        let u = legacy["users"][0].as_object_mut().unwrap();
        u.remove("uid");
        u.remove("token_gen");
        std::fs::write(dir.join("users.json"), legacy.to_string()).unwrap();
        let a = MemoryUserStore::open(&dir).unwrap();
        let uid = a.find("alice").await.unwrap().unwrap().uid;
        assert_eq!(uid.len(), 32);
        let b = MemoryUserStore::open(&dir).unwrap();
        assert_eq!(b.find("alice").await.unwrap().unwrap().uid, uid);
        // Changes bump the generation; deleting and re-creating gives a new id.
        let changed = b
            .update(
                "alice",
                UserChange {
                    role: Some(Role::Admin),
                    password_hash: None,
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!((changed.role, changed.token_gen), (Role::Admin, 1));
        assert!(b.delete("alice").await.unwrap().is_some());
        b.insert(user("alice"), false).await.unwrap();
        assert_ne!(b.find("alice").await.unwrap().unwrap().uid, uid);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

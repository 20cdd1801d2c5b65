//! Users and revoked tokens. [`MemoryUserStore`] serves the no-database mode (persisted to `DATA_DIR/users.json`,
//! mode 600, argon2id hashes only); with a database, [`super::pg_mirror::PgMirrorStore`] mirrors it to Postgres.

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

/// A stored user. `Debug` hides the hash.
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
}

#[derive(Default, Serialize, Deserialize)]
struct FileData {
    users: Vec<UserRecord>,
    #[serde(default)]
    revoked: HashMap<String, u64>,
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
        Ok(Self {
            path: Some(path),
            data: Mutex::new(data),
        })
    }

    /// Users and unexpired revoked token ids (jti → exp), for mirroring to Postgres.
    pub fn snapshot(&self) -> (Vec<UserRecord>, HashMap<String, u64>) {
        let d = self.lock();
        (d.users.clone(), d.revoked.clone())
    }

    /// Adds users and revocations learnt from elsewhere (the Postgres mirror) and removes `disabled` user names,
    /// persisting once. Users already present keep their local record. Returns how many records changed.
    pub fn merge(
        &self,
        users: Vec<UserRecord>,
        revoked: HashMap<String, u64>,
        disabled: &[String],
    ) -> Result<usize, StoreError> {
        let mut d = self.lock();
        let before_users = d.users.clone();
        let before_revoked = d.revoked.clone();
        let mut changed = 0;
        let n = d.users.len();
        d.users.retain(|u| !disabled.contains(&u.username));
        changed += n - d.users.len();
        for u in users {
            if !super::password::is_argon2id_hash(&u.password_hash)
                || disabled.contains(&u.username)
            {
                continue;
            }
            if !d.users.iter().any(|x| x.username == u.username) {
                d.users.push(u);
                changed += 1;
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
}

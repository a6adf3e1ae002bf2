//! Sessions: an uploaded volume, kept until it expires, is deleted, or is evicted as the least recently
//! used when the server holds its maximum. MONAI Label's session JSON (`SessionInfo`) describes each.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lru::LruCache;
use medico_io::volume::Volume;
use serde::Serialize;
use tempfile::TempDir;

/// An uploaded volume.
pub struct Session {
    /// The volume, shared with running inferences.
    pub volume: Arc<Volume>,
    /// The uploaded file(s), deleted with the session.
    pub files: Arc<TempDir>,
    /// The uploaded path (a file, or the folder of a DICOM series).
    pub image: PathBuf,
    /// The client's name for it (the uploaded file name).
    pub name: String,
    /// The scan's name in the server's data folder, when the session was opened from it (`serve --data`).
    pub data_scan: Option<String>,
    created: SystemTime,
    last_access: SystemTime,
    expiry: Duration,
}

impl Session {
    /// A session created now.
    pub fn new(volume: Volume, files: TempDir, image: PathBuf, name: String, expiry: Duration) -> Self {
        let now = SystemTime::now();
        Self {
            volume: Arc::new(volume),
            files: Arc::new(files),
            image,
            name,
            data_scan: None,
            created: now,
            last_access: now,
            expiry,
        }
    }

    fn expired(&self, now: SystemTime) -> bool {
        now.duration_since(self.last_access).unwrap_or_default() > self.expiry
    }

    /// MONAI Label's `SessionInfo` JSON, plus the grid. The server's folders are not shown: `path` is
    /// empty and `image` is the uploaded file's name.
    pub fn info(&self) -> SessionInfo {
        let seconds = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let expires = self.last_access.checked_add(self.expiry).map_or(u64::MAX, seconds);
        SessionInfo {
            name: self.name.clone(),
            path: String::new(),
            image: self.name.clone(),
            meta: SessionMeta {
                format: self.volume.format.clone(),
                shape: self.volume.shape(),
                spacing: self.volume.spacing(),
                orientation: self.volume.orientation(),
            },
            create_ts: seconds(self.created),
            last_access_ts: seconds(self.last_access),
            expiry: expires,
        }
    }
}

/// A session as `GET /session/{id}` describes it (MONAI Label's fields).
#[derive(Serialize)]
pub struct SessionInfo {
    name: String,
    path: String,
    image: String,
    meta: SessionMeta,
    create_ts: u64,
    last_access_ts: u64,
    expiry: u64,
}

/// What medico adds to a session's description: the volume's grid.
#[derive(Serialize)]
struct SessionMeta {
    format: String,
    shape: [usize; 3],
    spacing: [f64; 3],
    orientation: String,
}

/// What a running inference needs of a session.
#[derive(Clone)]
pub struct SessionView {
    /// The volume.
    pub volume: Arc<Volume>,
    /// Keeps the uploaded files alive while the request runs.
    pub files: Arc<TempDir>,
    /// The uploaded path.
    pub image: PathBuf,
    /// The scan's name in the server's data folder, when opened from it.
    pub data_scan: Option<String>,
}

/// The open sessions, least recently used first out.
pub struct SessionStore {
    sessions: Mutex<LruCache<String, Session>>,
}

impl SessionStore {
    /// A store holding at most `capacity` sessions.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            sessions: Mutex::new(LruCache::new(capacity)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Session>> {
        // A poisoned lock only means a panic elsewhere while holding it; the map itself stays valid.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a session under a new id; returns the id and the ids evicted or expired to make room.
    pub fn insert(&self, session: Session) -> (String, Vec<String>) {
        let id = new_id();
        let mut sessions = self.lock();
        let mut dropped = remove_expired(&mut sessions);
        if let Some((old, _)) = sessions.push(id.clone(), session) {
            if old != id {
                dropped.push(old);
            }
        }
        (id, dropped)
    }

    /// The session `id` (marked as used now), or `None` when unknown or expired.
    pub fn get(&self, id: &str) -> Option<(SessionView, SessionInfo)> {
        let mut sessions = self.lock();
        let now = SystemTime::now();
        if sessions.peek(id).is_some_and(|s| s.expired(now)) {
            sessions.pop(id);
            return None;
        }
        let session = sessions.get_mut(id)?;
        session.last_access = now;
        let view = SessionView {
            volume: Arc::clone(&session.volume),
            files: Arc::clone(&session.files),
            image: session.image.clone(),
            data_scan: session.data_scan.clone(),
        };
        Some((view, session.info()))
    }

    /// Removes the session `id`; its description, or `None` when unknown.
    pub fn remove(&self, id: &str) -> Option<SessionInfo> {
        self.lock().pop(id).map(|s| s.info())
    }

    /// Closes every expired session; their ids.
    pub fn remove_expired(&self) -> Vec<String> {
        remove_expired(&mut self.lock())
    }

    /// Number of open sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops expired sessions; their ids.
fn remove_expired(sessions: &mut LruCache<String, Session>) -> Vec<String> {
    let now = SystemTime::now();
    let expired: Vec<String> = sessions
        .iter()
        .filter(|(_, s)| s.expired(now))
        .map(|(id, _)| id.clone())
        .collect();
    for id in &expired {
        sessions.pop(id);
    }
    expired
}

/// A random 128-bit session id in hex (as UUIDs are unguessable: the id is the session's only key).
fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use medico_io::volume::GridHeader;
    use ndarray::Array3;

    fn session(expiry: Duration) -> Session {
        let volume = Volume {
            data: Array3::zeros((2, 2, 2)),
            affine: [
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
            grid: GridHeader::Nifti1(Box::default()),
            format: "test".into(),
            notes: Vec::new(),
        };
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("x.nii");
        Session::new(volume, dir, image, "x.nii".into(), expiry)
    }

    #[test]
    fn the_least_recently_used_session_makes_room() {
        let store = SessionStore::new(NonZeroUsize::new(2).unwrap());
        let (a, _) = store.insert(session(Duration::from_secs(60)));
        let (b, _) = store.insert(session(Duration::from_secs(60)));
        assert!(store.get(&a).is_some());
        let (c, dropped) = store.insert(session(Duration::from_secs(60)));
        assert_eq!(dropped, vec![b.clone()]);
        assert!(store.get(&b).is_none());
        assert!(store.get(&a).is_some() && store.get(&c).is_some());
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn expired_sessions_are_gone_and_deleted_ones_too() {
        let store = SessionStore::new(NonZeroUsize::new(4).unwrap());
        let (a, _) = store.insert(session(Duration::ZERO));
        std::thread::sleep(Duration::from_millis(5));
        assert!(store.get(&a).is_none());
        let (b, _) = store.insert(session(Duration::from_secs(60)));
        assert!(store.remove(&b).is_some());
        assert!(store.remove(&b).is_none());
        assert!(store.is_empty());
    }
}

//! Slice embeddings kept in memory between requests: the encoder runs once per session, model and slice
//! (a click on a slice already seen only runs the decoder). Bounded: the least recently used embedding
//! goes first (each is 4 MB for SAM and LiteMedSAM).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use ndarray::ArrayD;

/// Which slice of which session, through which model.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct SliceKey {
    /// Session id.
    pub session: String,
    /// Model name.
    pub model: String,
    /// Slicing axis.
    pub axis: usize,
    /// Slice index.
    pub slice: usize,
}

/// The embeddings in memory.
pub struct EmbeddingStore {
    entries: Mutex<LruCache<SliceKey, Arc<ArrayD<f32>>>>,
}

impl EmbeddingStore {
    /// A store of at most `capacity` embeddings.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<SliceKey, Arc<ArrayD<f32>>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The embedding of `key`, if kept.
    pub fn get(&self, key: &SliceKey) -> Option<Arc<ArrayD<f32>>> {
        self.lock().get(key).cloned()
    }

    /// Keeps `embedding` for `key`.
    pub fn put(&self, key: SliceKey, embedding: Arc<ArrayD<f32>>) {
        self.lock().put(key, embedding);
    }

    /// Forgets every embedding of `session`.
    pub fn forget_session(&self, session: &str) {
        let mut entries = self.lock();
        let keys: Vec<SliceKey> = entries
            .iter()
            .filter(|(k, _)| k.session == session)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            entries.pop(&key);
        }
    }

    /// Number of embeddings kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(session: &str, slice: usize) -> SliceKey {
        SliceKey {
            session: session.into(),
            model: "m".into(),
            axis: 2,
            slice,
        }
    }

    #[test]
    fn bounded_and_forgotten_with_the_session() {
        let store = EmbeddingStore::new(NonZeroUsize::new(2).unwrap());
        let e = Arc::new(ArrayD::<f32>::zeros(ndarray::IxDyn(&[1])));
        store.put(key("a", 0), e.clone());
        store.put(key("b", 0), e.clone());
        store.put(key("a", 1), e.clone());
        assert_eq!(store.len(), 2);
        assert!(store.get(&key("a", 0)).is_none(), "the oldest went first");
        store.forget_session("a");
        assert!(store.get(&key("a", 1)).is_none());
        assert!(store.get(&key("b", 0)).is_some());
    }
}

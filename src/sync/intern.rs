//! One copy of each id a sync meets many times. In a large organization the same few account
//! ids and permission set ARNs, and each user's id, recur in every assignment and group
//! membership: held once each, the inventory of 15,000 assignments is a third of its size
//! (docs/performance.md, "The largest sync's peak memory").

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

/// The ids seen so far by every stream of one sync (the streams share it: a user's id is
/// listed by one and named in the assignments of another).
#[derive(Clone, Debug, Default)]
pub struct Interner(Arc<Mutex<HashSet<Arc<str>>>>);

impl Interner {
    /// Makes `id` the copy already held of the same text, or holds it as the first.
    pub fn intern(&self, id: &mut Arc<str>) {
        // A panic while holding the lock leaves the set whole: each step is one insert.
        let mut known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match known.get(&**id) {
            Some(held) => *id = Arc::clone(held),
            None => {
                known.insert(Arc::clone(id));
            }
        }
    }

    pub fn intern_all<'a>(&self, ids: impl IntoIterator<Item = &'a mut Arc<str>>) {
        ids.into_iter().for_each(|id| self.intern(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_ids_become_one_copy_and_others_stay_apart() {
        let interner = Interner::default();
        let mut first: Arc<str> = Arc::from("user-1");
        let mut again: Arc<str> = Arc::from(String::from("user-1"));
        let mut other: Arc<str> = Arc::from("user-2");
        assert!(!Arc::ptr_eq(&first, &again));
        interner.intern(&mut first);
        // A clone of the interner is the same set: what one stream holds, another finds.
        interner.clone().intern_all([&mut again, &mut other]);
        assert!(Arc::ptr_eq(&first, &again), "the same text is one copy");
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!((&*again, &*other), ("user-1", "user-2"));
    }
}

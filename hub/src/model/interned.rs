//! One shared copy of values many records hold equal.
//!
//! A fleet's nodes announce much the same [`wasmfleet_proto::Hello`]: one agent version, one
//! engine profile with its CPU feature list, a few label sets. Held per node, those strings
//! were half a kilobyte of the hub's memory per node; interned, equal announcements share one
//! allocation and a node keeps a pointer.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

/// Distinct values, each shared by every holder of an equal one.
#[derive(Debug)]
pub struct Interned<T> {
    values: HashSet<Arc<T>>,
    /// Size after the last sweep: the next sweep runs when the set has doubled since.
    swept_at: usize,
}

impl<T> Default for Interned<T> {
    fn default() -> Self {
        Interned {
            values: HashSet::new(),
            swept_at: 0,
        }
    }
}

/// Values below which the set is never swept.
const SWEEP_FLOOR: usize = 64;

impl<T: Eq + Hash> Interned<T> {
    /// The shared copy equal to `value`. Values nobody holds any more are dropped when the set
    /// has doubled since the last sweep, so it stays within twice the values in use at an
    /// amortised O(1) per call.
    pub fn intern(&mut self, value: T) -> Arc<T> {
        if let Some(shared) = self.values.get(&value) {
            return shared.clone();
        }
        if self.values.len() >= (2 * self.swept_at).max(SWEEP_FLOOR) {
            self.values.retain(|v| Arc::strong_count(v) > 1);
            self.swept_at = self.values.len();
        }
        let shared = Arc::new(value);
        self.values.insert(shared.clone());
        shared
    }

    /// `value`'s shared copy if there is one, else `value` itself, now shared.
    pub fn share(&mut self, value: &Arc<T>) -> Arc<T> {
        match self.values.get(&**value) {
            Some(shared) => shared.clone(),
            None => {
                self.values.insert(value.clone());
                value.clone()
            }
        }
    }

    /// Distinct values held (some perhaps by nobody else until the next sweep).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no value is held.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_copy() {
        let mut pool = Interned::default();
        let a = pool.intern(String::from("x86_64-unknown-linux-gnu"));
        let b = pool.intern(String::from("x86_64-unknown-linux-gnu"));
        let c = pool.intern(String::from("pulley32"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(pool.len(), 2);
        let own = Arc::new(String::from("pulley32"));
        assert!(Arc::ptr_eq(&pool.share(&own), &c));
    }

    #[test]
    fn values_nobody_holds_are_swept_as_the_set_grows() {
        let mut pool = Interned::default();
        let kept: Vec<Arc<u32>> = (0..10).map(|i| pool.intern(i)).collect();
        for i in 10..10_000 {
            drop(pool.intern(i));
        }
        assert!(pool.len() <= 2 * SWEEP_FLOOR, "{} values held", pool.len());
        for (i, k) in kept.iter().enumerate() {
            assert!(
                Arc::ptr_eq(k, &pool.intern(i as u32)),
                "value {i} lost its copy"
            );
        }
    }
}

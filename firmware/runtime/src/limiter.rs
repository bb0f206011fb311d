//! Memory limits: `resources.memory` caps all linear memories and tables of an instance
//! together, as on the Linux agent (`runtime/memory.rs`): growing past it is an error that
//! ends the instance as `OOMKilled`, and an instance whose initial memories do not fit is not
//! created. On a device this is what keeps one module from taking the heap of the others.

use wasmtime::ResourceLimiter;

/// What one table element is charged: the Linux agent's 8 bytes, so that a module fits the
/// same `resources.memory` on every node (a 32-bit device's real cost is lower).
pub const TABLE_ELEMENT_BYTES: u64 = 8;

/// The error that stops a guest over its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "memory limit exceeded: growing a {what} to {desired} bytes would bring the instance's memories and tables to {total} bytes, over its limit of {limit} bytes (resources.memory)"
)]
pub struct MemoryExceeded {
    /// "linear memory" or "table".
    pub what: &'static str,
    /// The size asked for, bytes.
    pub desired: u64,
    /// The instance's total with it, bytes.
    pub total: u64,
    /// The limit, bytes.
    pub limit: u64,
}

/// A `ResourceLimiter` over all memories and tables of one store.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    limit: u64,
    used: u64,
    /// Highest total reached, bytes.
    pub peak: u64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> MemoryBudget {
        MemoryBudget {
            limit,
            used: 0,
            peak: 0,
        }
    }

    fn grow(&mut self, what: &'static str, current: u64, desired: u64) -> wasmtime::Result<bool> {
        let total = (self.used - current.min(self.used)).saturating_add(desired);
        if total > self.limit {
            return Err(wasmtime::Error::new(MemoryExceeded {
                what,
                desired,
                total,
                limit: self.limit,
            }));
        }
        self.used = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }
}

impl ResourceLimiter for MemoryBudget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow("linear memory", current as u64, desired as u64)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let bytes = |elements: usize| (elements as u64).saturating_mul(TABLE_ELEMENT_BYTES);
        self.grow("table", bytes(current), bytes(desired))
    }

    fn instances(&self) -> usize {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_and_tables_share_one_limit() {
        let mut b = MemoryBudget::new(10 << 20);
        assert!(b.memory_growing(0, 4 << 20, None).unwrap());
        assert!(
            b.memory_growing(0, 4 << 20, None).unwrap(),
            "a second memory"
        );
        assert!(b.table_growing(0, 1 << 18, None).unwrap(), "2 MiB of table");
        let err = b.memory_growing(4 << 20, 5 << 20, None).unwrap_err();
        let e = err.downcast_ref::<MemoryExceeded>().unwrap();
        assert_eq!(e.total, 11 << 20);
        assert!(b.table_growing(1 << 18, 1 << 30, None).is_err());
        assert_eq!(b.peak, 10 << 20);
    }
}

//! Memory limits: `resources.memory` caps all linear memories and tables of an instance
//! together (wasmtime's `StoreLimits` caps each memory on its own and leaves tables alone, so
//! a module with several memories or a huge table could exceed it many times over).

use wasmfleet_common::quantity::format_bytes;

/// What one table element costs the host: a pointer on 64-bit hosts (funcref, externref).
pub const TABLE_ELEMENT_BYTES: u64 = 8;

/// The error that stops a guest over its limit: an allocation refused at instantiation, or a
/// trap at the `memory.grow`/`table.grow` that would exceed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "memory limit exceeded: growing a {what} to {} would bring the instance's memories and tables to {}, over its limit of {} (resources.memory)",
    format_bytes(*.desired), format_bytes(*.total), format_bytes(*.limit)
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
        let total = self.used - current.min(self.used) + desired;
        if total > self.limit {
            return Err(MemoryExceeded {
                what,
                desired,
                total,
                limit: self.limit,
            }
            .into());
        }
        self.used = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }
}

impl wasmtime::ResourceLimiter for MemoryBudget {
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
    use wasmtime::ResourceLimiter as _;

    #[test]
    fn memories_and_tables_share_one_limit() {
        let mut b = MemoryBudget::new(10 << 20);
        assert!(b.memory_growing(0, 4 << 20, None).unwrap());
        assert!(
            b.memory_growing(0, 4 << 20, None).unwrap(),
            "a second memory"
        );
        // 2 Mi + 1 table elements of 8 bytes: 16 MiB more than allowed? No: 2 MiB of table.
        assert!(b.table_growing(0, 1 << 18, None).unwrap());
        let err = b.memory_growing(4 << 20, 5 << 20, None).unwrap_err();
        let e = err.downcast_ref::<MemoryExceeded>().unwrap();
        assert_eq!(e.total, 11 << 20);
        assert!(err.to_string().contains("over its limit of 10Mi"), "{err}");
        assert!(b.table_growing(1 << 18, 1 << 30, None).is_err());
        assert_eq!(b.peak, 10 << 20);
    }
}

//! Room on a node: memory, instance slots and the bytes of its desired state.

use wasmfleet_proto::Capacity;

use super::reasons::Fail;

/// Bytes of workload specs one node's desired state may hold: one frame, less headroom for
/// the generation and framing. Placement treats it as a capacity like memory, so no node's
/// desired state can outgrow what the wire carries.
pub const DESIRED_STATE_BUDGET: usize = wasmfleet_proto::MAX_FRAME_LEN - 1024;

/// What the workloads placed on a node so far take from it.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Usage {
    pub memory: u64,
    pub count: u32,
    pub bytes: usize,
}

/// What one workload of a deployment takes from a node.
#[derive(Debug, Clone, Copy)]
pub(super) struct Demand {
    pub memory: u64,
    pub bytes: usize,
}

impl Usage {
    pub fn add(&mut self, want: Demand) {
        self.memory = self.memory.saturating_add(want.memory);
        self.count = self.count.saturating_add(1);
        self.bytes = self.bytes.saturating_add(want.bytes);
    }
}

/// Why one more workload of `want` does not fit a node of `cap` holding `used`, checked in
/// the order reasons are reported: memory, instance slots, desired-state bytes.
pub(super) fn room(cap: Capacity, used: Usage, want: Demand) -> Option<Fail<'static>> {
    if used.memory.saturating_add(want.memory) > cap.memory_bytes {
        Some(Fail::InsufficientMemory)
    } else if used.count >= cap.max_workloads {
        Some(Fail::TooManyWorkloads)
    } else if used.bytes.saturating_add(want.bytes) > DESIRED_STATE_BUDGET {
        Some(Fail::DesiredStateFull)
    } else {
        None
    }
}

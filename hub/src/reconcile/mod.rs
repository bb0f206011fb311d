//! Pure controllers: from declared deployments and observed nodes to per-node desired states,
//! and from node reports to workload views. Drivers (the hub's controller task) call these;
//! nothing here does I/O or reads a clock.

mod desired;
pub mod liveness;
pub mod rollout;
mod views;

pub use desired::{current_placement, node_desired_states};
pub use views::workload_views;

//! The persisted desired state: `DIR/desired.bin`, the last [`DesiredState`] the agent accepted,
//! in the wire encoding. It is what lets a node restore its workloads after a reboot without
//! the hub (autonomy at the edge).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use wasmfleet_common::fsutil;
use wasmfleet_proto::DesiredState;

/// File name of the persisted desired state inside the data directory.
pub const DESIRED_FILE: &str = "desired.bin";

/// Why the desired state could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot persist the desired state to {path}: {source}")]
pub struct StateError {
    /// The file being written.
    pub path: PathBuf,
    /// The I/O failure.
    pub source: io::Error,
}

/// Path of the desired-state file in `dir`.
pub fn desired_path(dir: &Path) -> PathBuf {
    dir.join(DESIRED_FILE)
}

/// Loads the persisted desired state. A missing file is an empty state; an unreadable or
/// corrupt one is logged and treated as empty, because a bad file must not keep the agent
/// from connecting and receiving a fresh one.
pub fn load_desired(dir: &Path) -> Option<DesiredState> {
    let path = desired_path(dir);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot read persisted desired state; starting empty");
            return None;
        }
    };
    match wasmfleet_proto::decode::<DesiredState>(&bytes) {
        Ok(state) => Some(state),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "corrupt persisted desired state; starting empty");
            None
        }
    }
}

/// Writes the desired state atomically: temp file, fsync, rename, fsync of the directory. A
/// crash at any point leaves either the old or the new state, never a torn file.
pub fn save_desired(dir: &Path, state: &DesiredState) -> Result<(), StateError> {
    let path = desired_path(dir);
    fsutil::write_atomic(&path, &wasmfleet_proto::encode(state))
        .map_err(|source| StateError { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmfleet_proto::{Digest, Limits, ModuleRef, RestartPolicy, WorkloadSpec};

    fn sample() -> DesiredState {
        DesiredState {
            fleet: 9,
            generation: 7,
            workloads: vec![WorkloadSpec {
                name: "hello-0".into(),
                deployment: "hello".into(),
                revision: 2,
                module: ModuleRef {
                    digest: Digest([3; 32]),
                    size: 10,
                },
                args: vec!["--count".into(), "2".into()],
                env: vec![],
                limits: Limits {
                    memory_bytes: 1 << 20,
                    cpu_millis: None,
                    max_run_ms: None,
                },
                restart: RestartPolicy::OnFailure,
                code: wasmfleet_proto::Code::Source,
                namespace: "default".into(),
                config: vec![],
                capabilities: Default::default(),
            }],
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_desired(dir.path()), None);
        save_desired(dir.path(), &sample()).unwrap();
        assert_eq!(load_desired(dir.path()), Some(sample()));
        let mut next = sample();
        next.generation = 8;
        save_desired(dir.path(), &next).unwrap();
        assert_eq!(load_desired(dir.path()).unwrap().generation, 8);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [DESIRED_FILE], "no temporary files left");
    }

    #[test]
    fn corrupt_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = wasmfleet_proto::encode(&sample());
        bytes.truncate(bytes.len() / 2);
        fs::write(desired_path(dir.path()), &bytes).unwrap();
        assert_eq!(load_desired(dir.path()), None);
        fs::write(desired_path(dir.path()), b"\x09garbage").unwrap();
        assert_eq!(load_desired(dir.path()), None);
    }
}

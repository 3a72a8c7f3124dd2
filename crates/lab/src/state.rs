//! The state file of a running lab (`/run/cilia/lab/<name>/state.json`). The supervisor is its only
//! writer and replaces it atomically; `status`, `datastore_url` and `down` read it.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::LabError;
use crate::procfs::ProcessId;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    pub lab: String,
    /// `unix:///run/cilia/lab/<name>/etcd.sock`.
    pub datastore_url: String,
    /// When the supervisor started.
    pub started_at: DateTime<Utc>,
    pub supervisor: ProcessId,
    /// The supervisor received SIGTERM and is stopping its processes.
    #[serde(default)]
    pub stopping: bool,
    /// Nodes the supervisor holds (killed): it starts none of their processes.
    #[serde(default)]
    pub held: Vec<String>,
    pub processes: Vec<ProcessState>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessState {
    pub name: String,
    pub host: String,
    pub namespace: String,
    /// The current (or last) incarnation.
    pub pid: Option<ProcessId>,
    pub running: bool,
    /// How many times the supervisor started it again after it exited.
    pub restarts: u32,
    pub started_at: Option<DateTime<Utc>>,
    /// How the previous incarnation ended, e.g. `signal 9 (SIGKILL)`.
    pub last_exit: Option<String>,
    pub log: PathBuf,
}

impl LabState {
    /// None when the file does not exist (the lab is not running or was never started).
    pub fn read(path: &Path) -> Result<Option<Self>, LabError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LabError::io("read state file", path, e)),
        };
        serde_json::from_str(&text).map(Some).map_err(|source| LabError::Json { path: path.to_path_buf(), source })
    }

    /// Writes through a temporary file and a rename, so readers never see half a file.
    pub fn write(&self, path: &Path) -> Result<(), LabError> {
        write_json_atomically(path, self)
    }

    /// The supervisor recorded here is still running.
    pub fn supervisor_alive(&self) -> bool {
        self.supervisor.is_alive()
    }
}

pub(crate) fn write_json_atomically<T: Serialize>(path: &Path, value: &T) -> Result<(), LabError> {
    let json =
        serde_json::to_vec_pretty(value).map_err(|source| LabError::Json { path: path.to_path_buf(), source })?;
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, json).map_err(|e| LabError::io("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| LabError::io("rename into place", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(LabState::read(&path).unwrap(), None);
        let state = LabState {
            lab: "t1".into(),
            datastore_url: "unix:///run/cilia/lab/t1/etcd.sock".into(),
            started_at: Utc::now(),
            supervisor: ProcessId { pid: 42, start_ticks: 7 },
            stopping: false,
            held: vec!["k8s-w1".into()],
            processes: vec![ProcessState {
                name: "etcd".into(),
                host: "k8s-ctr".into(),
                namespace: "t1-k8s-ctr".into(),
                pid: None,
                running: false,
                restarts: 3,
                started_at: None,
                last_exit: Some("exit status 1".into()),
                log: "/run/cilia/lab/t1/logs/etcd.log".into(),
            }],
        };
        state.write(&path).unwrap();
        assert_eq!(LabState::read(&path).unwrap(), Some(state));
        fs::write(&path, "{").unwrap();
        assert!(matches!(LabState::read(&path), Err(LabError::Json { .. })));
    }
}

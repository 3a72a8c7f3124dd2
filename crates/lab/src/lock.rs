//! An exclusive lock on a file, held for the lifetime of the guard: `up` and `down` of one lab never
//! interleave, and a lab never has two supervisors.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::LabError;

#[derive(Debug)]
pub struct FileLock {
    _lock: Flock<File>,
    path: PathBuf,
}

impl FileLock {
    /// Waits for the lock. The lock file may be unlinked by its previous holder (`down` removes
    /// it), so after locking, the file must still be the one at `path`; otherwise lock again.
    pub fn acquire(path: &Path) -> Result<Self, LabError> {
        loop {
            // A blocking lock only returns None if interrupted; then, as after an unlink, retry.
            if let Some(lock) = Self::open_and_lock(path, FlockArg::LockExclusive)?
                && lock.still_linked()
            {
                return Ok(lock);
            }
        }
    }

    /// Returns None when someone else holds the lock.
    pub fn try_acquire(path: &Path) -> Result<Option<Self>, LabError> {
        Self::open_and_lock(path, FlockArg::LockExclusiveNonblock)
    }

    fn open_and_lock(path: &Path, arg: FlockArg) -> Result<Option<Self>, LabError> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| LabError::io("create directory", dir, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| LabError::io("open lock file", path, e))?;
        match Flock::lock(file, arg) {
            Ok(lock) => Ok(Some(FileLock { _lock: lock, path: path.to_path_buf() })),
            Err((_, Errno::EWOULDBLOCK | Errno::EINTR)) => Ok(None),
            Err((_, e)) => Err(LabError::io("lock", path, e.into())),
        }
    }

    fn still_linked(&self) -> bool {
        match (fs::metadata(&self.path), self._lock.metadata()) {
            (Ok(on_disk), Ok(held)) => on_disk.ino() == held.ino() && on_disk.dev() == held.dev(),
            _ => false,
        }
    }

    /// Removes the lock file while still holding the lock; waiters notice and lock a new file.
    pub fn remove(self) {
        let _ = fs::remove_file(&self.path);
    }
}

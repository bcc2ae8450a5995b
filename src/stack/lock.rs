//! One lock per project (`.inframock/lock`, an OS file lock): the commands that start, stop or load
//! the stack (`run`, `stop`, `reset`, `reload-data`) hold it while they change anything, so two of
//! them never act on one project at once. A second `run` waits for the first and then reuses its
//! stack. The lock dies with its process (even after `kill -9`), so it can never be left stale.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// File name of the lock inside `.inframock/`.
pub const LOCK_FILE: &str = "lock";

/// How long a command waits for another one of the same project before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(600);

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct ProjectLock {
    file: File,
}

impl ProjectLock {
    /// Takes the project's lock, waiting (with one line saying for whom) while another command
    /// holds it, at most `wait`. The file is opened close-on-exec, so processes we spawn never
    /// inherit it.
    pub fn acquire(state_dir: &Path, command: &str, wait: Duration) -> Result<ProjectLock> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("cannot create {}", state_dir.display()))?;
        let path = state_dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the project lock {}", path.display()))?;
        let began = Instant::now();
        let mut said = false;
        loop {
            if try_lock(&file)? {
                let mut lock = ProjectLock { file };
                lock.write_holder(command);
                return Ok(lock);
            }
            if !said {
                eprintln!(
                    "waiting for another inframock command of this project to finish ({})",
                    holder_of(&path)
                );
                said = true;
            }
            if began.elapsed() >= wait {
                anyhow::bail!(
                    "another inframock command of this project ({}) held {} for {}; wait for it to finish or stop it",
                    holder_of(&path),
                    path.display(),
                    crate::output::human_duration(wait)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// [`ProjectLock::acquire`] off the async runtime's threads.
    pub async fn acquire_async(
        state_dir: &Path,
        command: &str,
        wait: Duration,
    ) -> Result<ProjectLock> {
        let state_dir = state_dir.to_path_buf();
        let command = command.to_string();
        tokio::task::spawn_blocking(move || ProjectLock::acquire(&state_dir, &command, wait))
            .await
            .context("the wait for the project lock was interrupted")?
    }

    fn write_holder(&mut self, command: &str) {
        // Only informative (the kernel lock is the truth): who holds it, for the waiting message.
        let _ = self.file.set_len(0);
        let _ = writeln!(self.file, "pid {} ({command})", std::process::id());
    }
}

fn try_lock(file: &File) -> Result<bool> {
    // SAFETY: flock on a descriptor we own; LOCK_NB makes it return at once.
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if result == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(false);
    }
    Err(error).context("cannot take the project lock")
}

fn holder_of(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "unknown process".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_and_times_out_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = ProjectLock::acquire(dir.path(), "run", LOCK_WAIT).unwrap();
        let err = ProjectLock::acquire(dir.path(), "stop", Duration::from_millis(200))
            .unwrap_err()
            .to_string();
        assert!(err.contains("(run)"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        let again = ProjectLock::acquire(dir.path(), "stop", Duration::from_millis(200));
        assert!(again.is_ok(), "released on drop");
    }
}

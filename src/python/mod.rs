//! Python helpers (mock handlers, queue mappers) run as separate processes: started in the user
//! file's folder with an empty environment, their own session (so a timeout kills everything they
//! started), and resource limits; the program text begins with `python/sandbox.py`, which confines
//! file access to that folder and refuses processes and sockets.

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Address space a helper process may use.
const MEMORY_LIMIT: u64 = 1 << 30;
/// Largest file a helper may write (inside its folder).
const FILE_SIZE_LIMIT: u64 = 64 << 20;

/// The interpreter: `explicit`, else the project's `.venv`, else `python3` on PATH.
pub fn find_python(explicit: Option<&Path>, project_dir: &Path) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    let venv = project_dir.join(".venv/bin/python3");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("python3")
}

/// `python -I -c <program> <file>`, confined as described above, with piped stdio.
pub fn confined_command(
    python: &Path,
    program: &'static str,
    file: &Path,
) -> tokio::process::Command {
    let folder = file.parent().unwrap_or(Path::new("/"));
    let mut command = tokio::process::Command::new(python);
    command
        .arg("-I")
        .arg("-c")
        .arg(program)
        .arg(file)
        .current_dir(folder)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", folder)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: only async-signal-safe calls (setsid, setrlimit) between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            limit(libc::RLIMIT_AS, MEMORY_LIMIT);
            limit(libc::RLIMIT_FSIZE, FILE_SIZE_LIMIT);
            limit(libc::RLIMIT_CORE, 0);
            limit(libc::RLIMIT_NOFILE, 64);
            Ok(())
        });
    }
    command
}

/// Kills a helper and everything it started (it leads its own process group).
pub fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid {
        // SAFETY: sending a signal has no memory effects; the group was created by setsid.
        unsafe {
            libc::kill(-(pid as i32), libc::SIGKILL);
        }
    }
}

fn limit(resource: libc::__rlimit_resource_t, value: u64) {
    let bound = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit with a valid pointer; failure only leaves the limit as it was.
    unsafe {
        libc::setrlimit(resource, &bound);
    }
}

/// The last part of a helper's stderr (its traceback), cut to `keep` bytes at a char boundary.
pub fn stderr_tail(err: &[u8], keep: usize) -> String {
    let text = String::from_utf8_lossy(err);
    let text = text.trim();
    if text.is_empty() {
        return "no output on stderr".to_string();
    }
    let start = text.len().saturating_sub(keep);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

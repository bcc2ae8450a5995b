//! Python helpers (mock handlers, queue mappers) run as separate, warm processes: started in the
//! user file's folder with an empty environment, their own session (so a timeout kills everything
//! they started), resource limits, and kernel confinement (`confine`: Landlock and seccomp, applied
//! before the interpreter starts). The program text begins with `python/sandbox.py`, whose audit
//! hook only turns refusals into clearer messages: the kernel is the boundary.

pub mod confine;
pub mod worker;

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

/// How helpers run: the interpreter, and whether the kernel confines them.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub python: PathBuf,
    /// Kernel confinement (Landlock, seccomp) before the interpreter starts; `false` only with
    /// `--unsafe-handlers` on a kernel without them.
    confined: bool,
}

impl Sandbox {
    /// A sandbox for `python`. Without Landlock (ABI ≥ 4) and seccomp, helpers are refused with a
    /// message saying why, unless `allow_unconfined` (`--unsafe-handlers`), which warns.
    pub fn new(python: PathBuf, allow_unconfined: bool) -> Result<Sandbox, String> {
        match confine::kernel_support() {
            Ok(()) => Ok(Sandbox {
                python,
                confined: true,
            }),
            Err(why) if allow_unconfined => {
                eprintln!(
                    "warning: Python handlers and mappers run WITHOUT kernel confinement ({why}; --unsafe-handlers): their code can read and write your files and reach your network"
                );
                Ok(Sandbox {
                    python,
                    confined: false,
                })
            }
            Err(why) => Err(format!(
                "Python handlers and mappers are refused: {why}, so their code cannot be confined. Run on Linux ≥ 6.7, or pass --unsafe-handlers to run them unconfined"
            )),
        }
    }

    /// `python -I -c <program> <file>` in the file's folder with an empty environment, its own
    /// session, resource limits and (when confined) Landlock and seccomp applied before exec;
    /// `scratch` is the only folder it may write. Piped stdio.
    pub fn command(
        &self,
        program: &'static str,
        file: &Path,
        scratch: &Path,
    ) -> Result<tokio::process::Command, String> {
        let folder = file.parent().unwrap_or(Path::new("/"));
        let (program_path, confinement) = if self.confined {
            let interpreter = confine::interpreter(&self.python)?;
            let confinement = confine::Confinement::new(&interpreter, folder, scratch)?;
            (interpreter.launch, Some(confinement))
        } else {
            (self.python.clone(), None)
        };
        let mut command = tokio::process::Command::new(program_path);
        command
            .arg("-I")
            .arg("-c")
            .arg(program)
            .arg(file)
            .current_dir(folder)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", scratch)
            .env("TMPDIR", scratch)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONIOENCODING", "utf-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: between fork and exec only system calls are made (setsid, setrlimit, prctl,
        // landlock_restrict_self, seccomp); everything they use was built before the fork.
        unsafe {
            command.pre_exec(move || {
                libc::setsid();
                limit(libc::RLIMIT_AS, MEMORY_LIMIT);
                limit(libc::RLIMIT_FSIZE, FILE_SIZE_LIMIT);
                limit(libc::RLIMIT_CORE, 0);
                limit(libc::RLIMIT_NOFILE, 64);
                match &confinement {
                    Some(confinement) => confinement.apply(),
                    None => Ok(()),
                }
            });
        }
        Ok(command)
    }
}

/// `relative` inside `folder`, symlinks resolved: a helper file outside its folder (`..`, an
/// absolute path, a link pointing out) is refused, naming the rule. `what` names the setting.
pub fn file_inside(folder: &Path, relative: &str, what: &str) -> Result<PathBuf, String> {
    let candidate = folder.join(relative);
    let root = std::fs::canonicalize(folder).map_err(|e| {
        format!(
            "{what} {relative:?}: no such file {} (its folder {} cannot be read: {e})",
            candidate.display(),
            folder.display()
        )
    })?;
    let resolved = std::fs::canonicalize(&candidate).map_err(|_| {
        format!(
            "{what} {relative:?}: no such file {} (it is resolved against {})",
            candidate.display(),
            folder.display()
        )
    })?;
    if !resolved.starts_with(&root) {
        return Err(format!(
            "{what} {relative:?} resolves to {}, outside {}: helper files must be inside that folder (after following links)",
            resolved.display(),
            root.display()
        ));
    }
    if !resolved.is_file() {
        return Err(format!(
            "{what} {relative:?}: {} is not a file",
            resolved.display()
        ));
    }
    Ok(resolved)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_files_must_stay_inside_their_folder() {
        let root = tempfile::tempdir().unwrap();
        let mocks = root.path().join("mocks");
        std::fs::create_dir_all(mocks.join("sub")).unwrap();
        std::fs::write(mocks.join("sub/h.py"), "").unwrap();
        std::fs::write(root.path().join("outside.py"), "").unwrap();
        std::os::unix::fs::symlink(root.path().join("outside.py"), mocks.join("link.py")).unwrap();
        assert!(file_inside(&mocks, "sub/h.py", "`handler`").is_ok());
        for escape in [
            "../outside.py",
            "link.py",
            "/etc/passwd",
            "sub/../../outside.py",
        ] {
            let err = file_inside(&mocks, escape, "`handler`").unwrap_err();
            assert!(
                err.contains("outside") || err.contains("no such"),
                "{escape}: {err}"
            );
        }
        let err = file_inside(&mocks, "../outside.py", "`handler`").unwrap_err();
        assert!(err.contains("must be inside"), "{err}");
        assert!(file_inside(&mocks, "missing.py", "`handler`")
            .unwrap_err()
            .contains("no such file"));
    }
}

//! Kernel confinement of a Python helper (mock handler, bridge mapper), applied in the child
//! between fork and exec — before the interpreter runs a single line, so nothing the Python code
//! does can undo it:
//! - Landlock (filesystem): read-only access to the interpreter's installation and the helper's
//!   folder, read-write only in a scratch folder of its own, execute only the interpreter;
//!   (network, ABI ≥ 4) no TCP bind or connect; (ABI ≥ 6) no signals to processes outside.
//! - seccomp: no new processes (fork, vfork, clone without CLONE_THREAD), no sockets, no new
//!   session or process group (the whole group is killed on timeout), no namespaces, ptrace,
//!   io_uring or BPF.
//! - `no_new_privs`, and (in `super`) rlimits and its own process group.
//!
//! Everything that allocates (rulesets, BPF programs) is built in the parent; the child only
//! makes system calls.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, Ruleset,
    RulesetAttr, RulesetCreatedAttr, Scope, ABI,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// The Landlock ABI the confinement needs: filesystem rules and TCP rules.
const REQUIRED_ABI: ABI = ABI::V4;

/// Where the interpreter lives: what it must be able to read and execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    /// What to execute: `sys.executable` as the interpreter reports it (a virtual environment's
    /// link keeps its environment; a launcher script such as a pyenv shim is skipped).
    pub launch: PathBuf,
    /// The interpreter's executable, symlinks resolved.
    pub executable: PathBuf,
    /// `sys.prefix`, `sys.base_prefix`, `sys.exec_prefix`, `sys.base_exec_prefix`, resolved.
    pub prefixes: Vec<PathBuf>,
}

/// Asks `python` (once per path, cached) where its installation is.
pub fn interpreter(python: &Path) -> Result<Interpreter, String> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Interpreter>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(found) = cache.lock().ok().and_then(|c| c.get(python).cloned()) {
        return Ok(found);
    }
    let output = std::process::Command::new(python)
        .args([
            "-I",
            "-c",
            "import os, sys; print(sys.executable); print('\\n'.join(os.path.realpath(p) for p in (sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)))",
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .output()
        .map_err(|e| {
            format!(
                "cannot run {} ({e}); install Python 3 or point --python (INFRAMOCK_PYTHON) at it",
                python.display()
            )
        })?;
    if !output.status.success() {
        return Err(format!(
            "{} -c 'import sys' failed: {}",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines().map(PathBuf::from);
    let mut next = || {
        lines
            .next()
            .ok_or_else(|| format!("{} did not say where it is", python.display()))
    };
    let launch = next()?;
    let executable = next()?;
    let mut prefixes: Vec<PathBuf> = lines.collect();
    prefixes.sort();
    prefixes.dedup();
    let found = Interpreter {
        launch,
        executable,
        prefixes,
    };
    if let Ok(mut cache) = cache.lock() {
        cache.insert(python.to_path_buf(), found.clone());
    }
    Ok(found)
}

/// Whether this kernel can confine helpers (Landlock ABI ≥ 4 and seccomp); otherwise why not.
pub fn kernel_support() -> Result<(), String> {
    // SAFETY: landlock_create_ruleset with a null attribute and the VERSION flag only returns the ABI.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    if abi < 4 {
        return Err(if abi < 0 {
            "this kernel has no Landlock (Linux ≥ 6.7 with Landlock enabled is needed)".to_string()
        } else {
            format!("this kernel's Landlock ABI is {abi}; network rules need ABI 4 (Linux ≥ 6.7)")
        });
    }
    // SAFETY: PR_GET_SECCOMP only reads the calling thread's seccomp mode.
    if unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } < 0 {
        return Err("this kernel has no seccomp".to_string());
    }
    Ok(())
}

/// A confinement ready to apply in a child.
#[derive(Debug)]
pub struct Confinement {
    ruleset: OwnedFd,
    filters: Vec<BpfProgram>,
}

impl Confinement {
    /// The confinement of a helper whose file is in `folder`, writing only in `scratch`.
    pub fn new(
        interpreter: &Interpreter,
        folder: &Path,
        scratch: &Path,
    ) -> Result<Confinement, String> {
        let ruleset = landlock_ruleset(interpreter, folder, scratch)
            .map_err(|e| format!("cannot build the Landlock ruleset: {e}"))?;
        let filters = seccomp_filters()?;
        Ok(Confinement { ruleset, filters })
    }

    /// Confines the calling process. Call only in the child between fork and exec: it makes
    /// system calls and nothing else (no allocation).
    ///
    /// # Safety
    /// Must run in a freshly forked child (`pre_exec`); the confinement is irreversible.
    pub unsafe fn apply(&self) -> std::io::Result<()> {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::syscall(
            libc::SYS_landlock_restrict_self,
            self.ruleset.as_raw_fd(),
            0u32,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        for filter in &self.filters {
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0u64,
                &program as *const libc::sock_fprog,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Read-only places every interpreter needs: shared libraries and the loader's cache.
const SYSTEM_READ_ONLY: [&str; 6] = [
    "/usr/lib",
    "/usr/lib64",
    "/lib",
    "/lib64",
    "/etc/ld.so.cache",
    "/usr/share/zoneinfo",
];

fn existing(paths: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = paths
        .into_iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    found.sort();
    found.dedup();
    found
}

fn landlock_ruleset(
    interpreter: &Interpreter,
    folder: &Path,
    scratch: &Path,
) -> Result<OwnedFd, landlock::RulesetError> {
    let read: BitFlags<AccessFs> = AccessFs::ReadFile | AccessFs::ReadDir;
    let read_only = existing(
        SYSTEM_READ_ONLY
            .iter()
            .map(PathBuf::from)
            .chain(interpreter.prefixes.iter().cloned())
            .chain([folder.to_path_buf()]),
    );
    // The interpreter and the ELF loader it names are the only programs it may execute.
    let executables = existing([
        interpreter.executable.clone(),
        PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
        PathBuf::from("/lib/ld-linux-aarch64.so.1"),
    ]);
    let writable = AccessFs::from_all(REQUIRED_ABI) & !AccessFs::Execute;
    let created = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(REQUIRED_ABI))?
        .handle_access(AccessNet::from_all(REQUIRED_ABI))?
        .set_compatibility(CompatLevel::BestEffort)
        .scope(Scope::from_all(ABI::V6))?
        .create()?
        .set_compatibility(CompatLevel::HardRequirement)
        .add_rules(path_beneath_rules(&read_only, read))?
        .add_rules(path_beneath_rules(&executables, read | AccessFs::Execute))?
        .add_rules(path_beneath_rules([scratch], writable))?
        .add_rules(path_beneath_rules(
            ["/dev/null"],
            AccessFs::ReadFile | AccessFs::WriteFile,
        ))?;
    let fd: Option<OwnedFd> = created.into();
    fd.ok_or(landlock::RulesetError::CreateRuleset(
        landlock::CreateRulesetError::MissingHandledAccess,
    ))
}

/// Syscalls refused with EPERM whatever their arguments.
const REFUSED: [i64; 19] = [
    libc::SYS_fork,
    libc::SYS_vfork,
    libc::SYS_socket,
    libc::SYS_socketpair,
    libc::SYS_setsid,
    libc::SYS_setpgid,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
    libc::SYS_pivot_root,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_keyctl,
    libc::SYS_add_key,
];

fn seccomp_filters() -> Result<Vec<BpfProgram>, String> {
    let arch = std::env::consts::ARCH.try_into().map_err(|_| {
        format!(
            "seccomp filters are not built for {}",
            std::env::consts::ARCH
        )
    })?;
    let error = |e: seccompiler::BackendError| format!("cannot build the seccomp filter: {e}");
    let mut refused: BTreeMap<i64, Vec<SeccompRule>> =
        REFUSED.iter().map(|call| (*call, Vec::new())).collect();
    // clone is how threads start (CLONE_THREAD) and how processes fork (without it).
    let fork_like = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
        0,
    )
    .map_err(error)?;
    refused.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![fork_like]).map_err(error)?],
    );
    let deny = SeccompFilter::new(
        refused,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(error)?;
    // clone3 hides its flags in memory a filter cannot read: ENOSYS makes the C library fall back
    // to clone, which the filter above can check.
    let no_clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(error)?;
    [deny, no_clone3]
        .into_iter()
        .map(|filter| {
            BpfProgram::try_from(filter)
                .map_err(|e| format!("cannot compile the seccomp filter: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_compile_and_this_kernel_confines() {
        assert!(seccomp_filters().unwrap().iter().all(|f| !f.is_empty()));
        kernel_support().expect("the test machines have Landlock ABI >= 4 and seccomp");
    }
}

//! The version of a running service, for `status`: read the way its kind says (a health route,
//! the Python package beside its program, the program's `--version`), or the image tag of its
//! container. A local process is asked through what it runs (its interpreter, its executable), so
//! another PATH at the time of asking cannot name another installation's version.

use std::path::PathBuf;
use std::time::Duration;

use super::catalog::{ServiceKind, VersionSpec};
use super::ports::process_args;
use super::runtime::docker::split_image;
use super::runtime::local::{find_program, process_start_time};
use super::state::ServiceRecord;
use crate::cli::RuntimeKind;
use crate::config::Settings;

/// Versions already read, by running instance (a process or container keeps its version): the
/// dashboard asks every two seconds, and reading a Python package's version starts an interpreter.
/// A version that could not be told is not kept: it is asked again next time.
type Known = std::collections::HashMap<(String, Option<u32>, Option<u64>, Option<String>), String>;

static KNOWN: std::sync::OnceLock<std::sync::Mutex<Known>> = std::sync::OnceLock::new();

/// The version of `record`'s service, or `None` when it cannot be told (never an error: `status`
/// shows what it knows). Read once per running instance.
pub async fn of_service(
    settings: &Settings,
    record: &ServiceRecord,
    kind: &ServiceKind,
) -> Option<String> {
    let instance = (
        record.name.to_string(),
        record.pid,
        record.started,
        record.container.clone(),
    );
    let known = KNOWN.get_or_init(Default::default);
    if let Some(version) = known.lock().ok().and_then(|k| k.get(&instance).cloned()) {
        return Some(version);
    }
    let version = read(settings, record, kind).await?;
    if let Ok(mut known) = known.lock() {
        known.insert(instance, version.clone());
    }
    Some(version)
}

async fn read(settings: &Settings, record: &ServiceRecord, kind: &ServiceKind) -> Option<String> {
    if let (RuntimeKind::Docker, Some(image)) = (record.runtime, &record.program) {
        if !matches!(kind.version, VersionSpec::HttpJson { .. }) {
            return Some(format!("image {}", split_image(image).1));
        }
    }
    match &kind.version {
        VersionSpec::HttpJson { path, field } => {
            let answer = crate::http_client::get_json(&record.url, "", path)
                .await
                .ok()?;
            answer.get(field)?.as_str().map(str::to_string)
        }
        VersionSpec::PythonPackage(package) => {
            let python = match running_interpreter(record) {
                Some(python) => python,
                None => configured_program(settings, record)?
                    .parent()?
                    .join("python3"),
            };
            if let Some(version) = installed_in_venv(&python, package) {
                return Some(version);
            }
            let code = format!("import importlib.metadata as m; print(m.version({package:?}))");
            first_line(&python, &["-c", &code]).await
        }
        VersionSpec::ProgramFlag(flag) => {
            let program =
                running_executable(record).or_else(|| configured_program(settings, record))?;
            first_line(&program, &[flag.as_str()]).await
        }
        VersionSpec::Unknown => None,
    }
}

/// The program the settings name for a service now: what a service that is not running locally
/// (or whose process cannot be read) is asked through.
fn configured_program(settings: &Settings, record: &ServiceRecord) -> Option<PathBuf> {
    find_program(
        &record.name,
        settings.service(&record.name),
        &settings.project_dir,
    )
    .ok()
}

/// The process of a local service, while it is still the one the stack started (not a reused
/// PID): its version is the version of what it runs, whatever PATH says now.
fn running_pid(record: &ServiceRecord) -> Option<u32> {
    let pid = record
        .pid
        .filter(|_| record.runtime == RuntimeKind::Local)?;
    (process_start_time(pid)? == record.started?).then_some(pid)
}

/// The program a process was invoked as, when it is a file's absolute path.
fn invoked_as(pid: u32) -> Option<PathBuf> {
    let first = process_args(pid)?.into_iter().next()?;
    let path = PathBuf::from(first);
    (path.is_absolute() && path.is_file()).then_some(path)
}

/// The interpreter a running Python service was started with, as it was invoked (a virtual
/// environment's `bin/python3` reads that environment's packages; the file it links to does not).
fn running_interpreter(record: &ServiceRecord) -> Option<PathBuf> {
    invoked_as(running_pid(record)?).filter(|path| {
        path.file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("python"))
    })
}

/// The program a running service runs: as it was invoked, else the file the process executes (a
/// program that renames its process, as redis-server does, leaves only that).
fn running_executable(record: &ServiceRecord) -> Option<PathBuf> {
    let pid = running_pid(record)?;
    invoked_as(pid).or_else(|| std::fs::read_link(format!("/proc/{pid}/exe")).ok())
}

/// The version of `package` installed in the virtual environment `python` belongs to, read from
/// its `*.dist-info` folder's name, without starting the interpreter (0.06-0.07 s of CPU, which
/// every `status` and `snapshot save` paid). Only where that folder is the one Python itself would
/// read: an environment that does not see the system's packages (`pyvenv.cfg`), holding exactly
/// one installation of the package; `None` otherwise, and the interpreter is asked.
fn installed_in_venv(python: &std::path::Path, package: &str) -> Option<String> {
    let environment = python.parent()?.parent()?;
    let config = std::fs::read_to_string(environment.join("pyvenv.cfg")).ok()?;
    let sees_system_packages = config.lines().any(|line| {
        let mut pair = line.splitn(2, '=');
        pair.next().map(str::trim) == Some("include-system-site-packages")
            && pair.next().map(|v| v.trim().eq_ignore_ascii_case("true")) == Some(true)
    });
    if sees_system_packages {
        return None;
    }
    let mut found = Vec::new();
    for lib in std::fs::read_dir(environment.join("lib")).ok()?.flatten() {
        if !lib.file_name().to_string_lossy().starts_with("python3") {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(lib.path().join("site-packages")) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Some(version) = dist_info_version(&entry.file_name().to_string_lossy(), package)
            {
                found.push(version);
            }
        }
    }
    match found.as_slice() {
        [version] => Some(version.clone()),
        _ => None,
    }
}

/// The version a `NAME-VERSION.dist-info` folder name gives for `package` (names compared as
/// Python normalises them: case, `-`, `_` and `.` alike).
fn dist_info_version(folder: &str, package: &str) -> Option<String> {
    let stem = folder.strip_suffix(".dist-info")?;
    let (name, version) = stem.rsplit_once('-')?;
    let normal = |text: &str| {
        text.chars()
            .map(|c| match c {
                '-' | '.' => '_',
                c => c.to_ascii_lowercase(),
            })
            .collect::<String>()
    };
    (normal(name) == normal(package) && !version.is_empty()).then(|| version.to_string())
}

/// The version number in what a program says of itself: `Redis server v=7.0.15 sha=...` → `7.0.15`,
/// `memcached 1.6.18` → `1.6.18`, `postgres (PostgreSQL) 15.18` → `15.18`; the text itself when it
/// holds none.
pub fn version_number(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c == '=')
        .map(|word| word.trim_start_matches('v'))
        .find(|word| {
            word.contains('.')
                && word
                    .split('.')
                    .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()))
        })
        .map_or_else(|| text.to_string(), str::to_string)
}

/// The first line a command prints (stdout, else stderr) within 5 s.
async fn first_line(program: &std::path::Path, args: &[&str]) -> Option<String> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(5), command.output())
        .await
        .ok()?
        .ok()?;
    let text = if output.stdout.is_empty() {
        output.stderr
    } else {
        output.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| version_number(l.trim()))
        .filter(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::{dist_info_version, installed_in_venv, version_number};

    #[test]
    fn a_packages_version_is_read_from_its_dist_info_folder_name() {
        assert_eq!(
            dist_info_version("moto-5.2.5.dist-info", "moto").as_deref(),
            Some("5.2.5")
        );
        assert_eq!(
            dist_info_version("Mini_Stack-1.0.dev3.dist-info", "mini-stack").as_deref(),
            Some("1.0.dev3")
        );
        assert_eq!(dist_info_version("motor-3.0.dist-info", "moto"), None);
        assert_eq!(dist_info_version("moto-5.2.5.egg-info", "moto"), None);
    }

    #[test]
    fn only_an_environment_python_alone_reads_is_read_without_python() {
        let venv = tempfile::tempdir().unwrap();
        let python = venv.path().join("bin/python3");
        let site = venv.path().join("lib/python3.11/site-packages");
        std::fs::create_dir_all(site.join("moto-5.2.5.dist-info")).unwrap();
        // No pyvenv.cfg: not an environment.
        assert_eq!(installed_in_venv(&python, "moto"), None);
        std::fs::write(
            venv.path().join("pyvenv.cfg"),
            "home = /usr/bin\ninclude-system-site-packages = false\n",
        )
        .unwrap();
        assert_eq!(installed_in_venv(&python, "moto").as_deref(), Some("5.2.5"));
        assert_eq!(installed_in_venv(&python, "ministack"), None);
        // Two installations: which one Python reads is its business.
        std::fs::create_dir_all(site.join("moto-5.1.0.dist-info")).unwrap();
        assert_eq!(installed_in_venv(&python, "moto"), None);
        std::fs::remove_dir(site.join("moto-5.1.0.dist-info")).unwrap();
        std::fs::write(
            venv.path().join("pyvenv.cfg"),
            "include-system-site-packages = true\n",
        )
        .unwrap();
        assert_eq!(
            installed_in_venv(&python, "moto"),
            None,
            "the system's may win"
        );
    }

    #[test]
    fn version_numbers_are_read_out_of_what_programs_say() {
        assert_eq!(
            version_number("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64"),
            "7.0.15"
        );
        assert_eq!(version_number("memcached 1.6.18"), "1.6.18");
        assert_eq!(version_number("postgres (PostgreSQL) 15.18"), "15.18");
        assert_eq!(version_number("5.2.5"), "5.2.5");
        assert_eq!(version_number("nightly"), "nightly");
    }
}

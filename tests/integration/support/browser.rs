//! A real browser for the dashboard tests: Debian's headless Chromium, driven over the DevTools
//! protocol on a pipe (`--remote-debugging-pipe`: JSON messages ending in a NUL byte, written to
//! the browser's fd 3 and read from its fd 4), so no WebSocket client is needed. The tests load
//! pages, read the DOM and fill and submit forms through `Runtime.evaluate`.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long a page may take to show what a test waits for (a bound on a hang, not a timing).
const WAIT: Duration = Duration::from_secs(60);

/// A headless Chromium with one page open.
pub struct Browser {
    child: Child,
    to_browser: std::fs::File,
    from_browser: BufReader<std::fs::File>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

/// The Chromium program: Debian's binary itself (its `chromium` launcher script adds nothing
/// headless needs), else `chromium`, `chromium-browser`, `google-chrome` on PATH.
fn program() -> String {
    let debian = "/usr/lib/chromium/chromium";
    if std::path::Path::new(debian).is_file() {
        return debian.to_string();
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
            .unwrap_or(false);
        if found {
            return name.to_string();
        }
    }
    panic!("the dashboard tests need a headless Chromium: `apt-get install chromium` (.ci/run installs it)");
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills two descriptors we then own; O_CLOEXEC keeps them from other children.
    let result = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(result, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are owned by nothing else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Browser {
    /// Starts Chromium (1200×900) with an empty page.
    pub fn start() -> Browser {
        let program = program();
        let profile = tempfile::tempdir().expect("profile folder");
        let (browser_reads, we_write) = pipe();
        let (we_read, browser_writes) = pipe();
        let (read_fd, write_fd) = (
            std::os::fd::AsRawFd::as_raw_fd(&browser_reads),
            std::os::fd::AsRawFd::as_raw_fd(&browser_writes),
        );
        let mut command = Command::new(&program);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--window-size=1200,900",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(profile.path().join("stderr.log")).expect("log"));
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec. The pipe
        // ends are first copied above 10: one of them may itself be fd 3 or 4 (dup2 onto itself
        // would keep its close-on-exec flag, and the first dup2 could overwrite the second end).
        unsafe {
            command.pre_exec(move || {
                let read_copy = libc::fcntl(read_fd, libc::F_DUPFD, 10);
                let write_copy = libc::fcntl(write_fd, libc::F_DUPFD, 10);
                if read_copy < 0
                    || write_copy < 0
                    || libc::dup2(read_copy, 3) < 0
                    || libc::dup2(write_copy, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("chromium starts");
        drop(browser_reads);
        drop(browser_writes);
        let mut browser = Browser {
            child,
            to_browser: std::fs::File::from(we_write),
            from_browser: BufReader::new(std::fs::File::from(we_read)),
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("a target").to_string();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_string();
        browser.call("Page.enable", json!({}));
        browser
    }

    /// Sends a command (to the page once attached) and returns its result; events are skipped.
    fn call(&mut self, method: &str, params: Value) -> Value {
        match self.try_call(method, params) {
            Ok(result) => result,
            Err(error) => panic!("{method} failed: {error}"),
        }
    }

    /// [`Browser::call`], with the browser's refusal as an error (an evaluation that meets a
    /// navigation: "Execution context was destroyed").
    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("JSON");
        bytes.push(0);
        if let Err(e) = self.to_browser.write_all(&bytes) {
            panic!(
                "chromium is gone ({e}) before {method}: {}",
                self.stderr_tail()
            );
        }
        loop {
            let mut raw = Vec::new();
            let read = self
                .from_browser
                .read_until(0, &mut raw)
                .expect("read from chromium");
            if read == 0 {
                panic!(
                    "chromium closed its pipe during {method}: {}",
                    self.stderr_tail()
                );
            }
            raw.pop();
            let answer: Value = serde_json::from_slice(&raw).expect("a DevTools message");
            if answer["id"] == id {
                return match answer.get("error") {
                    Some(error) => Err(error.clone()),
                    None => Ok(answer["result"].clone()),
                };
            }
        }
    }

    /// Evaluates JavaScript in the page; its value (promises awaited).
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy (a page load, a form's answer, a live update);
    /// panics naming `what` after a minute.
    pub fn wait_for(&mut self, expression: &str, what: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            // An evaluation that meets a navigation ("Execution context was destroyed") or
            // throws counts as "not yet".
            let wrapped =
                format!("(function(){{try{{return {expression};}}catch(e){{return null;}}}})()");
            let value = self
                .try_call(
                    "Runtime.evaluate",
                    json!({"expression": wrapped, "returnByValue": true, "awaitPromise": true}),
                )
                .map(|result| result["result"]["value"].clone())
                .unwrap_or(Value::Null);
            let truthy = !(value.is_null()
                || value == json!(false)
                || value == json!("")
                || value == json!(0));
            if truthy {
                return value;
            }
            if Instant::now() >= deadline {
                let body = self.eval("document.body ? document.body.innerText : ''");
                panic!("the page never showed {what}; it shows:\n{body}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Opens `url` and waits until it is loaded.
    pub fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        let expected = serde_json::to_string(url).expect("JSON");
        self.wait_for(
            &format!("document.readyState === 'complete' && location.href === {expected}"),
            &format!("{url} loaded"),
        );
    }

    /// The text of the element `selector` ("" when there is none).
    pub fn text(&mut self, selector: &str) -> String {
        let selector = serde_json::to_string(selector).expect("JSON");
        self.eval(&format!(
            "(function(){{var e=document.querySelector({selector});return e?e.innerText:'';}})()"
        ))
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Fills the fields of form `form` (name → value) and submits it as a user would (the
    /// browser sends its own Origin), then waits for the page it leads to.
    pub fn submit(&mut self, form: &str, fields: &[(&str, &str)]) {
        let form_selector = serde_json::to_string(form).expect("JSON");
        let mut script = format!("var f=document.querySelector({form_selector});");
        for (name, value) in fields {
            script.push_str(&format!(
                "f.elements[{}].value={};",
                serde_json::to_string(name).expect("JSON"),
                serde_json::to_string(value).expect("JSON")
            ));
        }
        script.push_str("window.__leaving=true;f.requestSubmit();true");
        self.eval(&script);
        self.wait_for(
            "!window.__leaving && document.readyState === 'complete'",
            &format!("the answer to {form}"),
        );
    }

    /// The end of what Chromium printed, for failure messages.
    fn stderr_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self._profile.path().join("stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| !l.contains("dbus")).collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A PNG of the page as shown (1200 px wide).
    pub fn screenshot(&mut self) -> Vec<u8> {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("image data"))
            .expect("base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

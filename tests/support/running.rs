//! `joincanary run` as a child process on 127.0.0.1 port 0: the address comes from its own
//! `joincanary running … listen=ADDR` log line, so no test guesses a free port.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// A running `joincanary run`; stopped with SIGTERM when dropped.
pub struct Running {
    pub child: Child,
    /// `127.0.0.1:PORT` as bound.
    pub addr: String,
    /// Every stderr line so far (logfmt).
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    /// Starts `joincanary --log.format logfmt run --config CONFIG EXTRA...` and waits (at most
    /// 20 s) for it to listen.
    pub fn start(config: &Path, extra: &[&str]) -> Running {
        Self::start_with(config, extra, &[])
    }

    pub fn start_with(config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Running {
        let mut cmd = Command::new(super::binary());
        cmd.args(["--log.format", "logfmt", "run", "--config"])
            .arg(config)
            .args(extra)
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd)
    }

    /// [`Running::start`] under `prlimit --nofile=N:N` (util-linux): an open-files limit, soft
    /// and hard, that the process cannot raise.
    pub fn start_prlimit(config: &Path, nofile: u64) -> Running {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(super::binary())
            .args(["--log.format", "logfmt", "run", "--config"])
            .arg(config)
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Self::spawn(cmd)
    }

    /// Starts a prepared command (e.g. under `prlimit`) that ends in `joincanary ... run`, with
    /// logfmt logs on a piped stderr.
    pub fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd.spawn().expect("joincanary run starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stderr);
            let mut line = String::new();
            // Bounded by the child's life: read_line returns 0 once it exits.
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if line.contains("msg=\"joincanary running\"")
                    && let Some(addr) = joincanary::logging::parse_pairs(line.trim_end())
                        .into_iter()
                        .find(|(k, _)| k == "listen")
                        .map(|(_, v)| v)
                {
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line.trim_end().to_string());
                line.clear();
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "joincanary run never listened:\n{}",
                    lines.lock().unwrap().join("\n")
                );
            }
        };
        Running { child, addr, lines }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits (blocking, 50 ms apart, at most `within`) until a log line satisfies `ok`: whether
    /// one did.
    pub fn wait_line(&self, within: Duration, ok: impl Fn(&str) -> bool) -> bool {
        let deadline = std::time::Instant::now() + within;
        loop {
            if self.lines.lock().unwrap().iter().any(|l| ok(l)) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait; the exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.terminate()
    }

    fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        // Bounded: a stop waits for runs in flight (each under its deadline) and 5 s of flush.
        super::exit_within(&mut self.child, Duration::from_secs(15)).and_then(|s| s.code())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// `joincanary healthcheck ARGS...` with `env` and none of the caller's `JOINCANARY_` listen,
/// web config or health check variables: its exit code, stdout and stderr together, and how
/// long it took.
pub fn healthcheck(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, Duration) {
    let started = std::time::Instant::now();
    let mut cmd = Command::new(super::binary());
    cmd.arg("healthcheck")
        .args(args)
        .env_remove("JOINCANARY_LISTEN")
        .env_remove("JOINCANARY_WEB_CONFIG_FILE")
        .env_remove("JOINCANARY_HEALTHCHECK_USER")
        .env_remove("JOINCANARY_HEALTHCHECK_PASSWORD_FILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text, started.elapsed())
}

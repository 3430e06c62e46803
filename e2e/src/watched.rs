//! Programs that the tests and benchmarks start and that must not outlive them: `passport run`
//! and its replicas, the null webhook. A test binary never drops its statics (a stack shared by
//! its tests lives in one), so a `Drop` is not enough: each program runs under a small shell
//! that stops it (SIGTERM) once the test binary is gone, and that ends by itself once the
//! program has exited. The shell learns that the test binary is gone from a pipe, not from its
//! process ID: its standard input is a pipe whose other end only the test binary holds, and
//! the kernel closes it when the binary exits, however it exits (a polled process ID may be
//! another process's by then). The shell writes the program's process ID to a file, for the
//! signals of the drills and the benchmark's RSS readings.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::Duration,
};

/// The shell around the program: `$0` is the program, `$@` its arguments. A background reader
/// waits on the pipe (fd 3, the shell's standard input: an asynchronous list's own standard
/// input is /dev/null) and stops the program at its end of file; the shell waits for the
/// program, then ends the reader, and exits with the program's status.
const WATCHDOG: &str = r#"exec 3<&0; "$0" "$@" </dev/null 3<&- & child=$!; echo $child > "$PASSPORT_WATCHED_PIDFILE"; (read -r _ <&3; kill $child 2>/dev/null) & reader=$!; wait $child; status=$?; kill $reader 2>/dev/null; exit $status"#;

/// A program started under the watchdog. Dropping it stops the program (SIGTERM) and waits for
/// it to exit.
#[derive(Debug)]
pub struct Watched {
    shell: Child,
    pidfile: PathBuf,
}

impl Watched {
    /// Starts `program`, with what `setup` adds to its command (arguments, environment,
    /// standard output and error; its standard input is /dev/null), its process ID written to
    /// `pidfile`.
    pub fn spawn(
        program: impl AsRef<OsStr>,
        pidfile: impl Into<PathBuf>,
        setup: impl FnOnce(&mut Command) -> &mut Command,
    ) -> std::io::Result<Self> {
        let pidfile = pidfile.into();
        // A stale file would name a process that is gone (or, by now, another one).
        let _ = std::fs::remove_file(&pidfile);
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg(program)
            .env("PASSPORT_WATCHED_PIDFILE", &pidfile);
        setup(&mut command);
        // The pipe: its write end stays in `shell.stdin`, never written to.
        let shell = command.stdin(Stdio::piped()).spawn()?;
        Ok(Self { shell, pidfile })
    }

    /// The program's process ID, once the shell has written it.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// [`Watched::pid`], waiting up to five seconds for the shell to write it.
    pub async fn started_pid(&self) -> Option<u32> {
        for _ in 0..100 {
            if let Some(pid) = self.pid() {
                return Some(pid);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Sends `signal` (`-TERM`, `-KILL`, `-STOP`, …) to the program, while it runs: once the
    /// shell has ended, the ID in the file may be another process's.
    pub fn signal(&mut self, signal: &str) {
        if !matches!(self.shell.try_wait(), Ok(None)) {
            return;
        }
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
        }
    }

    /// Waits for the program (and its shell) to exit. This closes the pipe, which stops the
    /// program if it still runs: signal it first for another way to end.
    pub fn wait(&mut self) {
        let _ = self.shell.wait();
    }

    /// The file the program's process ID is written to.
    pub fn pidfile(&self) -> &Path {
        &self.pidfile
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.signal("-TERM");
        self.wait();
    }
}

/// The write end of an [`on_exit`] pipe: the action runs when it is dropped, or when this
/// process exits, however it exits.
#[derive(Debug)]
pub struct OnExit(#[allow(dead_code, reason = "held: closing it runs the action")] ChildStdin);

/// Runs `sh -c action` (its arguments `$1`, …, from `args`) once this process is gone or the
/// returned value is dropped, whichever comes first: what a `Drop` cannot do for a value that
/// lives in a `static` (a test binary's shared stack), or for a process killed with SIGKILL. A
/// detached shell waits on a pipe whose write end only the returned value holds; the kernel
/// closes it as this process exits. None, with a warning, if the shell cannot start.
pub fn on_exit(action: &str, args: &[&OsStr]) -> Option<OnExit> {
    // An asynchronous list's standard input is /dev/null, set before its own redirections: the
    // pipe reaches it as fd 3, opened before.
    let script = format!("exec 3<&0; (read -r _ <&3; {action}) &");
    let started = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut shell = match started {
        Ok(shell) => shell,
        Err(error) => {
            tracing::warn!(%error, action, "could not start an exit watchdog");
            return None;
        }
    };
    // Taken before the wait, which would close it.
    let pipe = shell.stdin.take();
    if !shell.wait().is_ok_and(|status| status.success()) {
        tracing::warn!(action, "an exit watchdog did not start");
    }
    pipe.map(OnExit)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own for one test, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            let dir =
                std::env::temp_dir().join(format!("passport-watched-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn alive(pid: u32) -> bool {
        // A zombie still has its /proc entry; its state is Z.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        })
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..250 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{what}: not within five seconds");
    }

    /// The program runs with its arguments and environment, its ID is written, and a drop
    /// stops it.
    #[tokio::test]
    async fn a_watched_program_runs_and_a_drop_stops_it() {
        let dir = Scratch::new();
        let out = dir.0.join("out");
        let watched = Watched::spawn("sh", dir.0.join("pid"), |c| {
            c.args(["-c", r#"echo "$1 $GREETING" > "$0"; exec sleep 60"#])
                .arg(&out)
                .arg("hello")
                .env("GREETING", "world")
        })
        .unwrap();
        let pid = watched.started_pid().await.expect("the pid is written");
        assert!(alive(pid));
        until("the program's output", || {
            std::fs::read_to_string(&out).is_ok_and(|s| !s.is_empty())
        })
        .await;
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "hello world\n");
        drop(watched);
        assert!(!alive(pid), "the program is stopped");
    }

    /// When the process that started it is gone, the program is stopped: the kernel closes the
    /// pipe's write end, as the test does here by hand.
    #[tokio::test]
    async fn the_program_stops_when_its_parent_is_gone() {
        let dir = Scratch::new();
        let mut watched = Watched::spawn("sleep", dir.0.join("pid"), |c| {
            // The shell reports the job it stopped ("Terminated").
            c.arg("60").stderr(Stdio::null())
        })
        .unwrap();
        let pid = watched.started_pid().await.expect("the pid is written");
        assert!(alive(pid));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(alive(pid), "the program runs while the pipe is open");
        drop(watched.shell.stdin.take());
        until("the program stopped after its parent", || !alive(pid)).await;
        until("the shell ended", || {
            matches!(watched.shell.try_wait(), Ok(Some(_)))
        })
        .await;
    }

    /// The program's standard input is /dev/null, not the pipe, and its exit status is the
    /// shell's.
    #[tokio::test]
    async fn the_program_reads_nothing_and_its_status_is_kept() {
        let dir = Scratch::new();
        let out = dir.0.join("out");
        let mut watched = Watched::spawn("sh", dir.0.join("pid"), |c| {
            c.args(["-c", r#"cat > "$0"; exit 7"#]).arg(&out)
        })
        .unwrap();
        until("the program exited", || {
            matches!(watched.shell.try_wait(), Ok(Some(_)))
        })
        .await;
        let status = watched.shell.try_wait().unwrap().unwrap();
        assert_eq!(status.code(), Some(7));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "");
    }

    /// A program that exits by itself ends its shell, and a signal after that is not sent:
    /// the ID on file may be another process's by then (here, a live stand-in's).
    #[tokio::test]
    async fn a_program_that_exits_ends_its_shell_and_is_signalled_no_more() {
        let dir = Scratch::new();
        let mut watched = Watched::spawn("true", dir.0.join("pid"), |c| c).unwrap();
        watched.wait();
        assert!(watched.pid().is_some(), "the ID stays on file");
        let mut other = Command::new("sleep").arg("60").spawn().unwrap();
        std::fs::write(watched.pidfile(), other.id().to_string()).unwrap();
        watched.signal("-KILL");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            matches!(other.try_wait(), Ok(None)),
            "the process now named in the file is left alone"
        );
        other.kill().unwrap();
        other.wait().unwrap();
    }

    /// The action runs when the value is dropped (as when this process exits), not before.
    #[tokio::test]
    async fn an_exit_action_runs_when_its_pipe_closes() {
        let dir = Scratch::new();
        let marker = dir.0.join("marker");
        let guard = on_exit(r#"echo done > "$1""#, &[marker.as_os_str()]).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!marker.exists(), "not before the pipe closes");
        drop(guard);
        until("the action ran", || marker.exists()).await;
    }
}

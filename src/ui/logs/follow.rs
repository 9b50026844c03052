//! `logs -f` and attached `up`: print what is there, then follow the files.
//!
//! The directories of the logs are watched with inotify (through `notify`); the
//! loop sleeps in a blocking receive until a file changes or a [`FollowHandle`]
//! speaks, so an idle follow costs nothing. Each wake-up reads whatever the
//! changed logs gained ([`LogFollower`] continues across rotations).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::event::EventKind;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use rcompose_runtime::logs::{LogFollower, ReadOptions};

use super::merge::{print_merged, SnapshotSource};
use super::printer::{LineJoiner, Printer};
use super::{open_snapshot, LogSource, LogsError, LogsOptions};

/// How long after `--until` the follow still waits for records stamped before it:
/// the writer stamps a record when it reads the output, a moment before writing it.
const UNTIL_GRACE: Duration = Duration::from_millis(250);

enum Message {
    Changed(notify::Result<notify::Event>),
    Add(LogSource),
    Status { name: String, message: String },
    Stop,
}

/// Controls a running [`LogFollow`] from any thread. Clones share one follow;
/// when the last clone is dropped the follow stops, as if told to.
#[derive(Clone)]
pub struct FollowHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    sender: Sender<Message>,
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        let _ = self.sender.send(Message::Stop);
    }
}

impl FollowHandle {
    /// Prints and follows one more log (a replica started while following). Its
    /// existing lines are printed first, with the same `tail`/`since`/`until`; a
    /// file that does not exist yet is picked up when it appears. Adding a log
    /// already followed does nothing; one that cannot be read or watched is
    /// reported to `on_problem`. Returns false if the follow has ended.
    pub fn add_source(&self, source: LogSource) -> bool {
        self.inner.sender.send(Message::Add(source)).is_ok()
    }

    /// Prints `name message` in the name's colour (`web-1 exited with code 0`)
    /// after every line already written to the logs.
    pub fn status(&self, name: impl Into<String>, message: impl Into<String>) -> bool {
        let status = Message::Status {
            name: name.into(),
            message: message.into(),
        };
        self.inner.sender.send(status).is_ok()
    }

    /// Ends the follow once it has printed everything written so far.
    pub fn stop(&self) {
        let _ = self.inner.sender.send(Message::Stop);
    }
}

impl std::fmt::Debug for FollowHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FollowHandle").finish_non_exhaustive()
    }
}

/// What a follow did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowSummary {
    /// Log lines printed.
    pub lines: u64,
    /// Times the loop woke up (file changes, handle messages): it never polls.
    pub wakeups: u64,
}

/// One followed log.
enum Tail {
    /// The file does not exist yet; its directory is watched.
    Waiting,
    Reading(LogFollower),
    /// Past `until`: nothing more will be printed.
    Done,
}

struct Followed {
    who: usize,
    name: String,
    path: PathBuf,
    tail: Tail,
    joiner: LineJoiner,
}

impl Followed {
    /// Whether a change to `changed` (a file in a watched directory) may concern
    /// this log: its current file or one of its rotated files.
    fn is_touched_by(&self, changed: &Path) -> bool {
        if changed == self.path {
            return true;
        }
        let (Some(file), Some(ours)) = (changed.file_name(), self.path.file_name()) else {
            return false;
        };
        changed.parent() == self.path.parent()
            && file
                .to_string_lossy()
                .strip_prefix(&*ours.to_string_lossy())
                .is_some_and(|rest| rest.starts_with('.'))
    }
}

/// Follows the logs of several containers: see the module documentation.
pub struct LogFollow<W: Write> {
    printer: Printer<W>,
    read: ReadOptions,
    followed: Vec<Followed>,
    pending: Vec<LogSource>,
    watcher: RecommendedWatcher,
    watched_dirs: HashSet<PathBuf>,
    messages: Receiver<Message>,
    on_problem: Box<dyn FnMut(LogsError) + Send>,
    wakeups: u64,
}

impl<W: Write> LogFollow<W> {
    /// Prepares to follow `sources`; nothing is read before [`LogFollow::run`].
    /// Problems with single records (and watcher hiccups) go to `on_problem`.
    pub fn new(
        sources: Vec<LogSource>,
        options: &LogsOptions,
        out: W,
        on_problem: impl FnMut(LogsError) + Send + 'static,
    ) -> Result<(Self, FollowHandle), LogsError> {
        let (sender, messages) = mpsc::channel();
        let from_watcher = sender.clone();
        let watcher = notify::recommended_watcher(move |event| {
            let _ = from_watcher.send(Message::Changed(event));
        })
        .map_err(LogsError::Watcher)?;
        let follow = LogFollow {
            printer: Printer::new(out, options.style),
            read: options.read,
            followed: Vec::new(),
            pending: sources,
            watcher,
            watched_dirs: HashSet::new(),
            messages,
            on_problem: Box::new(on_problem),
            wakeups: 0,
        };
        let handle = FollowHandle {
            inner: Arc::new(HandleInner { sender }),
        };
        Ok((follow, handle))
    }

    /// Prints the current logs merged by time, then follows them until the handle
    /// says stop (or every handle is gone), or `until` has passed.
    pub fn run(mut self) -> Result<FollowSummary, LogsError> {
        let until_passed = self
            .read
            .until
            .is_some_and(|until| until <= SystemTime::now());
        let deadline = self.deadline();
        self.print_initial_logs(until_passed)?;
        loop {
            let first = match deadline {
                None => self.messages.recv().ok(),
                // Past the deadline, or no sender left: either way the follow is over.
                Some(deadline) => {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    self.messages.recv_timeout(wait).ok()
                }
            };
            let Some(first) = first else {
                return self.finish();
            };
            self.wakeups += 1;
            // Handle everything already queued in one go: a busy log sends an
            // event per write.
            let batch: Vec<Message> = std::iter::once(first)
                .chain(self.messages.try_iter())
                .collect();
            if self.handle_batch(batch)? {
                return self.finish();
            }
            self.printer.flush()?;
        }
    }

    /// When following ends because of `until`: nothing newer can be written after
    /// it. `None` for no `until` (or one too far ahead to matter).
    fn deadline(&self) -> Option<Instant> {
        let until = self.read.until?;
        match until.duration_since(SystemTime::now()) {
            Ok(left) => Instant::now().checked_add(left + UNTIL_GRACE),
            Err(_) => Some(Instant::now()),
        }
    }

    fn print_initial_logs(&mut self, until_passed: bool) -> Result<(), LogsError> {
        let sources = std::mem::take(&mut self.pending);
        // Watching starts before the snapshot, so no write falls between the two.
        let watched: Vec<bool> = sources
            .iter()
            .map(|source| !until_passed && self.try_watch(source))
            .collect();
        let mut snapshot = open_snapshot(&sources, &self.read, &mut self.printer)?;
        print_merged(
            &mut snapshot,
            &mut self.printer,
            until_passed,
            &mut self.on_problem,
        )?;
        for ((source, opened), watched) in sources.into_iter().zip(snapshot).zip(watched) {
            let followed = self.continue_after(source.path, opened, watched);
            self.followed.push(followed);
        }
        self.printer.flush()
    }

    /// Watches the directory of `source`; a failure is reported and only that log
    /// is not followed.
    fn try_watch(&mut self, source: &LogSource) -> bool {
        match self.watch_directory_of(source) {
            Ok(()) => true,
            Err(error) => {
                (self.on_problem)(error);
                false
            }
        }
    }

    fn watch_directory_of(&mut self, source: &LogSource) -> Result<(), LogsError> {
        let dir = source
            .path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        if self.watched_dirs.contains(&dir) {
            return Ok(());
        }
        self.watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|source_error| LogsError::Watch {
                name: source.display_name.clone(),
                dir: dir.clone(),
                source: source_error,
            })?;
        self.watched_dirs.insert(dir);
        Ok(())
    }

    /// Turns a printed snapshot into a followed log that goes on right after it.
    fn continue_after(&mut self, path: PathBuf, opened: SnapshotSource, watched: bool) -> Followed {
        let tail = match &opened.reader {
            _ if !watched => Tail::Done,
            None => Tail::Waiting,
            Some(reader) => match reader.follower() {
                Ok(follower) => Tail::Reading(follower),
                Err(source) => {
                    (self.on_problem)(LogsError::Read {
                        name: opened.name.clone(),
                        source,
                    });
                    Tail::Done
                }
            },
        };
        Followed {
            who: opened.who,
            name: opened.name,
            path,
            tail,
            joiner: opened.joiner,
        }
    }

    /// Returns true when the follow should end.
    fn handle_batch(&mut self, batch: Vec<Message>) -> Result<bool, LogsError> {
        let mut changed = vec![false; self.followed.len()];
        for message in batch {
            match message {
                Message::Changed(event) => self.mark_changed(event, &mut changed),
                Message::Add(source) => {
                    self.read_changed(&mut changed)?;
                    self.add(source)?;
                    changed.push(false);
                }
                Message::Status { name, message } => {
                    // The container may have written its last lines a moment ago,
                    // before inotify told us: read everything first.
                    changed.fill(true);
                    self.read_changed(&mut changed)?;
                    self.printer.status(&name, &message)?;
                }
                Message::Stop => return Ok(true),
            }
        }
        self.read_changed(&mut changed)?;
        Ok(false)
    }

    fn mark_changed(&mut self, event: notify::Result<notify::Event>, changed: &mut [bool]) {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                (self.on_problem)(LogsError::Watcher(error));
                changed.fill(true);
                return;
            }
        };
        // Opening a file (our own reads included) adds nothing to it.
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        if event.need_rescan() || event.paths.is_empty() {
            changed.fill(true);
            return;
        }
        for (followed, flag) in self.followed.iter().zip(changed.iter_mut()) {
            if event.paths.iter().any(|path| followed.is_touched_by(path)) {
                *flag = true;
            }
        }
    }

    /// Starts printing one more log. A log already followed is not added twice (a
    /// restarted container writes on in the same file); a log that cannot be read
    /// is reported and skipped, leaving the others running.
    fn add(&mut self, source: LogSource) -> Result<(), LogsError> {
        if self
            .followed
            .iter()
            .any(|followed| followed.path == source.path)
        {
            return Ok(());
        }
        let watched = self.try_watch(&source);
        let opened = open_snapshot(std::slice::from_ref(&source), &self.read, &mut self.printer);
        let mut snapshot = match opened {
            Ok(snapshot) => snapshot,
            Err(error) => {
                (self.on_problem)(error);
                return Ok(());
            }
        };
        print_merged(
            &mut snapshot,
            &mut self.printer,
            false,
            &mut self.on_problem,
        )?;
        for opened in snapshot {
            let followed = self.continue_after(source.path.clone(), opened, watched);
            self.followed.push(followed);
        }
        Ok(())
    }

    /// Prints what the logs marked in `changed` gained, and clears the marks.
    fn read_changed(&mut self, changed: &mut [bool]) -> Result<(), LogsError> {
        for index in 0..self.followed.len() {
            if changed.get(index).copied().unwrap_or(false) {
                self.read_new(index)?;
            }
        }
        changed.fill(false);
        Ok(())
    }

    fn read_new(&mut self, index: usize) -> Result<(), LogsError> {
        let Some(followed) = self.followed.get_mut(index) else {
            return Ok(());
        };
        if matches!(followed.tail, Tail::Waiting) {
            return self.start_waiting(index);
        }
        let Tail::Reading(follower) = &mut followed.tail else {
            return Ok(());
        };
        for item in follower.by_ref() {
            match item {
                Ok(record) => {
                    if let Some(line) = followed.joiner.push(record) {
                        self.printer.print(followed.who, &line)?;
                    }
                }
                Err(source) => (self.on_problem)(LogsError::Read {
                    name: followed.name.clone(),
                    source,
                }),
            }
        }
        if follower.is_finished() {
            for line in followed.joiner.take_unfinished() {
                self.printer.print(followed.who, &line)?;
            }
            followed.tail = Tail::Done;
        }
        Ok(())
    }

    /// A log file that did not exist: print it from its start if it does now.
    fn start_waiting(&mut self, index: usize) -> Result<(), LogsError> {
        let Some(followed) = self.followed.get(index) else {
            return Ok(());
        };
        let mut opened =
            SnapshotSource::open(followed.who, &followed.name, &followed.path, &self.read)?;
        if opened.reader.is_none() {
            return Ok(());
        }
        print_merged(
            std::slice::from_mut(&mut opened),
            &mut self.printer,
            false,
            &mut self.on_problem,
        )?;
        let path = followed.path.clone();
        let replacement = self.continue_after(path, opened, true);
        if let Some(slot) = self.followed.get_mut(index) {
            *slot = replacement;
        }
        Ok(())
    }

    /// Reads what was written before the end, prints lines left unterminated, and
    /// flushes.
    fn finish(mut self) -> Result<FollowSummary, LogsError> {
        let mut all = vec![true; self.followed.len()];
        self.read_changed(&mut all)?;
        for followed in &mut self.followed {
            for line in followed.joiner.take_unfinished() {
                self.printer.print(followed.who, &line)?;
            }
        }
        self.printer.flush()?;
        Ok(FollowSummary {
            lines: self.printer.lines(),
            wakeups: self.wakeups,
        })
    }
}

impl<W: Write> std::fmt::Debug for LogFollow<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFollow")
            .field("followed", &self.followed.len())
            .field("watched_dirs", &self.watched_dirs)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::logs::LogStyle;
    use rcompose_runtime::logs::{LogOptions, LogWriter, Stream, PARTIAL_LINE_SIZE};
    use std::sync::mpsc::Receiver;
    use std::thread::JoinHandle;

    /// Output that hands every write to the test thread.
    struct Capture(Sender<Vec<u8>>);

    impl Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(bytes.to_vec());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What the follow printed, read as it arrives.
    struct Output {
        chunks: Receiver<Vec<u8>>,
        text: String,
    }

    impl Output {
        /// Waits (blocking, no polling) until the output contains `needle`.
        fn wait_for(&mut self, needle: &str) {
            let give_up = Instant::now() + Duration::from_secs(10);
            while !self.text.contains(needle) {
                let left = give_up.saturating_duration_since(Instant::now());
                match self.chunks.recv_timeout(left) {
                    Ok(chunk) => self.text.push_str(&String::from_utf8(chunk).unwrap()),
                    Err(_) => panic!("{needle:?} never printed; output so far:\n{}", self.text),
                }
            }
        }

        fn rest(mut self) -> String {
            self.text.extend(
                self.chunks
                    .try_iter()
                    .map(|chunk| String::from_utf8(chunk).unwrap()),
            );
            self.text
        }
    }

    type Running = JoinHandle<Result<FollowSummary, LogsError>>;

    fn start(sources: Vec<LogSource>, read: ReadOptions) -> (FollowHandle, Output, Running) {
        start_reporting(sources, read, |e| panic!("{e}"))
    }

    fn start_reporting(
        sources: Vec<LogSource>,
        read: ReadOptions,
        on_problem: impl FnMut(LogsError) + Send + 'static,
    ) -> (FollowHandle, Output, Running) {
        let (sender, chunks) = mpsc::channel();
        let options = LogsOptions {
            style: LogStyle::default(),
            read,
        };
        let (follow, handle) =
            LogFollow::new(sources, &options, Capture(sender), on_problem).unwrap();
        let running = std::thread::spawn(move || follow.run());
        let output = Output {
            chunks,
            text: String::new(),
        };
        (handle, output, running)
    }

    fn now_writing(writer: &mut LogWriter, stream: Stream, text: &str) {
        writer
            .write(stream, text.as_bytes(), SystemTime::now())
            .unwrap();
    }

    #[test]
    fn follows_appended_lines_rotations_and_sources_added_later() {
        let dir = tempfile::tempdir().unwrap();
        let web_path = dir.path().join("web-json.log");
        let rotating = LogOptions {
            max_size: Some(400),
            max_file: 5,
            compress: false,
        };
        let mut web = LogWriter::open(&web_path, rotating).unwrap();
        now_writing(&mut web, Stream::Stdout, "before start\n");
        let (handle, mut output, running) = start(
            vec![LogSource::new("web-1", &web_path)],
            ReadOptions::default(),
        );
        output.wait_for("web-1  | before start\n");

        // Only inotify can wake the follow up for these.
        now_writing(&mut web, Stream::Stdout, "appended\n");
        output.wait_for("web-1  | appended\n");
        for n in 0..12 {
            now_writing(&mut web, Stream::Stderr, &format!("rotating {n}\n"));
        }
        assert!(web_path.with_extension("log.1").exists(), "the log rotated");
        output.wait_for("web-1  | rotating 11\n");

        // A new replica whose log does not exist yet: its prefix is longer.
        let worker_path = dir.path().join("worker-json.log");
        assert!(handle.add_source(LogSource::new("worker-10", &worker_path)));
        let mut worker = LogWriter::open(&worker_path, LogOptions::default()).unwrap();
        now_writing(&mut worker, Stream::Stdout, "replica up\n");
        output.wait_for("worker-10  | replica up\n");
        now_writing(&mut web, Stream::Stdout, "wider prefix\n");
        output.wait_for("web-1      | wider prefix\n");

        now_writing(&mut worker, Stream::Stdout, "last words\n");
        assert!(handle.status("worker-10", "exited with code 0"));
        output.wait_for("worker-10 exited with code 0\n");
        handle.stop();
        let summary = running.join().unwrap().unwrap();
        let text = output.rest();
        let expected_order = [
            "before start",
            "appended",
            "rotating 0",
            "rotating 11",
            "replica up",
            "wider prefix",
            "last words",
            "worker-10 exited with code 0",
        ];
        let positions: Vec<usize> = expected_order
            .iter()
            .map(|needle| text.find(needle).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(summary.lines, 17, "{text}");
        assert_eq!(
            text.matches("rotating").count(),
            12,
            "nothing lost or repeated"
        );
    }

    #[test]
    fn an_idle_follow_sleeps_and_ends_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idle-json.log");
        let mut writer = LogWriter::open(&path, LogOptions::default()).unwrap();
        now_writing(&mut writer, Stream::Stdout, "hello\n");
        let (handle, mut output, running) = start(
            vec![LogSource::new("idle-1", &path)],
            ReadOptions::default(),
        );
        output.wait_for("idle-1  | hello\n");
        std::thread::sleep(Duration::from_millis(200));
        drop(handle);
        let summary = running.join().unwrap().unwrap();
        // A polling loop would have woken up thousands of times.
        assert!(summary.wakeups < 5, "{summary:?}");
        assert_eq!(summary.lines, 1);
    }

    #[test]
    fn a_long_line_split_across_snapshot_and_follow_is_printed_once_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big-json.log");
        let mut writer = LogWriter::open(&path, LogOptions::default()).unwrap();
        let head = "h".repeat(PARTIAL_LINE_SIZE);
        now_writing(&mut writer, Stream::Stdout, &head);
        let (handle, mut output, running) =
            start(vec![LogSource::new("big-1", &path)], ReadOptions::default());
        now_writing(&mut writer, Stream::Stdout, "tail\n");
        output.wait_for("tail\n");
        handle.stop();
        running.join().unwrap().unwrap();
        assert_eq!(output.rest(), format!("big-1  | {head}tail\n"));
    }

    #[test]
    fn until_in_the_past_prints_the_window_and_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old-json.log");
        let mut writer = LogWriter::open(&path, LogOptions::default()).unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        writer.write(Stream::Stdout, b"old\n", long_ago).unwrap();
        now_writing(&mut writer, Stream::Stdout, "new\n");
        let read = ReadOptions {
            until: Some(long_ago + Duration::from_secs(1)),
            ..ReadOptions::default()
        };
        let started = Instant::now();
        let (_handle, output, running) = start(vec![LogSource::new("old-1", &path)], read);
        let summary = running.join().unwrap().unwrap();
        assert!(
            started.elapsed() < UNTIL_GRACE,
            "no waiting for a past until"
        );
        assert_eq!(summary.lines, 1);
        assert_eq!(output.rest(), "old-1  | old\n");
    }

    #[test]
    fn a_log_added_twice_prints_once_and_a_bad_one_leaves_the_rest_running() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web-json.log");
        let mut writer = LogWriter::open(&path, LogOptions::default()).unwrap();
        now_writing(&mut writer, Stream::Stdout, "first\n");
        let (problems, reported) = mpsc::channel();
        let (handle, mut output, running) = start_reporting(
            vec![LogSource::new("web-1", &path)],
            ReadOptions::default(),
            move |e| {
                let _ = problems.send(e.to_string());
            },
        );
        output.wait_for("web-1  | first\n");
        // A restarted container is announced again: same file, nothing repeated.
        assert!(handle.add_source(LogSource::new("web-1", &path)));
        let gone = dir.path().join("removed").join("db-json.log");
        assert!(handle.add_source(LogSource::new("db-1", &gone)));
        let problem = reported.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            problem.starts_with("cannot watch") && problem.contains("db-1"),
            "{problem}"
        );
        now_writing(&mut writer, Stream::Stdout, "second\n");
        output.wait_for("web-1  | second\n");
        handle.stop();
        assert_eq!(running.join().unwrap().unwrap().lines, 2);
        assert_eq!(output.rest(), "web-1  | first\nweb-1  | second\n");
    }

    #[test]
    fn follow_ends_by_itself_once_until_has_passed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soon-json.log");
        let mut writer = LogWriter::open(&path, LogOptions::default()).unwrap();
        now_writing(&mut writer, Stream::Stdout, "before\n");
        let until = SystemTime::now() + Duration::from_millis(300);
        let read = ReadOptions {
            until: Some(until),
            ..ReadOptions::default()
        };
        let (handle, mut output, running) = start(vec![LogSource::new("soon-1", &path)], read);
        now_writing(&mut writer, Stream::Stdout, "in time\n");
        output.wait_for("soon-1  | in time\n");
        while SystemTime::now() <= until {
            std::thread::sleep(Duration::from_millis(50));
        }
        now_writing(&mut writer, Stream::Stdout, "too late\n");
        // No stop: the handle stays alive, the deadline ends the follow.
        let summary = running.join().unwrap().unwrap();
        drop(handle);
        assert_eq!(summary.lines, 2);
        assert_eq!(output.rest(), "soon-1  | before\nsoon-1  | in time\n");
    }
}

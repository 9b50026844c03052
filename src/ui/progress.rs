//! Progress of `up`, `down`, `create`, `start`, `stop` and `restart`, as Compose v2 shows
//! it, fed by the orchestrator's [`ProgressEvent`]s:
//!
//! - `plain`: one line per event (` Container demo-web-1  Started`);
//! - `json`: one JSON object per event, with the fields of Compose's `--progress json`
//!   (`id`, `status` = Working/Done/Warning/Error, `text` = what happened);
//! - `tty`: one line per resource, redrawn in place, with a spinner while it is being
//!   worked on and the time it took;
//! - `quiet`: nothing.
//!
//! Everything goes to stderr: stdout is for container logs and command results.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use console::{style, Term};

use crate::orchestrator::converge::ProgressEvent;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Quiet,
    Plain,
    Json,
    Tty,
}

impl ProgressMode {
    /// `--progress auto` is `tty` on a terminal and `plain` elsewhere; `tty` asked for
    /// on something that is not a terminal falls back to `plain`, as redrawing lines
    /// in a file or a pipe would only garble it.
    pub fn choose(requested: Option<ProgressMode>, stderr_is_terminal: bool) -> ProgressMode {
        match requested {
            Some(ProgressMode::Tty) | None if stderr_is_terminal => ProgressMode::Tty,
            Some(ProgressMode::Tty) | None => ProgressMode::Plain,
            Some(mode) => mode,
        }
    }
}

/// Compose's classification of an event (its `status` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    Working,
    Done,
    Warning,
    Error,
}

impl EventStatus {
    /// From the event's text: the `-ing` words are work in progress ("Recreate" too,
    /// which Compose prints while a container is being replaced); failures are errors.
    pub fn of(text: &str) -> EventStatus {
        match text {
            "Error" | "Unhealthy" => EventStatus::Error,
            // `down --rmi` keeps an image a container still uses.
            "Resource is still in use" => EventStatus::Warning,
            "Recreate" => EventStatus::Working,
            // A container left as it was: nothing is going on.
            "Running" => EventStatus::Done,
            _ if text.ends_with("ing") => EventStatus::Working,
            _ => EventStatus::Done,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Working => "Working",
            EventStatus::Done => "Done",
            EventStatus::Warning => "Warning",
            EventStatus::Error => "Error",
        }
    }
}

/// `Container demo-web-1`: the resource an event is about, Compose's event `id`.
fn resource_id(event: &ProgressEvent) -> String {
    format!("{} {}", event.kind.as_str(), event.name)
}

/// One event as a line of Compose's `--progress json`.
pub fn json_line(event: &ProgressEvent) -> String {
    let status = EventStatus::of(&event.status);
    serde_json::json!({
        "id": resource_id(event),
        "status": status.as_str(),
        "text": event.status,
    })
    .to_string()
}

/// One resource's line in the tty display.
#[derive(Debug, Clone)]
struct Row {
    id: String,
    text: String,
    status: EventStatus,
    started: Instant,
    ended: Option<Instant>,
}

/// The tty display's state: its rows in order of first appearance.
#[derive(Debug, Default)]
struct Board {
    rows: Vec<Row>,
    index: HashMap<String, usize>,
    /// Lines drawn last time, to be cleared before the next drawing.
    drawn: usize,
}

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

impl Board {
    fn update(&mut self, event: &ProgressEvent, now: Instant) {
        let id = resource_id(event);
        let status = EventStatus::of(&event.status);
        match self.index.get(&id) {
            Some(&at) => {
                let row = &mut self.rows[at];
                // A resource worked on again (a container recreated, then started)
                // keeps its line; the clock restarts when new work begins after an end.
                if status == EventStatus::Working && row.ended.is_some() {
                    row.started = now;
                }
                row.text.clone_from(&event.status);
                row.status = status;
                row.ended = (status != EventStatus::Working).then_some(now);
            }
            None => {
                self.index.insert(id.clone(), self.rows.len());
                self.rows.push(Row {
                    id,
                    text: event.status.clone(),
                    status,
                    started: now,
                    ended: (status != EventStatus::Working).then_some(now),
                });
            }
        }
    }

    /// The lines to draw: a header `[+] Running done/total`, then one per resource,
    /// cut to `width` columns.
    fn render(&self, now: Instant, tick: usize, width: usize) -> Vec<String> {
        let done = self
            .rows
            .iter()
            .filter(|r| r.status != EventStatus::Working)
            .count();
        let mut lines = vec![format!(
            "[+] Running {done}/{total}",
            total = self.rows.len()
        )];
        let id_width = self.rows.iter().map(|r| r.id.chars().count()).max();
        let text_width = self.rows.iter().map(|r| r.text.chars().count()).max();
        for row in &self.rows {
            let icon = match row.status {
                EventStatus::Working => style(SPINNER[tick % SPINNER.len()])
                    .for_stderr()
                    .to_string(),
                EventStatus::Done => style("✔").for_stderr().green().to_string(),
                EventStatus::Warning => style("!").for_stderr().yellow().to_string(),
                EventStatus::Error => style("✘").for_stderr().red().to_string(),
            };
            let elapsed = row.ended.unwrap_or(now).duration_since(row.started);
            let text = match row.status {
                EventStatus::Error => style(&row.text).for_stderr().red().to_string(),
                _ => row.text.clone(),
            };
            let line = format!(
                " {icon} {id:<iw$} {text}{pad} {secs:>5.1}s",
                id = row.id,
                iw = id_width.unwrap_or(0),
                pad = " ".repeat(
                    text_width
                        .unwrap_or(0)
                        .saturating_sub(row.text.chars().count())
                ),
                secs = elapsed.as_secs_f64(),
            );
            lines.push(console::truncate_str(&line, width, "").into_owned());
        }
        lines
    }
}

/// Where progress events go for the length of one command.
pub struct ProgressDisplay {
    mode: ProgressMode,
    shared: Arc<Shared>,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    board: Mutex<Board>,
    term: Term,
    finished: AtomicBool,
    started: Instant,
}

/// How often the tty display redraws, for the spinner and the clocks.
const TICK: Duration = Duration::from_millis(100);

impl ProgressDisplay {
    pub fn new(mode: ProgressMode) -> ProgressDisplay {
        let shared = Arc::new(Shared {
            board: Mutex::new(Board::default()),
            term: Term::stderr(),
            finished: AtomicBool::new(false),
            started: Instant::now(),
        });
        let ticker = (mode == ProgressMode::Tty).then(|| {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                while !shared.finished.load(Ordering::SeqCst) {
                    std::thread::sleep(TICK);
                    shared.draw();
                }
            })
        });
        ProgressDisplay {
            mode,
            shared,
            ticker: Mutex::new(ticker),
        }
    }

    pub fn mode(&self) -> ProgressMode {
        self.mode
    }

    /// Shows one event.
    pub fn event(&self, event: ProgressEvent) {
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Plain => eprintln!("{event}"),
            ProgressMode::Json => eprintln!("{}", json_line(&event)),
            ProgressMode::Tty => {
                if self.shared.finished.load(Ordering::SeqCst) {
                    // After the display ended (attached `up` following logs): as plain.
                    eprintln!("{event}");
                    return;
                }
                self.shared.lock().update(&event, Instant::now());
                self.shared.draw();
            }
        }
    }

    /// Prints a line of its own (a warning) to stderr; the tty display moves below it
    /// instead of drawing over it.
    pub fn message(&self, line: &str) {
        if self.mode != ProgressMode::Tty || self.shared.finished.load(Ordering::SeqCst) {
            eprintln!("{line}");
            return;
        }
        let mut board = self.shared.lock();
        let _ = self.shared.term.clear_last_lines(board.drawn);
        let _ = self.shared.term.write_line(line);
        board.drawn = 0;
        drop(board);
        self.shared.draw();
    }

    /// Ends the tty display: the spinner stops and the last state stays on screen.
    /// Later events print as plain lines. Idempotent.
    pub fn finish(&self) {
        if self.shared.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        let ticker = self.ticker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(ticker) = ticker {
            let _ = ticker.join();
        }
        if self.mode == ProgressMode::Tty {
            self.shared.draw_now();
        }
    }
}

impl Drop for ProgressDisplay {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn draw(&self) {
        if !self.finished.load(Ordering::SeqCst) {
            self.draw_now();
        }
    }

    /// Replaces the lines drawn last time by the current state.
    fn draw_now(&self) {
        let mut board = self.lock();
        if board.rows.is_empty() {
            return;
        }
        let tick = (self.started.elapsed().as_millis() / TICK.as_millis()) as usize;
        let width = usize::from(self.term.size().1).max(20);
        let lines = board.render(Instant::now(), tick, width);
        // A terminal gone away is no reason to fail the command: drawing is best effort.
        let _ = self.term.clear_last_lines(board.drawn);
        let mut out = lines.join("\n");
        out.push('\n');
        let _ = self.term.write_str(&out);
        let _ = self.term.flush();
        board.drawn = lines.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::converge::ResourceKind;

    fn event(kind: ResourceKind, name: &str, status: &str) -> ProgressEvent {
        ProgressEvent {
            kind,
            name: name.into(),
            status: status.into(),
        }
    }

    #[test]
    fn auto_is_tty_only_on_a_terminal() {
        assert_eq!(ProgressMode::choose(None, true), ProgressMode::Tty);
        assert_eq!(ProgressMode::choose(None, false), ProgressMode::Plain);
        assert_eq!(
            ProgressMode::choose(Some(ProgressMode::Tty), false),
            ProgressMode::Plain
        );
        assert_eq!(
            ProgressMode::choose(Some(ProgressMode::Json), true),
            ProgressMode::Json
        );
        assert_eq!(
            ProgressMode::choose(Some(ProgressMode::Quiet), true),
            ProgressMode::Quiet
        );
    }

    #[test]
    fn statuses_are_classified_as_compose_does() {
        for working in [
            "Creating", "Starting", "Stopping", "Removing", "Recreate", "Waiting",
        ] {
            assert_eq!(EventStatus::of(working), EventStatus::Working, "{working}");
        }
        for done in [
            "Created", "Started", "Running", "Healthy", "Exited", "Removed",
        ] {
            assert_eq!(EventStatus::of(done), EventStatus::Done, "{done}");
        }
        assert_eq!(EventStatus::of("Unhealthy"), EventStatus::Error);
        assert_eq!(
            EventStatus::of("Resource is still in use"),
            EventStatus::Warning
        );
    }

    #[test]
    fn json_lines_carry_id_status_and_text() {
        let line = json_line(&event(ResourceKind::Container, "demo-web-1", "Starting"));
        assert_eq!(
            line,
            r#"{"id":"Container demo-web-1","status":"Working","text":"Starting"}"#
        );
        let value: serde_json::Value = serde_json::from_str(&json_line(&event(
            ResourceKind::Network,
            "demo_default",
            "Created",
        )))
        .unwrap();
        assert_eq!(value["id"], "Network demo_default");
        assert_eq!(value["status"], "Done");
        assert_eq!(value["text"], "Created");
        let image = json_line(&event(ResourceKind::Volume, "demo_data", "Removed"));
        assert!(image.contains(r#""id":"Volume demo_data""#), "{image}");
    }

    #[test]
    fn the_tty_board_keeps_one_line_per_resource_with_its_time() {
        console::set_colors_enabled_stderr(false);
        let t0 = Instant::now();
        let mut board = Board::default();
        board.update(&event(ResourceKind::Network, "demo_default", "Created"), t0);
        board.update(
            &event(ResourceKind::Container, "demo-web-1", "Creating"),
            t0,
        );
        let running = board.render(t0 + Duration::from_millis(300), 0, 200);
        assert_eq!(running[0], "[+] Running 1/2");
        assert_eq!(running.len(), 3);
        assert!(
            running[1].starts_with(" ✔ Network demo_default"),
            "{running:?}"
        );
        assert!(
            running[2].starts_with(" ⠋ Container demo-web-1"),
            "{running:?}"
        );
        assert!(running[2].ends_with("0.3s"), "{running:?}");

        board.update(
            &event(ResourceKind::Container, "demo-web-1", "Started"),
            t0 + Duration::from_millis(1200),
        );
        let done = board.render(t0 + Duration::from_secs(5), 3, 200);
        assert_eq!(done[0], "[+] Running 2/2");
        assert_eq!(done.len(), 3, "the container kept its line: {done:?}");
        assert!(done[2].contains("Started"), "{done:?}");
        // The clock stopped when the work was done.
        assert!(done[2].ends_with("1.2s"), "{done:?}");
        // Columns line up.
        assert_eq!(done[1].find("Created"), done[2].find("Started"));
    }

    #[test]
    fn tty_lines_are_cut_to_the_terminal_width() {
        console::set_colors_enabled_stderr(false);
        let t0 = Instant::now();
        let mut board = Board::default();
        board.update(
            &event(
                ResourceKind::Container,
                "a-very-long-project-name-web-1",
                "Started",
            ),
            t0,
        );
        let lines = board.render(t0, 0, 20);
        assert!(lines[1].chars().count() <= 20, "{lines:?}");
    }
}

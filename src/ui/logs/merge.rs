//! The logs as they are now: every source read once, lines merged by time.
//!
//! Compose prints each container's lines as its goroutine reads them, so the
//! interleaving of two containers depends on scheduling. Merging by record time
//! gives the order in which the lines were written, the same on every run. Each
//! container's own order is kept as is (even across a clock step), since only the
//! heads of the sources are compared.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::time::SystemTime;

use rcompose_runtime::logs::{LogError, LogReader, ReadOptions};

use super::printer::{Line, LineJoiner, Printer};
use super::LogsError;

/// One container's log being read from its start (or its tail).
#[derive(Debug)]
pub(super) struct SnapshotSource {
    pub(super) who: usize,
    pub(super) name: String,
    /// `None` when the log file does not exist (yet): the container never ran.
    pub(super) reader: Option<LogReader>,
    pub(super) joiner: LineJoiner,
    ready: VecDeque<Line>,
    exhausted: bool,
}

impl SnapshotSource {
    pub(super) fn open(
        who: usize,
        name: &str,
        path: &Path,
        read: &ReadOptions,
    ) -> Result<Self, LogsError> {
        let reader = match LogReader::open(path, read) {
            Ok(reader) => Some(reader),
            Err(LogError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => None,
            Err(source) => {
                return Err(LogsError::Read {
                    name: name.to_string(),
                    source,
                })
            }
        };
        Ok(SnapshotSource {
            who,
            name: name.to_string(),
            reader,
            joiner: LineJoiner::default(),
            ready: VecDeque::new(),
            exhausted: false,
        })
    }

    /// The next complete line. At the end of the snapshot, lines still waiting for
    /// their end are given out too if `finish_lines` (nothing will follow them).
    fn next_line(
        &mut self,
        finish_lines: bool,
        on_problem: &mut dyn FnMut(LogsError),
    ) -> Option<Line> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Some(line);
            }
            if self.exhausted {
                return None;
            }
            match self.reader.as_mut().and_then(Iterator::next) {
                Some(Ok(record)) => {
                    if let Some(line) = self.joiner.push(record) {
                        return Some(line);
                    }
                }
                Some(Err(source)) => on_problem(LogsError::Read {
                    name: self.name.clone(),
                    source,
                }),
                None => {
                    self.exhausted = true;
                    if finish_lines {
                        self.ready.extend(self.joiner.take_unfinished());
                    }
                }
            }
        }
    }
}

/// Prints the lines of all `sources` in time order (ties: in the order of
/// `sources`). Unreadable records are reported to `on_problem` and skipped.
pub(super) fn print_merged<W: Write>(
    sources: &mut [SnapshotSource],
    printer: &mut Printer<W>,
    finish_lines: bool,
    on_problem: &mut dyn FnMut(LogsError),
) -> Result<(), LogsError> {
    let mut heads: Vec<Option<Line>> = Vec::with_capacity(sources.len());
    let mut order: BinaryHeap<Reverse<(SystemTime, usize)>> = BinaryHeap::new();
    for (index, source) in sources.iter_mut().enumerate() {
        let head = source.next_line(finish_lines, on_problem);
        if let Some(line) = &head {
            order.push(Reverse((line.time, index)));
        }
        heads.push(head);
    }
    while let Some(Reverse((_, index))) = order.pop() {
        let (Some(source), Some(slot)) = (sources.get_mut(index), heads.get_mut(index)) else {
            continue;
        };
        if let Some(line) = slot.take() {
            printer.print(source.who, &line)?;
        }
        *slot = source.next_line(finish_lines, on_problem);
        if let Some(line) = slot {
            order.push(Reverse((line.time, index)));
        }
    }
    Ok(())
}

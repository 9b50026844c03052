//! Healthchecks with the Docker Engine's semantics.
//!
//! [`HealthSpec::resolve`] turns a service's `healthcheck` (merged over the image's, as
//! the engine merges them) into what to run and when; a [`HealthMonitor`] keeps one
//! container's health: it says when the next probe is due and turns probe results into
//! `starting`, `healthy` or `unhealthy` by Docker's rules:
//! - a success makes the container healthy at once, and ends the start period;
//! - while still `starting` and inside `start_period`, failures do not count;
//! - otherwise `retries` consecutive failures make it unhealthy;
//! - probes run `start_interval` apart during the start period, `interval` apart after,
//!   measured from the end of one probe to the start of the next.
//!
//! The state ([`HealthState`]) serializes like `State.Health` of `docker inspect`, so `ps`
//! can read it from disk when the supervisor is gone. Running a probe is the
//! supervisor's business (an exec in the container), behind the [`Prober`] trait;
//! [`run_health_loop`] drives a monitor with it on tokio's clock.

use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::project::model::{self, HealthCheckConfig};

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_START_PERIOD: Duration = Duration::ZERO;
pub const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_RETRIES: u64 = 3;
/// Probe output beyond this many bytes is cut off (and "..." appended).
pub const MAX_OUTPUT_BYTES: usize = 4096;
/// How many probe results the health log keeps.
pub const MAX_LOG_ENTRIES: usize = 5;
/// The engine refuses non-zero durations shorter than this.
pub const MIN_DURATION: Duration = Duration::from_millis(1);
/// How long past its timeout a probe may take (starting an exec can be slow) before
/// the driver gives up on it.
pub const EXEC_START_GRACE: Duration = Duration::from_secs(30);
/// The shell `CMD-SHELL` runs in, unless the image sets another.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// A healthcheck that cannot be run as written; each message names the service and key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HealthError {
    #[error("services.{service}.healthcheck.test: {test:?} must start with \"CMD\", \"CMD-SHELL\" or \"NONE\": write [\"CMD\", ...] or give the command as a single string")]
    UnknownTestKind { service: String, test: Vec<String> },
    #[error("services.{service}.healthcheck.test: {kind} needs a command after it, e.g. [\"{kind}\", ...]")]
    MissingCommand { service: String, kind: String },
    #[error("services.{service}.healthcheck.{key}: {value} is {problem}: use at least 1ms, or leave it out for the default")]
    BadDuration {
        service: String,
        key: &'static str,
        value: String,
        problem: &'static str,
    },
}

/// What a probe runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthTest {
    /// `["CMD", program, args...]`: run directly.
    Exec(Vec<String>),
    /// `["CMD-SHELL", command]` or a plain string: run with the shell.
    Shell(Vec<String>),
}

impl HealthTest {
    /// The command line to exec in the container, `CMD-SHELL` going through `/bin/sh -c`.
    pub fn argv(&self) -> Vec<String> {
        self.argv_with_shell(&DEFAULT_SHELL.map(str::to_owned))
    }

    /// The command line, with `shell` (the image's `SHELL`) for `CMD-SHELL`.
    pub fn argv_with_shell(&self, shell: &[String]) -> Vec<String> {
        match self {
            HealthTest::Exec(argv) => argv.clone(),
            HealthTest::Shell(command) => shell.iter().chain(command).cloned().collect(),
        }
    }
}

/// A resolved healthcheck: the probe and its timing, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSpec {
    pub test: HealthTest,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: u64,
}

impl HealthSpec {
    /// The healthcheck of service `service`: its own `healthcheck` over the image's
    /// (each unset field falls back to the image, then to Docker's default). `None` when
    /// there is none to run: no test anywhere, `test: ["NONE"]` or `disable: true`.
    pub fn resolve(
        service: &str,
        own: Option<&HealthCheckConfig>,
        image: Option<&HealthCheckConfig>,
    ) -> Result<Option<HealthSpec>, HealthError> {
        if own.is_some_and(|h| h.disable) {
            return Ok(None);
        }
        let pick = |field: fn(&HealthCheckConfig) -> Option<model::Duration>| {
            own.and_then(field).or_else(|| image.and_then(field))
        };
        let test = own
            .map(|h| &h.test)
            .filter(|t| !t.is_empty())
            .or_else(|| image.map(|h| &h.test))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let Some(test) = parse_test(service, test)? else {
            return Ok(None);
        };
        let duration = |key, value, default| checked_duration(service, key, value, default);
        Ok(Some(HealthSpec {
            test,
            interval: duration("interval", pick(|h| h.interval), DEFAULT_INTERVAL)?,
            timeout: duration("timeout", pick(|h| h.timeout), DEFAULT_TIMEOUT)?,
            start_period: duration(
                "start_period",
                pick(|h| h.start_period),
                DEFAULT_START_PERIOD,
            )?,
            start_interval: duration(
                "start_interval",
                pick(|h| h.start_interval),
                DEFAULT_START_INTERVAL,
            )?,
            retries: own
                .and_then(|h| h.retries)
                .or_else(|| image.and_then(|h| h.retries))
                .filter(|r| *r > 0)
                .unwrap_or(DEFAULT_RETRIES),
        }))
    }
}

/// `None` for "no probe" (empty test or `NONE`).
fn parse_test(service: &str, test: &[String]) -> Result<Option<HealthTest>, HealthError> {
    let missing = |kind: &str| HealthError::MissingCommand {
        service: service.to_owned(),
        kind: kind.to_owned(),
    };
    match test {
        [] => Ok(None),
        [kind, ..] if kind == "NONE" => Ok(None),
        [kind, rest @ ..] if kind == "CMD" => match rest {
            [] => Err(missing(kind)),
            _ => Ok(Some(HealthTest::Exec(rest.to_vec()))),
        },
        [kind, rest @ ..] if kind == "CMD-SHELL" => {
            if rest.iter().all(|part| part.trim().is_empty()) {
                Err(missing(kind))
            } else {
                Ok(Some(HealthTest::Shell(rest.to_vec())))
            }
        }
        // The string form, when it reaches us unnormalized.
        [command] if !command.trim().is_empty() => {
            Ok(Some(HealthTest::Shell(vec![command.clone()])))
        }
        _ => Err(HealthError::UnknownTestKind {
            service: service.to_owned(),
            test: test.to_vec(),
        }),
    }
}

/// A configured duration, or `default` when unset or zero (as the engine reads zero).
fn checked_duration(
    service: &str,
    key: &'static str,
    value: Option<model::Duration>,
    default: Duration,
) -> Result<Duration, HealthError> {
    let Some(value) = value.filter(|v| !v.is_zero()) else {
        return Ok(default);
    };
    let problem = if value.nanos() < 0 {
        "negative"
    } else if value.as_std() < MIN_DURATION {
        "shorter than 1ms"
    } else {
        return Ok(value.as_std());
    };
    Err(HealthError::BadDuration {
        service: service.to_owned(),
        key,
        value: value.to_string(),
        problem,
    })
}

/// A container's health, as `docker ps` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        })
    }
}

/// How a probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The command exited with this code (0 is healthy; -1 when it could not run).
    Exited(i64),
    /// The command outlived the timeout and was killed.
    TimedOut,
}

/// One probe, as the supervisor ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub outcome: ProbeOutcome,
    /// What the command wrote to stdout and stderr.
    pub output: String,
    pub started: SystemTime,
    pub ended: SystemTime,
}

/// One entry of the health log (Docker's `HealthcheckResult`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthLogEntry {
    #[serde(with = "rfc3339")]
    pub start: SystemTime,
    #[serde(with = "rfc3339")]
    pub end: SystemTime,
    /// 0 healthy, anything else a failure; -1 for a timeout or a probe that did not run.
    pub exit_code: i64,
    pub output: String,
}

/// A container's health state, shaped like `State.Health` of `docker inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthState {
    pub status: HealthStatus,
    /// Consecutive failures that counted (outside the start period).
    pub failing_streak: u64,
    /// The last [`MAX_LOG_ENTRIES`] probes, oldest first.
    pub log: Vec<HealthLogEntry>,
}

impl HealthState {
    fn starting() -> Self {
        HealthState {
            status: HealthStatus::Starting,
            failing_streak: 0,
            log: Vec::new(),
        }
    }
}

/// Applies the healthcheck rules to one container's probe results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthMonitor {
    spec: HealthSpec,
    container_started: SystemTime,
    state: HealthState,
}

impl HealthMonitor {
    /// A monitor for a container that started at `container_started`: `starting`, the
    /// first probe one interval later.
    pub fn new(spec: HealthSpec, container_started: SystemTime) -> Self {
        Self::resume(spec, container_started, HealthState::starting())
    }

    /// A monitor that carries on from a saved state (a re-adopted container); the next
    /// probe is due one interval after the last logged one.
    pub fn resume(spec: HealthSpec, container_started: SystemTime, state: HealthState) -> Self {
        HealthMonitor {
            spec,
            container_started,
            state,
        }
    }

    /// The container was restarted: `starting` again with no failures, the log kept
    /// (as the engine does).
    pub fn container_restarted(&mut self, started: SystemTime) {
        self.container_started = started;
        self.state.status = HealthStatus::Starting;
        self.state.failing_streak = 0;
    }

    pub fn spec(&self) -> &HealthSpec {
        &self.spec
    }

    pub fn status(&self) -> HealthStatus {
        self.state.status
    }

    pub fn state(&self) -> &HealthState {
        &self.state
    }

    /// When the next probe should start; never before `now`.
    pub fn next_probe_at(&self, now: SystemTime) -> SystemTime {
        // Probes logged before a restart do not set the pace of the new run.
        let since = self
            .state
            .log
            .last()
            .map_or(self.container_started, |entry| entry.end)
            .max(self.container_started);
        let due = since + self.wait_after(since);
        due.max(now)
    }

    /// The pause after a probe that ended at `since` (or after the start).
    fn wait_after(&self, since: SystemTime) -> Duration {
        if self.state.status != HealthStatus::Starting {
            return self.spec.interval;
        }
        match self.start_period_left(since) {
            // Probe often while starting, and once more right as the period ends.
            Some(left) => self.spec.start_interval.min(left),
            None => self.spec.interval,
        }
    }

    /// What is left of the start period at `at`, if any.
    fn start_period_left(&self, at: SystemTime) -> Option<Duration> {
        let elapsed = at
            .duration_since(self.container_started)
            .unwrap_or_default();
        self.spec
            .start_period
            .checked_sub(elapsed)
            .filter(|left| !left.is_zero())
    }

    /// Records a probe and returns the status it leads to.
    pub fn record(&mut self, result: ProbeResult) -> HealthStatus {
        let entry = self.log_entry(result);
        if entry.exit_code == 0 {
            self.state.failing_streak = 0;
            self.state.status = HealthStatus::Healthy;
        } else if self.failure_counts(entry.start) {
            self.state.failing_streak += 1;
            if self.state.failing_streak >= self.spec.retries {
                self.state.status = HealthStatus::Unhealthy;
            }
        }
        self.push_log(entry);
        self.state.status
    }

    /// Failures of a container still starting, inside its start period, do not count.
    fn failure_counts(&self, probe_started: SystemTime) -> bool {
        self.state.status != HealthStatus::Starting
            || self.start_period_left(probe_started).is_none()
    }

    fn log_entry(&self, result: ProbeResult) -> HealthLogEntry {
        let output = truncate_output(result.output);
        let (exit_code, output) = match result.outcome {
            ProbeOutcome::Exited(code) => (code, output),
            ProbeOutcome::TimedOut => (-1, self.timeout_message(&output)),
        };
        HealthLogEntry {
            start: result.started,
            end: result.ended,
            exit_code,
            output,
        }
    }

    fn timeout_message(&self, output: &str) -> String {
        let timeout =
            model::Duration(i64::try_from(self.spec.timeout.as_nanos()).unwrap_or(i64::MAX));
        if output.is_empty() {
            format!("Health check exceeded timeout ({timeout})")
        } else {
            format!("Health check exceeded timeout ({timeout}): {output}")
        }
    }

    fn push_log(&mut self, entry: HealthLogEntry) {
        let log = &mut self.state.log;
        log.push(entry);
        let excess = log.len().saturating_sub(MAX_LOG_ENTRIES);
        log.drain(..excess);
    }
}

/// Keeps at most [`MAX_OUTPUT_BYTES`] (on a character boundary), marking a cut with "...".
fn truncate_output(mut output: String) -> String {
    if output.len() <= MAX_OUTPUT_BYTES {
        return output;
    }
    let mut end = MAX_OUTPUT_BYTES;
    while !output.is_char_boundary(end) {
        end -= 1;
    }
    output.truncate(end);
    output.push_str("...");
    output
}

/// RFC 3339 timestamps in UTC, as the engine writes them; times outside 1970..9999
/// are clamped rather than refused.
mod rfc3339 {
    use std::fmt::Write;

    use super::*;

    /// 9999-12-31T23:59:59Z, the last second `humantime` can print.
    const LAST: Duration = Duration::from_secs(253_402_300_799);

    pub fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let clamped = (*time).clamp(UNIX_EPOCH, UNIX_EPOCH + LAST);
        let mut text = String::new();
        write!(text, "{}", humantime::format_rfc3339_nanos(clamped))
            .map_err(|_| serde::ser::Error::custom("time out of range"))?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339(&text)
            .map_err(|e| serde::de::Error::custom(format!("invalid time {text:?}: {e}")))
    }
}

/// Why a probe produced no result.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProbeError {
    /// The container is no longer running: the health loop ends.
    #[error("the container is not running")]
    ContainerGone,
    /// The container is paused: no probe until it runs again, and nothing recorded
    /// (the engine stops its health monitor while a container is paused).
    #[error("the container is paused")]
    Paused,
    /// The probe could not be run (exec failed); recorded as a failure, as the engine
    /// does.
    #[error("{0}")]
    Failed(String),
}

/// What a probe returned: its outcome and output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutput {
    pub outcome: ProbeOutcome,
    pub output: String,
}

/// Runs a healthcheck command in the container (the supervisor's exec).
pub trait Prober: Send + Sync {
    /// Runs `argv`, killing it and answering [`ProbeOutcome::TimedOut`] when it outlives
    /// `timeout`. Output beyond [`MAX_OUTPUT_BYTES`] may be dropped. A future that is
    /// dropped (the loop was cancelled) should stop the command.
    fn probe(
        &self,
        argv: &[String],
        timeout: Duration,
    ) -> impl Future<Output = Result<ProbeOutput, ProbeError>> + Send;
}

/// The wall clock the monitor reads.
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
}

/// Wall time that advances with tokio's monotonic clock from an anchor: immune to the
/// system clock jumping, and paused along with tokio's clock in tests.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    anchor_wall: SystemTime,
    anchor: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading the system time now.
    pub fn new() -> Self {
        Self::anchored_at(SystemTime::now())
    }

    /// A clock reading `wall` now.
    pub fn anchored_at(wall: SystemTime) -> Self {
        TokioClock {
            anchor_wall: wall,
            anchor: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.anchor_wall + self.anchor.elapsed()
    }
}

/// What the loop reports after each probe.
#[derive(Debug, Clone, Copy)]
pub struct HealthUpdate<'a> {
    /// The status before this probe.
    pub previous: HealthStatus,
    /// The state after it (the log always grew).
    pub state: &'a HealthState,
}

impl HealthUpdate<'_> {
    /// Whether the status changed (an event worth showing).
    pub fn changed(&self) -> bool {
        self.previous != self.state.status
    }
}

/// Probes on the monitor's schedule until the prober says the container is gone,
/// calling `on_change` after every probe (persist the state; act on status changes).
/// Cancel it by dropping the future: the monitor stays consistent, since it changes
/// only between awaits.
pub async fn run_health_loop<P, C, F>(
    prober: &P,
    monitor: &mut HealthMonitor,
    clock: &C,
    mut on_change: F,
) where
    P: Prober,
    C: Clock,
    F: FnMut(HealthUpdate<'_>),
{
    let argv = monitor.spec().test.argv();
    loop {
        let now = clock.now();
        let due = monitor.next_probe_at(now);
        tokio::time::sleep(due.duration_since(now).unwrap_or_default()).await;
        let result = match probe_once(prober, &argv, monitor.spec().timeout, clock).await {
            Probed::Result(result) => result,
            Probed::Paused => {
                // Looked at again one interval later, as a resumed container's health
                // monitor starts over.
                tokio::time::sleep(monitor.spec().interval).await;
                continue;
            }
            Probed::Gone => return,
        };
        let previous = monitor.status();
        monitor.record(result);
        on_change(HealthUpdate {
            previous,
            state: monitor.state(),
        });
    }
}

/// What one probe gave.
enum Probed {
    Result(ProbeResult),
    /// Not probed: the container is paused.
    Paused,
    /// The container is gone: the loop ends.
    Gone,
}

/// One probe, timed on `clock`.
async fn probe_once<P: Prober, C: Clock>(
    prober: &P,
    argv: &[String],
    timeout: Duration,
    clock: &C,
) -> Probed {
    let started = clock.now();
    // The prober enforces the timeout; this bound catches an exec that never starts.
    let ceiling = timeout.saturating_add(EXEC_START_GRACE);
    let (outcome, output) = match tokio::time::timeout(ceiling, prober.probe(argv, timeout)).await {
        Ok(Ok(out)) => (out.outcome, out.output),
        Ok(Err(ProbeError::ContainerGone)) => return Probed::Gone,
        Ok(Err(ProbeError::Paused)) => return Probed::Paused,
        Ok(Err(ProbeError::Failed(why))) => (ProbeOutcome::Exited(-1), why),
        Err(_) => (ProbeOutcome::TimedOut, String::new()),
    };
    Probed::Result(ProbeResult {
        outcome,
        output,
        started,
        ended: clock.now(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    fn t(secs: f64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_secs_f64(secs)
    }

    fn config(yaml: &str) -> HealthCheckConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn resolve(yaml: &str) -> Result<Option<HealthSpec>, HealthError> {
        HealthSpec::resolve("web", Some(&config(yaml)), None)
    }

    fn spec(yaml: &str) -> HealthSpec {
        resolve(yaml).unwrap().expect("a healthcheck")
    }

    fn error(yaml: &str) -> String {
        resolve(yaml).unwrap_err().to_string()
    }

    /// A probe that started at `at` seconds and took no time.
    fn probe(code: i64, at: f64) -> ProbeResult {
        ProbeResult {
            outcome: ProbeOutcome::Exited(code),
            output: String::new(),
            started: t(at),
            ended: t(at),
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_are_dockers() {
        let s = spec("test: [CMD, pg_isready, -U, postgres]\n");
        assert_eq!(s.test.argv(), strings(&["pg_isready", "-U", "postgres"]));
        assert_eq!(s.interval, Duration::from_secs(30));
        assert_eq!(s.timeout, Duration::from_secs(30));
        assert_eq!(s.start_period, Duration::ZERO);
        assert_eq!(s.start_interval, Duration::from_secs(5));
        assert_eq!(s.retries, 3);
        // Zero means "the default" to the engine.
        let zero = spec("test: [CMD, 'true']\ninterval: 0s\nretries: 0\n");
        assert_eq!(zero.interval, Duration::from_secs(30));
        assert_eq!(zero.retries, 3);
    }

    #[test]
    fn configured_timing_is_kept() {
        let s = spec("test: [CMD, 'true']\ninterval: 1m30s\ntimeout: 10s\nretries: 5\nstart_period: 40s\nstart_interval: 1s\n");
        assert_eq!(
            (
                s.interval,
                s.timeout,
                s.start_period,
                s.start_interval,
                s.retries
            ),
            (
                Duration::from_secs(90),
                Duration::from_secs(10),
                Duration::from_secs(40),
                Duration::from_secs(1),
                5
            )
        );
    }

    #[test]
    fn cmd_shell_and_the_string_form_run_through_sh() {
        let shell = spec("test: [CMD-SHELL, 'curl -f http://localhost || exit 1']\n");
        assert_eq!(
            shell.test.argv(),
            strings(&["/bin/sh", "-c", "curl -f http://localhost || exit 1"])
        );
        assert_eq!(
            shell
                .test
                .argv_with_shell(&strings(&["/bin/bash", "-o", "pipefail", "-c"])),
            strings(&[
                "/bin/bash",
                "-o",
                "pipefail",
                "-c",
                "curl -f http://localhost || exit 1"
            ])
        );
        let string_form = spec("test: curl -f http://localhost\n");
        assert_eq!(
            string_form.test.argv(),
            strings(&["/bin/sh", "-c", "curl -f http://localhost"])
        );
    }

    #[test]
    fn none_disable_and_absent_mean_no_healthcheck() {
        assert_eq!(resolve("test: [NONE]\n"), Ok(None));
        assert_eq!(resolve("test: [CMD, 'true']\ndisable: true\n"), Ok(None));
        assert_eq!(resolve("interval: 5s\n"), Ok(None));
        assert_eq!(HealthSpec::resolve("web", None, None), Ok(None));
    }

    #[test]
    fn the_image_healthcheck_fills_what_the_service_leaves_out() {
        let image = config("test: [CMD-SHELL, pg_isready]\ninterval: 10s\nretries: 5\n");
        let own = config("interval: 2s\n");
        let s = HealthSpec::resolve("db", Some(&own), Some(&image))
            .unwrap()
            .unwrap();
        assert_eq!(s.test.argv(), strings(&["/bin/sh", "-c", "pg_isready"]));
        assert_eq!(s.interval, Duration::from_secs(2));
        assert_eq!(s.retries, 5);
        assert_eq!(
            HealthSpec::resolve("db", None, Some(&image))
                .unwrap()
                .unwrap()
                .interval,
            Duration::from_secs(10)
        );
        let none = config("test: [NONE]\n");
        assert_eq!(
            HealthSpec::resolve("db", Some(&none), Some(&image)),
            Ok(None)
        );
        let disabled = config("disable: true\n");
        assert_eq!(
            HealthSpec::resolve("db", Some(&disabled), Some(&image)),
            Ok(None)
        );
    }

    #[test]
    fn bad_tests_name_the_service_and_key() {
        assert_eq!(
            error("test: [curl, -f, http://localhost]\n"),
            "services.web.healthcheck.test: [\"curl\", \"-f\", \"http://localhost\"] must start with \"CMD\", \"CMD-SHELL\" or \"NONE\": write [\"CMD\", ...] or give the command as a single string"
        );
        assert_eq!(
            error("test: [CMD]\n"),
            "services.web.healthcheck.test: CMD needs a command after it, e.g. [\"CMD\", ...]"
        );
        assert_eq!(
            error("test: [CMD-SHELL, '  ']\n"),
            "services.web.healthcheck.test: CMD-SHELL needs a command after it, e.g. [\"CMD-SHELL\", ...]"
        );
    }

    #[test]
    fn bad_durations_name_the_service_and_key() {
        assert_eq!(
            error("test: [CMD, 'true']\ninterval: -1s\n"),
            "services.web.healthcheck.interval: -1s is negative: use at least 1ms, or leave it out for the default"
        );
        assert_eq!(
            error("test: [CMD, 'true']\ntimeout: 500us\n"),
            "services.web.healthcheck.timeout: 500µs is shorter than 1ms: use at least 1ms, or leave it out for the default"
        );
        assert!(error("test: [CMD, 'true']\nstart_period: -5s\n")
            .starts_with("services.web.healthcheck.start_period: -5s is negative"));
        assert!(error("test: [CMD, 'true']\nstart_interval: 10ns\n")
            .starts_with("services.web.healthcheck.start_interval: 10ns is shorter than 1ms"));
    }

    #[test]
    fn probes_run_an_interval_apart_from_the_end_of_the_last() {
        let mut m = HealthMonitor::new(spec("test: [CMD, 'true']\n"), t(0.0));
        assert_eq!(m.status(), HealthStatus::Starting);
        assert_eq!(m.next_probe_at(t(0.0)), t(30.0));
        m.record(ProbeResult {
            ended: t(32.0),
            ..probe(0, 30.0)
        });
        assert_eq!(m.next_probe_at(t(32.0)), t(62.0));
        // Overdue (say, after a supervisor restart): probe now.
        assert_eq!(m.next_probe_at(t(100.0)), t(100.0));
    }

    #[test]
    fn the_start_period_probes_every_start_interval_and_once_at_its_end() {
        let s = spec("test: [CMD, 'true']\nstart_period: 12s\nstart_interval: 5s\n");
        let mut m = HealthMonitor::new(s, t(0.0));
        let mut times = Vec::new();
        for _ in 0..4 {
            let at = m.next_probe_at(t(0.0));
            times.push(at);
            let secs = at.duration_since(t(0.0)).unwrap().as_secs_f64();
            m.record(probe(1, secs));
        }
        assert_eq!(times, [t(5.0), t(10.0), t(12.0), t(42.0)]);
    }

    #[test]
    fn a_success_ends_the_start_period() {
        let s = spec("test: [CMD, 'true']\nstart_period: 60s\nstart_interval: 5s\nretries: 1\n");
        let mut m = HealthMonitor::new(s, t(0.0));
        assert_eq!(m.record(probe(0, 5.0)), HealthStatus::Healthy);
        assert_eq!(m.next_probe_at(t(5.0)), t(35.0));
        // Still inside 60 s, but no longer starting: the failure counts.
        assert_eq!(m.record(probe(1, 35.0)), HealthStatus::Unhealthy);
        assert_eq!(m.state().failing_streak, 1);
    }

    #[test]
    fn failures_inside_the_start_period_do_not_count() {
        let s = spec("test: [CMD, 'true']\nstart_period: 20s\nretries: 1\n");
        let mut m = HealthMonitor::new(s, t(0.0));
        for at in [5.0, 10.0, 15.0, 19.9] {
            assert_eq!(m.record(probe(1, at)), HealthStatus::Starting, "at {at}");
        }
        assert_eq!(m.state().failing_streak, 0);
        assert_eq!(m.state().log.len(), 4);
        assert_eq!(m.record(probe(1, 20.0)), HealthStatus::Unhealthy);
    }

    #[test]
    fn retries_consecutive_failures_make_a_container_unhealthy() {
        let mut m = HealthMonitor::new(spec("test: [CMD, 'true']\nretries: 3\n"), t(0.0));
        assert_eq!(m.record(probe(1, 30.0)), HealthStatus::Starting);
        assert_eq!(m.record(probe(2, 60.0)), HealthStatus::Starting);
        assert_eq!(m.record(probe(0, 90.0)), HealthStatus::Healthy);
        assert_eq!(m.state().failing_streak, 0);
        assert_eq!(m.record(probe(1, 120.0)), HealthStatus::Healthy);
        assert_eq!(m.record(probe(137, 150.0)), HealthStatus::Healthy);
        assert_eq!(m.record(probe(1, 180.0)), HealthStatus::Unhealthy);
        assert_eq!(m.state().failing_streak, 3);
        assert_eq!(m.record(probe(1, 210.0)), HealthStatus::Unhealthy);
        assert_eq!(m.record(probe(0, 240.0)), HealthStatus::Healthy);
    }

    #[test]
    fn a_timed_out_probe_is_a_failure_with_dockers_message() {
        let mut m = HealthMonitor::new(
            spec("test: [CMD, sleep, '9']\ntimeout: 2s\nretries: 1\n"),
            t(0.0),
        );
        let timed_out = |output: &str, at| ProbeResult {
            outcome: ProbeOutcome::TimedOut,
            output: output.to_owned(),
            ..probe(0, at)
        };
        assert_eq!(m.record(timed_out("", 30.0)), HealthStatus::Unhealthy);
        m.record(timed_out("partial", 60.0));
        let log = &m.state().log;
        assert_eq!(log[0].exit_code, -1);
        assert_eq!(log[0].output, "Health check exceeded timeout (2s)");
        assert_eq!(log[1].output, "Health check exceeded timeout (2s): partial");
    }

    #[test]
    fn output_is_cut_at_4096_bytes() {
        let mut m = HealthMonitor::new(spec("test: [CMD, 'true']\n"), t(0.0));
        let exact = "x".repeat(MAX_OUTPUT_BYTES);
        m.record(ProbeResult {
            output: exact.clone(),
            ..probe(0, 1.0)
        });
        // Two-byte characters: 4096 falls between the bytes of one.
        m.record(ProbeResult {
            output: format!("x{}", "é".repeat(3000)),
            ..probe(0, 2.0)
        });
        let log = &m.state().log;
        assert_eq!(log[0].output, exact);
        let cut = &log[1].output;
        assert!(cut.ends_with("é..."), "{}", &cut[cut.len() - 10..]);
        assert_eq!(cut.len(), 4095 + 3);
    }

    #[test]
    fn the_log_keeps_the_last_five_probes() {
        let mut m = HealthMonitor::new(spec("test: [CMD, 'true']\n"), t(0.0));
        for code in 1..=7 {
            m.record(probe(code, code as f64 * 30.0));
        }
        let codes: Vec<i64> = m.state().log.iter().map(|e| e.exit_code).collect();
        assert_eq!(codes, [3, 4, 5, 6, 7]);
    }

    #[test]
    fn state_serializes_like_docker_inspect() {
        let mut m = HealthMonitor::new(spec("test: [CMD, 'true']\n"), t(0.0));
        m.record(ProbeResult {
            output: "ok\n".into(),
            ended: t(30.25),
            ..probe(0, 30.0)
        });
        let json = serde_json::to_value(m.state()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "Status": "healthy",
                "FailingStreak": 0,
                "Log": [{
                    "Start": "2023-11-14T22:13:50.000000000Z",
                    "End": "2023-11-14T22:13:50.250000000Z",
                    "ExitCode": 0,
                    "Output": "ok\n"
                }]
            })
        );
        let back: HealthState = serde_json::from_value(json).unwrap();
        assert_eq!(&back, m.state());
    }

    #[test]
    fn state_reads_dockers_own_json() {
        let docker = r#"{"Status":"unhealthy","FailingStreak":4,"Log":[{"Start":"2024-05-01T10:00:00.123456789Z","End":"2024-05-01T10:00:01Z","ExitCode":1,"Output":"refused"}]}"#;
        let state: HealthState = serde_json::from_str(docker).unwrap();
        assert_eq!(state.status, HealthStatus::Unhealthy);
        assert_eq!(state.failing_streak, 4);
        assert_eq!(state.log[0].output, "refused");
        let bad = r#"{"Status":"unhealthy","FailingStreak":4,"Log":[{"Start":"yesterday","End":"2024-05-01T10:00:01Z","ExitCode":1,"Output":""}]}"#;
        let err = serde_json::from_str::<HealthState>(bad).unwrap_err();
        assert!(
            err.to_string().contains("invalid time \"yesterday\""),
            "{err}"
        );
    }

    #[test]
    fn times_outside_what_rfc3339_can_print_are_clamped_not_panicked_on() {
        let entry = HealthLogEntry {
            start: UNIX_EPOCH - Duration::from_secs(10),
            end: UNIX_EPOCH + Duration::from_secs(400_000_000_000),
            exit_code: 0,
            output: String::new(),
        };
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["Start"], "1970-01-01T00:00:00.000000000Z");
        assert_eq!(json["End"], "9999-12-31T23:59:59.000000000Z");
    }

    #[test]
    fn a_resumed_monitor_keeps_the_cadence_and_the_streak() {
        let s = spec("test: [CMD, 'true']\ninterval: 10s\nretries: 2\n");
        let mut m = HealthMonitor::new(s.clone(), t(0.0));
        m.record(probe(0, 10.0));
        m.record(probe(1, 20.0));
        let saved = serde_json::to_string(m.state()).unwrap();
        let mut resumed = HealthMonitor::resume(s, t(0.0), serde_json::from_str(&saved).unwrap());
        assert_eq!(resumed.status(), HealthStatus::Healthy);
        assert_eq!(resumed.next_probe_at(t(25.0)), t(30.0));
        assert_eq!(resumed.record(probe(1, 30.0)), HealthStatus::Unhealthy);
    }

    #[test]
    fn a_restarted_container_starts_over_but_keeps_the_log() {
        let s = spec("test: [CMD, 'true']\ninterval: 10s\nretries: 1\nstart_period: 30s\n");
        let mut m = HealthMonitor::new(s, t(0.0));
        m.record(probe(1, 40.0));
        assert_eq!(m.status(), HealthStatus::Unhealthy);
        m.container_restarted(t(100.0));
        assert_eq!(m.status(), HealthStatus::Starting);
        assert_eq!(m.state().failing_streak, 0);
        assert_eq!(m.state().log.len(), 1);
        assert_eq!(m.next_probe_at(t(100.0)), t(105.0));
        // The new run has its own start period.
        assert_eq!(m.record(probe(1, 105.0)), HealthStatus::Starting);
    }

    #[test]
    fn status_prints_as_docker_ps_shows_it() {
        assert_eq!(HealthStatus::Starting.to_string(), "starting");
        assert_eq!(HealthStatus::Healthy.to_string(), "healthy");
        assert_eq!(HealthStatus::Unhealthy.to_string(), "unhealthy");
    }

    /// One scripted answer of the fake prober.
    enum Step {
        Exit { code: i64, takes: u64 },
        Hang,
        Fail(&'static str),
        Paused,
    }

    /// Answers from a script, noting when (seconds since the test began) and how it was
    /// called; an exhausted script means the container is gone.
    struct ScriptedProber {
        script: Mutex<VecDeque<Step>>,
        calls: Mutex<Vec<(u64, Vec<String>, Duration)>>,
        began: tokio::time::Instant,
    }

    impl ScriptedProber {
        fn new(script: Vec<Step>) -> Self {
            ScriptedProber {
                script: Mutex::new(script.into()),
                calls: Mutex::new(Vec::new()),
                began: tokio::time::Instant::now(),
            }
        }

        fn call_times(&self) -> Vec<u64> {
            self.calls.lock().unwrap().iter().map(|c| c.0).collect()
        }
    }

    impl Prober for ScriptedProber {
        fn probe(
            &self,
            argv: &[String],
            timeout: Duration,
        ) -> impl Future<Output = Result<ProbeOutput, ProbeError>> + Send {
            let at = self.began.elapsed().as_secs_f64().round() as u64;
            self.calls
                .lock()
                .unwrap()
                .push((at, argv.to_vec(), timeout));
            let step = self.script.lock().unwrap().pop_front();
            async move {
                match step {
                    None => Err(ProbeError::ContainerGone),
                    Some(Step::Exit { code, takes }) => {
                        tokio::time::sleep(Duration::from_secs(takes)).await;
                        Ok(ProbeOutput {
                            outcome: ProbeOutcome::Exited(code),
                            output: format!("exit {code}"),
                        })
                    }
                    Some(Step::Hang) => std::future::pending().await,
                    Some(Step::Fail(why)) => Err(ProbeError::Failed(why.to_owned())),
                    Some(Step::Paused) => Err(ProbeError::Paused),
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_probes_on_schedule_and_reports_changes() {
        let s = spec("test: [CMD-SHELL, 'exit 0']\ninterval: 30s\ntimeout: 3s\nstart_period: 10s\nstart_interval: 2s\nretries: 2\n");
        let clock = TokioClock::anchored_at(t(0.0));
        let mut monitor = HealthMonitor::new(s, t(0.0));
        let prober = ScriptedProber::new(vec![
            Step::Exit { code: 1, takes: 1 },
            Step::Exit { code: 0, takes: 0 },
            Step::Exit { code: 1, takes: 0 },
            Step::Exit { code: 1, takes: 0 },
        ]);
        let mut seen = Vec::new();
        run_health_loop(&prober, &mut monitor, &clock, |update| {
            seen.push((update.changed(), update.state.status));
        })
        .await;
        // 2 s (start interval), then 2 s after that probe ended at 3 s, then every 30 s;
        // the fifth call finds the container gone and ends the loop.
        assert_eq!(prober.call_times(), [2, 5, 35, 65, 95]);
        assert_eq!(
            seen,
            [
                (false, HealthStatus::Starting),
                (true, HealthStatus::Healthy),
                (false, HealthStatus::Healthy),
                (true, HealthStatus::Unhealthy),
            ]
        );
        let calls = prober.calls.lock().unwrap();
        assert_eq!(calls[0].1, strings(&["/bin/sh", "-c", "exit 0"]));
        assert_eq!(calls[0].2, Duration::from_secs(3));
        let first = &monitor.state().log[0];
        assert_eq!(first.start, t(2.0));
        assert_eq!(first.end, t(3.0));
        assert_eq!(first.output, "exit 1");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wedged_probe_is_abandoned_as_timed_out() {
        let s = spec("test: [CMD, 'true']\ninterval: 10s\ntimeout: 1s\nretries: 1\n");
        let clock = TokioClock::anchored_at(t(0.0));
        let mut monitor = HealthMonitor::new(s, t(0.0));
        let prober = ScriptedProber::new(vec![Step::Hang]);
        run_health_loop(&prober, &mut monitor, &clock, |_| {}).await;
        // Abandoned 1 s + 30 s after it began at 10 s; the next probe 10 s later.
        assert_eq!(prober.call_times(), [10, 51]);
        let entry = &monitor.state().log[0];
        assert_eq!(entry.exit_code, -1);
        assert_eq!(entry.output, "Health check exceeded timeout (1s)");
        assert_eq!(entry.end, t(41.0));
        assert_eq!(monitor.status(), HealthStatus::Unhealthy);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_container_is_not_probed_and_nothing_is_recorded() {
        let s = spec("test: [CMD, 'true']\ninterval: 10s\nretries: 1\n");
        let clock = TokioClock::anchored_at(t(0.0));
        let mut monitor = HealthMonitor::new(s, t(0.0));
        let prober = ScriptedProber::new(vec![
            Step::Paused,
            Step::Paused,
            Step::Exit { code: 0, takes: 0 },
        ]);
        let mut updates = 0;
        run_health_loop(&prober, &mut monitor, &clock, |_| updates += 1).await;
        // Looked at every interval while paused; only the probe after the resume counts.
        assert_eq!(prober.call_times(), [10, 20, 30, 40]);
        assert_eq!(updates, 1);
        assert_eq!(monitor.state().log.len(), 1);
        assert_eq!(monitor.status(), HealthStatus::Healthy);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_cannot_run_counts_as_a_failure() {
        let s = spec("test: [CMD, 'true']\ninterval: 10s\nretries: 1\n");
        let clock = TokioClock::anchored_at(t(0.0));
        let mut monitor = HealthMonitor::new(s, t(0.0));
        let prober = ScriptedProber::new(vec![Step::Fail("exec: \"true\": not found")]);
        run_health_loop(&prober, &mut monitor, &clock, |_| {}).await;
        let entry = &monitor.state().log[0];
        assert_eq!(entry.exit_code, -1);
        assert_eq!(entry.output, "exec: \"true\": not found");
        assert_eq!(monitor.status(), HealthStatus::Unhealthy);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_loop_leaves_the_monitor_readable() {
        let s = spec("test: [CMD, 'true']\ninterval: 30s\n");
        let clock = TokioClock::anchored_at(t(0.0));
        let mut monitor = HealthMonitor::new(s, t(0.0));
        let script = (0..100).map(|_| Step::Exit { code: 0, takes: 0 }).collect();
        let prober = ScriptedProber::new(script);
        let stopped = tokio::time::timeout(
            Duration::from_secs(100),
            run_health_loop(&prober, &mut monitor, &clock, |_| {}),
        )
        .await;
        assert!(stopped.is_err(), "the loop runs until cancelled");
        assert_eq!(monitor.state().log.len(), 3);
        assert_eq!(monitor.status(), HealthStatus::Healthy);
    }
}

//! Restart policies and the back-off between restarts.
//!
//! One [`RestartPolicy`] type covers both ways a Compose file asks for restarts: the
//! engine-style `restart: no|always|on-failure[:N]|unless-stopped` and the swarm-style
//! `deploy.restart_policy` (`condition`, `delay`, `max_attempts`, `window`), which wins
//! when both are present, as in Docker Compose. A [`RestartManager`] then decides, each
//! time a container exits, whether and when it comes back, with the restart manager
//! rules of the Docker Engine: the delay starts at 100 ms, doubles with every restart up
//! to one minute, and falls back to 100 ms once a container has run for 10 seconds.
//!
//! Nothing here reads a clock: the exit's time arrives with the [`Exit`], so the
//! supervisor (and the tests) decide what "now" is.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::project::model::deploy::RestartPolicy as DeployRestartPolicy;
use crate::project::model::{self, Service};

/// The first delay before a restart.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The longest delay the back-off grows to.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A container that ran at least this long restarts after [`INITIAL_BACKOFF`] again.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

/// A restart policy that cannot be understood; each message names the service and key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RestartError {
    #[error("services.{service}.restart: invalid restart policy {value:?}: use no, always, on-failure[:max-retries] or unless-stopped")]
    UnknownPolicy { service: String, value: String },
    #[error("services.{service}.restart: invalid maximum retry count {count:?} in {value:?}: write a whole number, e.g. on-failure:3")]
    BadRetryCount {
        service: String,
        value: String,
        count: String,
    },
    #[error("services.{service}.restart: a maximum retry count only works with on-failure, not in {value:?}: write on-failure:N or drop the count")]
    RetryCountNotAllowed { service: String, value: String },
    #[error("services.{service}.deploy.restart_policy.condition: invalid condition {value:?}: use none, on-failure or any")]
    UnknownCondition { service: String, value: String },
    #[error("services.{service}.deploy.restart_policy.{key}: negative duration {value}: use a duration such as 5s")]
    NegativeDuration {
        service: String,
        key: &'static str,
        value: String,
    },
}

/// When a container that exited is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    /// Never (`no`, `condition: none`).
    #[default]
    No,
    /// Whatever the exit code (`always`, `condition: any`).
    Always,
    /// Only after a non-zero exit code (`on-failure`).
    OnFailure,
    /// Like `always`; the difference (staying stopped after a user's `stop` across an
    /// engine restart) does not arise here, since a user's stop is never undone.
    UnlessStopped,
}

/// A service's restart policy, from `restart` or `deploy.restart_policy`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    /// Restarts allowed before giving up; 0 means no limit (`on-failure:0` is Docker's
    /// "retry forever").
    #[serde(default)]
    pub max_attempts: u64,
    /// A fixed delay between restarts (`deploy.restart_policy.delay`) instead of the
    /// exponential back-off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    /// When set, `max_attempts` counts only the restarts within this sliding window
    /// (`deploy.restart_policy.window`, swarm's meaning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
}

impl RestartPolicy {
    /// The policy of `service` (named `name` in messages): `deploy.restart_policy` when
    /// present, else `restart`, else `no`.
    pub fn for_service(name: &str, service: &Service) -> Result<Self, RestartError> {
        match service
            .deploy
            .as_ref()
            .and_then(|d| d.restart_policy.as_ref())
        {
            Some(deploy) => Self::from_deploy(name, deploy),
            None => Self::parse_restart(name, &service.restart),
        }
    }

    /// Parses `restart:` (`no`, `always`, `on-failure`, `on-failure:N`, `unless-stopped`;
    /// empty means `no`).
    pub fn parse_restart(service: &str, value: &str) -> Result<Self, RestartError> {
        let (name, count) = match value.split_once(':') {
            Some((name, count)) => (name, Some(count)),
            None => (value, None),
        };
        let condition = match name {
            "" | "no" => RestartCondition::No,
            "always" => RestartCondition::Always,
            "on-failure" => RestartCondition::OnFailure,
            "unless-stopped" => RestartCondition::UnlessStopped,
            _ => {
                return Err(RestartError::UnknownPolicy {
                    service: service.to_owned(),
                    value: value.to_owned(),
                })
            }
        };
        let max_attempts = match count {
            None => 0,
            Some(_) if condition != RestartCondition::OnFailure => {
                return Err(RestartError::RetryCountNotAllowed {
                    service: service.to_owned(),
                    value: value.to_owned(),
                })
            }
            Some(count) => {
                count
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| RestartError::BadRetryCount {
                        service: service.to_owned(),
                        value: value.to_owned(),
                        count: count.to_owned(),
                    })?
            }
        };
        Ok(RestartPolicy {
            condition,
            max_attempts,
            ..RestartPolicy::default()
        })
    }

    /// Maps `deploy.restart_policy` onto a policy. The condition defaults to `any`, as
    /// the Compose Specification says; the engine spellings Docker Compose also accepts
    /// there (`no`, `always`, `unless-stopped`) are understood too.
    pub fn from_deploy(service: &str, deploy: &DeployRestartPolicy) -> Result<Self, RestartError> {
        let condition = match deploy.condition.as_str() {
            "" | "any" | "always" => RestartCondition::Always,
            "none" | "no" => RestartCondition::No,
            "on-failure" => RestartCondition::OnFailure,
            "unless-stopped" => RestartCondition::UnlessStopped,
            other => {
                return Err(RestartError::UnknownCondition {
                    service: service.to_owned(),
                    value: other.to_owned(),
                })
            }
        };
        Ok(RestartPolicy {
            condition,
            max_attempts: deploy.max_attempts.unwrap_or(0),
            delay: deploy_duration(service, "delay", deploy.delay)?,
            window: deploy_duration(service, "window", deploy.window)?.filter(|w| !w.is_zero()),
        })
    }

    /// Whether an exit with `code` calls for a restart at all, limits aside.
    fn wants_restart(&self, code: i32) -> bool {
        match self.condition {
            RestartCondition::No => false,
            RestartCondition::Always | RestartCondition::UnlessStopped => true,
            RestartCondition::OnFailure => code != 0,
        }
    }
}

fn deploy_duration(
    service: &str,
    key: &'static str,
    value: Option<model::Duration>,
) -> Result<Option<Duration>, RestartError> {
    match value {
        Some(d) if d.nanos() < 0 => Err(RestartError::NegativeDuration {
            service: service.to_owned(),
            key,
            value: d.to_string(),
        }),
        other => Ok(other.map(model::Duration::as_std)),
    }
}

/// How a container ended, as the supervisor saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit code (128 + signal for a container killed by a signal).
    pub code: i32,
    /// How long the container ran before exiting.
    pub ran_for: Duration,
    /// Set when the user stopped it (`stop`, `down`, Ctrl-C): never restarted then.
    pub stopped_by_user: bool,
    /// When it exited.
    pub at: SystemTime,
}

/// What to do about an exited container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again once `after` has passed.
    Restart { after: Duration },
    /// Leave it stopped.
    GiveUp,
}

/// What the restart manager remembers about one container; saved with the container so
/// a new supervisor resumes the count and the back-off.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RestartState {
    /// Restarts so far (Docker's `RestartCount`).
    pub restart_count: u64,
    /// The delay chosen for the last restart; zero before the first.
    #[serde(default)]
    pub last_delay: Duration,
    /// When the recent restarts happened; kept only for a policy with a window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_restarts: Vec<SystemTime>,
}

/// Applies one container's restart policy to each of its exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartManager {
    policy: RestartPolicy,
    state: RestartState,
}

impl RestartManager {
    /// A manager for a container that has not restarted yet.
    pub fn new(policy: RestartPolicy) -> Self {
        Self::resume(policy, RestartState::default())
    }

    /// A manager that carries on from a saved state (a re-adopted container).
    pub fn resume(policy: RestartPolicy, state: RestartState) -> Self {
        RestartManager { policy, state }
    }

    pub fn policy(&self) -> &RestartPolicy {
        &self.policy
    }

    pub fn state(&self) -> &RestartState {
        &self.state
    }

    pub fn restart_count(&self) -> u64 {
        self.state.restart_count
    }

    /// Forgets past restarts: a user's `start`/`restart`/`up` gives the container a
    /// fresh count, as `docker start` does.
    pub fn reset(&mut self) {
        self.state = RestartState::default();
    }

    /// Decides what happens after `exit`, counting the restart when there is one.
    pub fn decide(&mut self, exit: &Exit) -> Decision {
        if exit.stopped_by_user || !self.policy.wants_restart(exit.code) {
            return Decision::GiveUp;
        }
        if self.attempts_exhausted(exit.at) {
            return Decision::GiveUp;
        }
        let after = self.next_delay(exit.ran_for);
        self.state.restart_count += 1;
        self.state.last_delay = after;
        // Only a windowed limit needs the times (and prunes them as it checks).
        if self.policy.window.is_some() && self.policy.max_attempts > 0 {
            self.state.recent_restarts.push(exit.at);
        }
        Decision::Restart { after }
    }

    /// Whether `max_attempts` restarts have been used up (within the window, if any).
    fn attempts_exhausted(&mut self, now: SystemTime) -> bool {
        let max = self.policy.max_attempts;
        if max == 0 {
            return false;
        }
        let used = match self.policy.window {
            None => self.state.restart_count,
            Some(window) => {
                self.forget_restarts_before(now, window);
                self.state.recent_restarts.len() as u64
            }
        };
        used >= max
    }

    fn forget_restarts_before(&mut self, now: SystemTime, window: Duration) {
        let Some(start) = now.checked_sub(window) else {
            return;
        };
        self.state.recent_restarts.retain(|at| *at > start);
    }

    /// The fixed delay when the policy has one, else Docker's doubling back-off.
    fn next_delay(&self, ran_for: Duration) -> Duration {
        if let Some(delay) = self.policy.delay {
            return delay;
        }
        let last = self.state.last_delay;
        if ran_for >= BACKOFF_RESET_AFTER || last.is_zero() {
            INITIAL_BACKOFF
        } else {
            last.saturating_mul(2).min(MAX_BACKOFF)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn policy(value: &str) -> RestartPolicy {
        RestartPolicy::parse_restart("web", value).unwrap()
    }

    fn deploy(yaml: &str) -> Result<RestartPolicy, RestartError> {
        let d: DeployRestartPolicy = serde_yaml::from_str(yaml).unwrap();
        RestartPolicy::from_deploy("worker", &d)
    }

    fn crash(code: i32, ran_ms: u64, at_secs: u64) -> Exit {
        Exit {
            code,
            ran_for: Duration::from_millis(ran_ms),
            stopped_by_user: false,
            at: T0 + Duration::from_secs(at_secs),
        }
    }

    fn delays(manager: &mut RestartManager, exits: &[Exit]) -> Vec<Decision> {
        exits.iter().map(|e| manager.decide(e)).collect()
    }

    fn after_ms(ms: u64) -> Decision {
        Decision::Restart {
            after: Duration::from_millis(ms),
        }
    }

    #[test]
    fn restart_values_parse() {
        assert_eq!(policy(""), RestartPolicy::default());
        assert_eq!(policy("no").condition, RestartCondition::No);
        assert_eq!(policy("always").condition, RestartCondition::Always);
        assert_eq!(
            policy("unless-stopped").condition,
            RestartCondition::UnlessStopped
        );
        let on_failure = policy("on-failure");
        assert_eq!(on_failure.condition, RestartCondition::OnFailure);
        assert_eq!(on_failure.max_attempts, 0);
        assert_eq!(policy("on-failure:3").max_attempts, 3);
    }

    #[test]
    fn bad_restart_values_name_service_and_key() {
        let err = |v| {
            RestartPolicy::parse_restart("web", v)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("sometimes"),
            "services.web.restart: invalid restart policy \"sometimes\": use no, always, on-failure[:max-retries] or unless-stopped"
        );
        assert_eq!(
            err("on-failure:three"),
            "services.web.restart: invalid maximum retry count \"three\" in \"on-failure:three\": write a whole number, e.g. on-failure:3"
        );
        assert!(err("on-failure:-1").contains("invalid maximum retry count \"-1\""));
        assert_eq!(
            err("always:3"),
            "services.web.restart: a maximum retry count only works with on-failure, not in \"always:3\": write on-failure:N or drop the count"
        );
    }

    #[test]
    fn deploy_restart_policy_maps_conditions_and_limits() {
        let p = deploy("condition: on-failure\ndelay: 5s\nmax_attempts: 3\nwindow: 2m\n").unwrap();
        assert_eq!(
            p,
            RestartPolicy {
                condition: RestartCondition::OnFailure,
                max_attempts: 3,
                delay: Some(Duration::from_secs(5)),
                window: Some(Duration::from_secs(120)),
            }
        );
        assert_eq!(
            deploy("condition: none\n").unwrap().condition,
            RestartCondition::No
        );
        assert_eq!(
            deploy("condition: any\n").unwrap().condition,
            RestartCondition::Always
        );
        // The specification's default condition is `any`.
        assert_eq!(
            deploy("max_attempts: 2\n").unwrap().condition,
            RestartCondition::Always
        );
        assert_eq!(deploy("window: 0s\n").unwrap().window, None);
    }

    #[test]
    fn bad_deploy_restart_policy_names_service_and_key() {
        assert_eq!(
            deploy("condition: sometimes\n").unwrap_err().to_string(),
            "services.worker.deploy.restart_policy.condition: invalid condition \"sometimes\": use none, on-failure or any"
        );
        assert_eq!(
            deploy("delay: -5s\n").unwrap_err().to_string(),
            "services.worker.deploy.restart_policy.delay: negative duration -5s: use a duration such as 5s"
        );
        assert!(deploy("window: -1m\n")
            .unwrap_err()
            .to_string()
            .starts_with("services.worker.deploy.restart_policy.window: negative duration"));
    }

    #[test]
    fn deploy_restart_policy_wins_over_restart() {
        let service: Service = serde_yaml::from_str(
            "image: x\nrestart: always\ndeploy: {restart_policy: {condition: on-failure, max_attempts: 2}}\n",
        )
        .unwrap();
        let p = RestartPolicy::for_service("api", &service).unwrap();
        assert_eq!(p.condition, RestartCondition::OnFailure);
        assert_eq!(p.max_attempts, 2);

        let plain: Service = serde_yaml::from_str("image: x\nrestart: 'on-failure:5'\n").unwrap();
        assert_eq!(
            RestartPolicy::for_service("api", &plain)
                .unwrap()
                .max_attempts,
            5
        );
        let bad: Service = serde_yaml::from_str("image: x\nrestart: forever\n").unwrap();
        assert!(RestartPolicy::for_service("api", &bad)
            .unwrap_err()
            .to_string()
            .starts_with("services.api.restart:"));
    }

    #[test]
    fn no_never_restarts() {
        let mut m = RestartManager::new(policy("no"));
        assert_eq!(m.decide(&crash(1, 10, 1)), Decision::GiveUp);
        assert_eq!(m.decide(&crash(0, 10, 1)), Decision::GiveUp);
        assert_eq!(m.restart_count(), 0);
    }

    #[test]
    fn always_restarts_whatever_the_exit_code() {
        let mut m = RestartManager::new(policy("always"));
        assert_eq!(m.decide(&crash(0, 10, 1)), after_ms(100));
        assert_eq!(m.decide(&crash(137, 10, 2)), after_ms(200));
        assert_eq!(m.restart_count(), 2);
    }

    #[test]
    fn a_container_stopped_by_the_user_is_never_restarted() {
        for value in ["always", "unless-stopped", "on-failure"] {
            let mut m = RestartManager::new(policy(value));
            let stop = Exit {
                stopped_by_user: true,
                ..crash(143, 5_000, 1)
            };
            assert_eq!(m.decide(&stop), Decision::GiveUp, "{value}");
            assert_eq!(m.restart_count(), 0, "{value}");
        }
    }

    #[test]
    fn on_failure_ignores_a_clean_exit() {
        let mut m = RestartManager::new(policy("on-failure"));
        assert_eq!(m.decide(&crash(0, 10, 1)), Decision::GiveUp);
        assert_eq!(m.decide(&crash(2, 10, 2)), after_ms(100));
    }

    #[test]
    fn on_failure_3_stops_after_three_restarts() {
        let mut m = RestartManager::new(policy("on-failure:3"));
        let exits: Vec<Exit> = (1..=5).map(|i| crash(1, 10, i)).collect();
        assert_eq!(
            delays(&mut m, &exits),
            [
                after_ms(100),
                after_ms(200),
                after_ms(400),
                Decision::GiveUp,
                Decision::GiveUp
            ]
        );
        assert_eq!(m.restart_count(), 3);
    }

    #[test]
    fn unlimited_on_failure_keeps_going() {
        let mut m = RestartManager::new(policy("on-failure:0"));
        for i in 0..50 {
            assert!(matches!(
                m.decide(&crash(1, 10, i)),
                Decision::Restart { .. }
            ));
        }
    }

    #[test]
    fn back_off_doubles_up_to_a_minute() {
        let mut m = RestartManager::new(policy("always"));
        let got: Vec<Decision> = (0..12).map(|i| m.decide(&crash(1, 50, i))).collect();
        let want: Vec<Decision> = [
            100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 51_200, 60_000, 60_000,
        ]
        .into_iter()
        .map(after_ms)
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn back_off_resets_after_ten_seconds_of_running() {
        let mut m = RestartManager::new(policy("unless-stopped"));
        assert_eq!(m.decide(&crash(1, 10, 0)), after_ms(100));
        assert_eq!(m.decide(&crash(1, 10, 1)), after_ms(200));
        assert_eq!(m.decide(&crash(1, 9_999, 2)), after_ms(400));
        assert_eq!(m.decide(&crash(1, 10_000, 20)), after_ms(100));
        assert_eq!(m.decide(&crash(1, 10, 21)), after_ms(200));
        // The count is not reset by a long run: on-failure:N limits a container's life.
        assert_eq!(m.restart_count(), 5);
    }

    #[test]
    fn fixed_delay_replaces_the_back_off() {
        let mut m = RestartManager::new(deploy("condition: any\ndelay: 3s\n").unwrap());
        assert_eq!(m.decide(&crash(1, 10, 0)), after_ms(3_000));
        assert_eq!(m.decide(&crash(1, 10, 1)), after_ms(3_000));
        let mut immediate = RestartManager::new(deploy("delay: 0s\n").unwrap());
        assert_eq!(immediate.decide(&crash(1, 10, 0)), after_ms(0));
    }

    #[test]
    fn max_attempts_without_window_counts_every_restart() {
        let mut m = RestartManager::new(deploy("condition: any\nmax_attempts: 2\n").unwrap());
        assert!(matches!(
            m.decide(&crash(0, 10, 0)),
            Decision::Restart { .. }
        ));
        assert!(matches!(
            m.decide(&crash(0, 10, 1_000)),
            Decision::Restart { .. }
        ));
        assert_eq!(m.decide(&crash(0, 10, 2_000)), Decision::GiveUp);
    }

    #[test]
    fn window_counts_only_recent_restarts() {
        let mut m = RestartManager::new(
            deploy("condition: on-failure\nmax_attempts: 2\nwindow: 60s\n").unwrap(),
        );
        assert!(matches!(
            m.decide(&crash(1, 10, 0)),
            Decision::Restart { .. }
        ));
        assert!(matches!(
            m.decide(&crash(1, 10, 30)),
            Decision::Restart { .. }
        ));
        // Two restarts within the last minute: give up for now.
        assert_eq!(m.decide(&crash(1, 10, 59)), Decision::GiveUp);
        // At 61 s the first restart has left the window.
        assert!(matches!(
            m.decide(&crash(1, 10, 61)),
            Decision::Restart { .. }
        ));
        assert_eq!(m.state().recent_restarts.len(), 2);
        assert_eq!(m.restart_count(), 3);
    }

    #[test]
    fn state_survives_a_supervisor_restart() {
        let p = policy("on-failure:3");
        let mut m = RestartManager::new(p.clone());
        m.decide(&crash(1, 10, 0));
        m.decide(&crash(1, 10, 1));
        let saved = serde_json::to_string(m.state()).unwrap();
        let mut resumed = RestartManager::resume(p, serde_json::from_str(&saved).unwrap());
        assert_eq!(resumed.decide(&crash(1, 10, 2)), after_ms(400));
        assert_eq!(resumed.decide(&crash(1, 10, 3)), Decision::GiveUp);
    }

    #[test]
    fn reset_gives_a_fresh_count_and_delay() {
        let mut m = RestartManager::new(policy("on-failure:1"));
        m.decide(&crash(1, 10, 0));
        assert_eq!(m.decide(&crash(1, 10, 1)), Decision::GiveUp);
        m.reset();
        assert_eq!(m.decide(&crash(1, 10, 2)), after_ms(100));
    }

    #[test]
    fn policy_serializes_readably() {
        let p = deploy("condition: on-failure\nmax_attempts: 3\n").unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"condition":"on-failure","max_attempts":3}"#);
        assert_eq!(serde_json::from_str::<RestartPolicy>(&json).unwrap(), p);
    }
}

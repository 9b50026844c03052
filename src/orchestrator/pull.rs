//! Which service images to pull, and pulling them, as Docker Compose v2 does before
//! `up`/`create` and in `compose pull`.
//!
//! A service's `pull_policy` decides: `always`, `missing` (the default; also
//! `if_not_present`), `never`, `build`, and `daily`/`weekly`/`every_<duration>`, which
//! pull again once the last pull is that old. Compose reads the age from the image's
//! last tag time; the embedded store keeps no such time, so the last pull of each
//! reference is recorded in `<root>/images/pulled.json` instead.
//!
//! Several images are pulled at once (each deduplicated: two services naming one
//! image pull it once), within the project's parallelism limit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcompose_runtime::atomic_file;
use rcompose_runtime::image::reference::{Reference, ReferenceError};
use rcompose_runtime::image::registry::{
    self, Platform, Progress as LayerProgress, ProgressEvent as LayerEvent, PullOptions,
    PullOutcome, RegistryClient, RegistryError,
};
use rcompose_runtime::image::store::Store;
use tokio::sync::Semaphore;

use crate::project::model::{Duration as ComposeDuration, Project, Service};

/// File of the last pull times, in the image store's directory.
pub const PULL_RECORD_FILE: &str = "pulled.json";

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// When a service's image is pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    Missing,
    Never,
    /// The image is built, not pulled.
    Build,
    /// Pulled when missing or when the last pull is older than this.
    Refresh(Duration),
}

impl PullPolicy {
    /// Parses a `pull_policy` value (or `--pull`); `None` for an unknown one.
    pub fn parse(text: &str) -> Option<PullPolicy> {
        match text {
            // A bare `refresh` is no spec value; compose-go takes it as `missing`.
            "" | "missing" | "if_not_present" | "refresh" => Some(PullPolicy::Missing),
            "always" => Some(PullPolicy::Always),
            "never" => Some(PullPolicy::Never),
            "build" => Some(PullPolicy::Build),
            "daily" => Some(PullPolicy::Refresh(DAY)),
            "weekly" => Some(PullPolicy::Refresh(7 * DAY)),
            _ => {
                let interval = text.strip_prefix("every_")?;
                let parsed = ComposeDuration::parse(interval).ok()?;
                (parsed.nanos() > 0).then(|| PullPolicy::Refresh(parsed.as_std()))
            }
        }
    }

    /// The service's own policy. `build` without a `build` section is an error, as
    /// there would be no way to get the image.
    pub fn of_service(name: &str, service: &Service) -> Result<PullPolicy, PullError> {
        let policy =
            PullPolicy::parse(&service.pull_policy).ok_or_else(|| PullError::InvalidPolicy {
                service: name.to_owned(),
                policy: service.pull_policy.clone(),
            })?;
        if policy == PullPolicy::Build && service.build.is_none() {
            return Err(PullError::BuildWithoutBuildSection {
                service: name.to_owned(),
            });
        }
        Ok(policy)
    }
}

/// Why pulling could not be decided or done. Each message names the service.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("service {service}: pull_policy: invalid pull policy {policy:?}: use always, never, missing, build, daily, weekly or every_<duration>")]
    InvalidPolicy { service: String, policy: String },
    #[error(
        "service {service}: pull_policy: build needs a `build` section to build the image from"
    )]
    BuildWithoutBuildSection { service: String },
    #[error("service {service}: image {image:?} is not a valid reference")]
    Reference {
        service: String,
        image: String,
        #[source]
        source: ReferenceError,
    },
    #[error("service {service}: platform {platform:?}")]
    Platform {
        service: String,
        platform: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("service {service}: pulling image {image} failed: {source}")]
    Pull {
        service: String,
        image: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("service {service}: pushing image {image} failed: {source}")]
    Push {
        service: String,
        image: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("service {service}: looking up image {image} in the local store: {detail}")]
    Store {
        service: String,
        image: String,
        detail: String,
    },
    #[error("pull times in {}: {detail}", path.display())]
    Record { path: PathBuf, detail: String },
    #[error("starting the async runtime for pulls: {0}")]
    Runtime(String),
}

/// The last pull of each image reference (`docker.io/library/busybox:1`), in seconds
/// since the epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullRecord {
    path: PathBuf,
    times: BTreeMap<String, u64>,
}

impl PullRecord {
    /// Reads `<images_dir>/pulled.json`; no file is an empty record.
    pub fn load(images_dir: &Path) -> Result<PullRecord, PullError> {
        let path = images_dir.join(PULL_RECORD_FILE);
        let record_error = |detail: String| PullError::Record {
            path: path.clone(),
            detail,
        };
        let times = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| record_error(e.to_string()))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(err) => return Err(record_error(err.to_string())),
        };
        Ok(PullRecord { path, times })
    }

    pub fn last_pulled(&self, reference: &Reference) -> Option<SystemTime> {
        self.times
            .get(&reference.to_string())
            .map(|secs| UNIX_EPOCH + Duration::from_secs(*secs))
    }

    pub fn mark_pulled(&mut self, reference: &Reference, when: SystemTime) {
        let secs = when
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        self.times.insert(reference.to_string(), secs);
    }

    /// Writes the record whole, so a concurrent reader never sees half of it.
    pub fn save(&self) -> Result<(), PullError> {
        atomic_file::replace_json(&self.path, &self.times, 0o644).map_err(|err| PullError::Record {
            path: self.path.clone(),
            detail: err.to_string(),
        })
    }
}

/// Who asks for the pulls: `up` follows the policies (unset = `missing`); `compose
/// pull` pulls everything but what `never`, `build` or an explicit `missing` spare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPurpose {
    Up,
    PullCommand,
}

/// One image to pull, for the services that use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullJob {
    pub image: String,
    pub reference: Reference,
    /// Services using the image, in project order; the first names it in messages.
    pub services: Vec<String>,
    pub platform: Option<Platform>,
    /// A service using the image has a `build` section: a failed pull is not fatal.
    pub buildable: bool,
}

/// Why a service's image is not pulled (`compose pull` prints it as `Skipped`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    NoImage,
    PolicyNever,
    PolicyBuild,
    Present,
    PulledRecently,
}

impl SkipReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            SkipReason::NoImage => "Skipped - No image to be pulled",
            SkipReason::PolicyNever | SkipReason::PolicyBuild => "Skipped",
            SkipReason::Present => "Skipped - Image is already present locally",
            SkipReason::PulledRecently => "Skipped - Image was pulled recently",
        }
    }
}

/// What to pull for a set of services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullSelection {
    pub jobs: Vec<PullJob>,
    pub skipped: Vec<(String, SkipReason)>,
}

/// What the selection needs to know about the machine.
pub struct LocalImages<'a> {
    /// Whether the store has an image for the reference.
    pub present: &'a dyn Fn(&Reference) -> Result<bool, String>,
    pub record: &'a PullRecord,
    pub now: SystemTime,
}

/// Decides, service by service, which images to pull. `services` limits the choice
/// (empty: all of the project's); `forced` is `--pull`/`--policy`, overriding every
/// service's policy.
pub fn select_pulls(
    project: &Project,
    services: &[String],
    purpose: PullPurpose,
    forced: Option<PullPolicy>,
    local: &LocalImages<'_>,
) -> Result<PullSelection, PullError> {
    let mut selection = PullSelection::default();
    for (name, service) in &project.services {
        if !services.is_empty() && !services.contains(name) {
            continue;
        }
        if service.image.is_empty() {
            selection.skipped.push((name.clone(), SkipReason::NoImage));
            continue;
        }
        let reference =
            Reference::parse(&service.image).map_err(|source| PullError::Reference {
                service: name.clone(),
                image: service.image.clone(),
                source,
            })?;
        let own = PullPolicy::of_service(name, service)?;
        let policy = effective_policy(own, service, &reference, purpose, forced);
        if let Some(reason) = skip_reason(name, service, &reference, policy, local)? {
            selection.skipped.push((name.clone(), reason));
            continue;
        }
        add_job(&mut selection.jobs, name, service, reference)?;
    }
    Ok(selection)
}

/// The policy in force: the flag's, else the service's. `compose pull` pulls what has
/// no explicit policy, what a refresh policy covers, and a `latest` tag even under
/// `missing` (it moves).
fn effective_policy(
    own: PullPolicy,
    service: &Service,
    reference: &Reference,
    purpose: PullPurpose,
    forced: Option<PullPolicy>,
) -> PullPolicy {
    if let Some(forced) = forced {
        return forced;
    }
    match (purpose, own) {
        (PullPurpose::PullCommand, PullPolicy::Refresh(_)) => PullPolicy::Always,
        (PullPurpose::PullCommand, PullPolicy::Missing)
            if service.pull_policy.is_empty() || reference.tag() == Some("latest") =>
        {
            PullPolicy::Always
        }
        _ => own,
    }
}

fn skip_reason(
    name: &str,
    service: &Service,
    reference: &Reference,
    policy: PullPolicy,
    local: &LocalImages<'_>,
) -> Result<Option<SkipReason>, PullError> {
    let present = || {
        (local.present)(reference).map_err(|detail| PullError::Store {
            service: name.to_owned(),
            image: service.image.clone(),
            detail,
        })
    };
    Ok(match policy {
        PullPolicy::Always => None,
        PullPolicy::Never => Some(SkipReason::PolicyNever),
        PullPolicy::Build => Some(SkipReason::PolicyBuild),
        PullPolicy::Missing => present()?.then_some(SkipReason::Present),
        PullPolicy::Refresh(interval) => {
            let fresh = local.record.last_pulled(reference).is_some_and(|then| {
                local
                    .now
                    .duration_since(then)
                    .map_or(true, |age| age < interval)
            });
            (fresh && present()?).then_some(SkipReason::PulledRecently)
        }
    })
}

/// Adds the service to the job pulling its image, or a new job.
fn add_job(
    jobs: &mut Vec<PullJob>,
    name: &str,
    service: &Service,
    reference: Reference,
) -> Result<(), PullError> {
    let platform = if service.platform.is_empty() {
        None
    } else {
        Some(
            Platform::parse(&service.platform).map_err(|source| PullError::Platform {
                service: name.to_owned(),
                platform: service.platform.clone(),
                source: Box::new(source),
            })?,
        )
    };
    let buildable = service.build.is_some();
    match jobs
        .iter_mut()
        .find(|job| job.reference == reference && job.platform == platform)
    {
        Some(job) => {
            job.services.push(name.to_owned());
            job.buildable |= buildable;
        }
        None => jobs.push(PullJob {
            image: service.image.clone(),
            reference,
            services: vec![name.to_owned()],
            platform,
            buildable,
        }),
    }
    Ok(())
}

/// What a pull reports as it goes: the Compose-level status of each image
/// (`Pulling`, `Pulled`, `Error`) and the per-layer events under it.
pub trait PullReporter: Send + Sync {
    fn image(&self, job: &PullJob, status: &str);
    fn layer(&self, job: &PullJob, event: LayerEvent);
}

/// Pulls every job, at most `parallel` at once, and records each success in
/// `record`. Returns one result per job, in order; a failure names the first service
/// using the image and the registry's reason.
pub fn pull_all(
    client: &RegistryClient,
    store: &Store,
    jobs: &[PullJob],
    parallel: usize,
    reporter: Arc<dyn PullReporter>,
    record: &mut PullRecord,
) -> Result<Vec<Result<PullOutcome, PullError>>, PullError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| PullError::Runtime(err.to_string()))?;
    let results = runtime.block_on(pull_concurrently(client, store, jobs, parallel, reporter));
    let now = SystemTime::now();
    for (job, result) in jobs.iter().zip(&results) {
        if result.is_ok() {
            record.mark_pulled(&job.reference, now);
        }
    }
    if results.iter().any(Result::is_ok) {
        record.save()?;
    }
    Ok(results)
}

async fn pull_concurrently(
    client: &RegistryClient,
    store: &Store,
    jobs: &[PullJob],
    parallel: usize,
    reporter: Arc<dyn PullReporter>,
) -> Vec<Result<PullOutcome, PullError>> {
    let limit = Arc::new(Semaphore::new(parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, job) in jobs.iter().enumerate() {
        let (client, store, job) = (client.clone(), store.clone(), job.clone());
        let (limit, reporter) = (Arc::clone(&limit), Arc::clone(&reporter));
        tasks.spawn(async move {
            // The semaphore is never closed, so acquiring cannot fail.
            let _permit = limit.acquire_owned().await.ok();
            (index, pull_one(&client, &store, &job, reporter).await)
        });
    }
    let mut results: Vec<Option<Result<PullOutcome, PullError>>> =
        jobs.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((index, result)) = joined {
            results[index] = Some(result);
        }
    }
    // A task that panicked left its slot empty: report it against its image.
    results
        .into_iter()
        .zip(jobs)
        .map(|(result, job)| {
            result.unwrap_or_else(|| {
                Err(PullError::Runtime(format!(
                    "the pull of {} stopped unexpectedly",
                    job.image
                )))
            })
        })
        .collect()
}

async fn pull_one(
    client: &RegistryClient,
    store: &Store,
    job: &PullJob,
    reporter: Arc<dyn PullReporter>,
) -> Result<PullOutcome, PullError> {
    reporter.image(job, "Pulling");
    let options = PullOptions {
        platform: job.platform.clone(),
        ..PullOptions::default()
    };
    let layers = {
        let (reporter, job) = (Arc::clone(&reporter), job.clone());
        LayerProgress::new(move |event| reporter.layer(&job, event))
    };
    match registry::pull(client, store, &job.reference, &options, &layers).await {
        Ok(outcome) => {
            reporter.image(job, "Pulled");
            Ok(outcome)
        }
        Err(source) => {
            reporter.image(job, if job.buildable { "Warning" } else { "Error" });
            Err(PullError::Pull {
                service: job.services.first().cloned().unwrap_or_default(),
                image: job.image.clone(),
                source: Box::new(source),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn project(yaml: &str) -> Project {
        crate::backend::native::tests::project(yaml)
    }

    fn select(
        project: &Project,
        purpose: PullPurpose,
        forced: Option<PullPolicy>,
        present: &[&str],
        record: &PullRecord,
        now: SystemTime,
    ) -> Result<PullSelection, PullError> {
        let present: Vec<Reference> = present
            .iter()
            .map(|p| Reference::parse(p).unwrap())
            .collect();
        let is_present = move |r: &Reference| Ok(present.contains(r));
        let local = LocalImages {
            present: &is_present,
            record,
            now,
        };
        select_pulls(project, &[], purpose, forced, &local)
    }

    fn pulled_images(selection: &PullSelection) -> Vec<&str> {
        selection.jobs.iter().map(|j| j.image.as_str()).collect()
    }

    #[test]
    fn policies_parse_as_compose_spells_them() {
        assert_eq!(PullPolicy::parse(""), Some(PullPolicy::Missing));
        assert_eq!(
            PullPolicy::parse("if_not_present"),
            Some(PullPolicy::Missing)
        );
        assert_eq!(PullPolicy::parse("refresh"), Some(PullPolicy::Missing));
        assert_eq!(PullPolicy::parse("always"), Some(PullPolicy::Always));
        assert_eq!(PullPolicy::parse("never"), Some(PullPolicy::Never));
        assert_eq!(PullPolicy::parse("daily"), Some(PullPolicy::Refresh(DAY)));
        assert_eq!(
            PullPolicy::parse("weekly"),
            Some(PullPolicy::Refresh(7 * DAY))
        );
        assert_eq!(
            PullPolicy::parse("every_12h"),
            Some(PullPolicy::Refresh(Duration::from_secs(12 * 3600)))
        );
        assert_eq!(
            PullPolicy::parse("every_1h30m"),
            Some(PullPolicy::Refresh(Duration::from_secs(5400)))
        );
        assert_eq!(PullPolicy::parse("every_"), None);
        assert_eq!(PullPolicy::parse("every_0"), None);
        assert_eq!(PullPolicy::parse("hourly"), None);
    }

    #[test]
    fn up_pulls_only_missing_images_by_default() {
        let p = project(
            "services:\n  web: {image: 'web:1'}\n  db: {image: 'db:1'}\n  built: {build: .}\n",
        );
        let none = PullRecord::default();
        let got = select(
            &p,
            PullPurpose::Up,
            None,
            &["web:1"],
            &none,
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(pulled_images(&got), ["db:1"]);
        assert!(got
            .skipped
            .contains(&("web".to_string(), SkipReason::Present)));
        assert!(got
            .skipped
            .contains(&("built".to_string(), SkipReason::NoImage)));
    }

    #[test]
    fn always_never_and_the_pull_flag() {
        let p = project(
            "services:\n  a: {image: 'a:1', pull_policy: always}\n  n: {image: 'n:1', pull_policy: never}\n",
        );
        let none = PullRecord::default();
        let now = SystemTime::now();
        let got = select(&p, PullPurpose::Up, None, &["a:1"], &none, now).unwrap();
        assert_eq!(pulled_images(&got), ["a:1"]);
        assert!(got
            .skipped
            .contains(&("n".to_string(), SkipReason::PolicyNever)));
        // `--pull never` wins over `always`; `--pull always` over `never`.
        let never = select(
            &p,
            PullPurpose::Up,
            Some(PullPolicy::Never),
            &[],
            &none,
            now,
        )
        .unwrap();
        assert!(never.jobs.is_empty());
        let always = select(
            &p,
            PullPurpose::Up,
            Some(PullPolicy::Always),
            &["a:1", "n:1"],
            &none,
            now,
        )
        .unwrap();
        assert_eq!(pulled_images(&always), ["a:1", "n:1"]);
    }

    #[test]
    fn refresh_policies_pull_again_once_the_last_pull_is_old() {
        let p = project("services:\n  web: {image: 'web:1', pull_policy: every_12h}\n");
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut record = PullRecord::default();
        let reference = Reference::parse("web:1").unwrap();
        // Never pulled by us: pulled, even if the image is present.
        let got = select(&p, PullPurpose::Up, None, &["web:1"], &record, now).unwrap();
        assert_eq!(pulled_images(&got), ["web:1"]);
        record.mark_pulled(&reference, now - Duration::from_secs(3600));
        let got = select(&p, PullPurpose::Up, None, &["web:1"], &record, now).unwrap();
        assert_eq!(
            got.skipped,
            [("web".to_string(), SkipReason::PulledRecently)]
        );
        // Recently pulled but removed since: pulled.
        let got = select(&p, PullPurpose::Up, None, &[], &record, now).unwrap();
        assert_eq!(pulled_images(&got), ["web:1"]);
        record.mark_pulled(&reference, now - Duration::from_secs(13 * 3600));
        let got = select(&p, PullPurpose::Up, None, &["web:1"], &record, now).unwrap();
        assert_eq!(pulled_images(&got), ["web:1"]);
    }

    #[test]
    fn the_pull_command_pulls_unless_a_policy_spares_the_image() {
        let p = project(
            "services:\n  plain: {image: 'p:1'}\n  missing: {image: 'm:1', pull_policy: missing}\n  daily: {image: 'd:1', pull_policy: daily}\n  never: {image: 'n:1', pull_policy: never}\n  latest: {image: l, pull_policy: missing}\n",
        );
        let none = PullRecord::default();
        let now = SystemTime::now();
        let present = ["p:1", "m:1", "d:1", "n:1", "l"];
        let got = select(&p, PullPurpose::PullCommand, None, &present, &none, now).unwrap();
        assert_eq!(pulled_images(&got), ["p:1", "d:1", "l"]);
        // `pull --policy missing` pulls only what is absent.
        let got = select(
            &p,
            PullPurpose::PullCommand,
            Some(PullPolicy::Missing),
            &["p:1"],
            &none,
            now,
        )
        .unwrap();
        assert_eq!(pulled_images(&got), ["m:1", "d:1", "n:1", "l"]);
    }

    #[test]
    fn services_sharing_an_image_pull_it_once() {
        let p = project(
            "services:\n  a: {image: busybox}\n  b: {image: 'docker.io/library/busybox:latest'}\n",
        );
        let got = select(
            &p,
            PullPurpose::Up,
            None,
            &[],
            &PullRecord::default(),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(got.jobs.len(), 1);
        assert_eq!(got.jobs[0].services, ["a", "b"]);
    }

    #[test]
    fn build_policy_without_a_build_section_names_service_and_key() {
        let p = project("services:\n  web: {image: 'web:1', pull_policy: build}\n");
        let err = select(
            &p,
            PullPurpose::Up,
            None,
            &[],
            &PullRecord::default(),
            SystemTime::now(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "service web: pull_policy: build needs a `build` section to build the image from"
        );
        let built = project("services:\n  web: {image: 'web:1', pull_policy: build, build: .}\n");
        let got = select(
            &built,
            PullPurpose::Up,
            None,
            &[],
            &PullRecord::default(),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(got.skipped, [("web".to_string(), SkipReason::PolicyBuild)]);
    }

    #[test]
    fn bad_references_and_platforms_name_the_service() {
        let p = project("services:\n  web: {image: 'Web:1'}\n");
        let err = select(
            &p,
            PullPurpose::Up,
            None,
            &[],
            &PullRecord::default(),
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("service web: image \"Web:1\" is not a valid reference"),
            "{err}"
        );
        let p = project("services:\n  web: {image: 'web:1', platform: 'linux/'}\n");
        let err = select(
            &p,
            PullPurpose::Up,
            None,
            &[],
            &PullRecord::default(),
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("service web: platform"),
            "{err}"
        );
    }

    #[test]
    fn the_record_survives_a_round_trip_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut record = PullRecord::load(dir.path()).unwrap();
        assert!(record.times.is_empty());
        let reference = Reference::parse("busybox:1").unwrap();
        let when = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        record.mark_pulled(&reference, when);
        record.save().unwrap();
        let text = std::fs::read_to_string(dir.path().join(PULL_RECORD_FILE)).unwrap();
        assert!(
            text.contains("\"docker.io/library/busybox:1\": 1700000000"),
            "{text}"
        );
        let again = PullRecord::load(dir.path()).unwrap();
        assert_eq!(again.last_pulled(&reference), Some(when));
        std::fs::write(dir.path().join(PULL_RECORD_FILE), "{not json").unwrap();
        let err = PullRecord::load(dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("pull times in "), "{err}");
    }

    struct Recorder(Mutex<Vec<String>>);

    impl PullReporter for Recorder {
        fn image(&self, job: &PullJob, status: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{} {status}", job.image));
        }
        fn layer(&self, _job: &PullJob, _event: LayerEvent) {}
    }

    #[test]
    fn a_failed_pull_names_service_image_and_reason_and_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("images")).unwrap();
        std::fs::create_dir_all(dir.path().join("images")).unwrap();
        let client = RegistryClient::from_state_root(dir.path()).unwrap();
        // A port nothing listens on: the connection is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = project(&format!(
            "services:\n  web: {{image: '127.0.0.1:{port}/app:1'}}\n"
        ));
        let selection = select(
            &p,
            PullPurpose::Up,
            None,
            &[],
            &PullRecord::default(),
            SystemTime::now(),
        )
        .unwrap();
        let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
        let mut record = PullRecord::load(&dir.path().join("images")).unwrap();
        let results = pull_all(
            &client,
            &store,
            &selection.jobs,
            4,
            recorder.clone(),
            &mut record,
        )
        .unwrap();
        let err = results[0].as_ref().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "service web: pulling image 127.0.0.1:{port}/app:1 failed: cannot connect to"
            )),
            "{err}"
        );
        let image = format!("127.0.0.1:{port}/app:1");
        assert_eq!(
            *recorder.0.lock().unwrap(),
            [format!("{image} Pulling"), format!("{image} Error")]
        );
        assert!(!dir.path().join("images").join(PULL_RECORD_FILE).exists());
    }
}

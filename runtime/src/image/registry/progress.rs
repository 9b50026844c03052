//! Progress of a pull or push, one event per change of a layer's state, so a front
//! end can draw a bar per layer (`docker pull`'s lines) or print plain lines.

use std::fmt;
use std::sync::Arc;

/// What happened to one item (a layer or config blob by its 12-digit short digest, or
/// the image's tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressEvent {
    pub id: String,
    pub status: ProgressStatus,
}

/// The states `docker pull` and `docker push` print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressStatus {
    /// The tag is being resolved to a manifest.
    Resolving,
    /// A layer will be downloaded ("Pulling fs layer").
    Waiting,
    /// `current` of `total` bytes are on disk (a resumed download starts above 0).
    Downloading {
        current: u64,
        total: u64,
    },
    /// A download failed and is retried from where it stopped.
    Retrying {
        attempt: u32,
        reason: String,
    },
    DownloadComplete,
    Extracting,
    PullComplete,
    /// The layer is already unpacked in the store.
    AlreadyExists,
    /// A blob to push is being checked against the registry ("Preparing").
    Preparing,
    Pushing {
        current: u64,
        total: u64,
    },
    Pushed,
    /// The registry already has this blob.
    LayerAlreadyExists,
}

impl fmt::Display for ProgressStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProgressStatus::Resolving => f.write_str("Resolving"),
            ProgressStatus::Waiting => f.write_str("Pulling fs layer"),
            ProgressStatus::Downloading { .. } => f.write_str("Downloading"),
            ProgressStatus::Retrying { attempt, reason } => {
                write!(f, "Retrying (attempt {attempt}): {reason}")
            }
            ProgressStatus::DownloadComplete => f.write_str("Download complete"),
            ProgressStatus::Extracting => f.write_str("Extracting"),
            ProgressStatus::PullComplete => f.write_str("Pull complete"),
            ProgressStatus::AlreadyExists => f.write_str("Already exists"),
            ProgressStatus::Preparing => f.write_str("Preparing"),
            ProgressStatus::Pushing { .. } => f.write_str("Pushing"),
            ProgressStatus::Pushed => f.write_str("Pushed"),
            ProgressStatus::LayerAlreadyExists => f.write_str("Layer already exists"),
        }
    }
}

/// Where events go: a callback shared by the concurrent downloads, or nowhere.
#[derive(Clone, Default)]
pub struct Progress {
    sink: Option<Arc<dyn Fn(ProgressEvent) + Send + Sync>>,
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress")
            .field("reporting", &self.sink.is_some())
            .finish()
    }
}

impl Progress {
    /// Reports nothing (quiet mode).
    pub fn none() -> Progress {
        Progress::default()
    }

    pub fn new(sink: impl Fn(ProgressEvent) + Send + Sync + 'static) -> Progress {
        Progress {
            sink: Some(Arc::new(sink)),
        }
    }

    pub(crate) fn report(&self, id: &str, status: ProgressStatus) {
        if let Some(sink) = &self.sink {
            sink(ProgressEvent {
                id: id.to_owned(),
                status,
            });
        }
    }
}

/// The 12 hex digits Docker names a layer by.
pub(crate) fn short_id(digest: &crate::image::reference::Digest) -> String {
    digest.hex().chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn events_reach_the_callback_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let progress = Progress::new(move |event| sink.lock().expect("lock").push(event));
        progress.report("abc", ProgressStatus::Waiting);
        progress.report("abc", ProgressStatus::PullComplete);
        Progress::none().report("ignored", ProgressStatus::Waiting);
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].status.to_string(), "Pull complete");
    }

    #[test]
    fn short_ids_are_twelve_hex_digits() {
        let digest = crate::image::reference::Digest::sha256_of(b"x");
        assert_eq!(short_id(&digest).len(), 12);
        assert!(digest.hex().starts_with(&short_id(&digest)));
    }
}

//! Healthcheck probes: the command runs in the container as an exec'd process, its
//! stdout and stderr captured together, killed when it outlives the timeout.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use rcompose_runtime::container::lifecycle::{ExecOptions, LifecycleError, Runtime};
use rcompose_runtime::container::status::State;

use crate::orchestrator::health::{
    ProbeError, ProbeOutcome, ProbeOutput, Prober, MAX_OUTPUT_BYTES,
};

pub(super) struct ExecProber {
    pub root: PathBuf,
    pub program: PathBuf,
    pub container: String,
}

impl Prober for ExecProber {
    async fn probe(&self, argv: &[String], timeout: Duration) -> Result<ProbeOutput, ProbeError> {
        let runtime = Runtime::new(&self.program, &self.root);
        // A frozen container would hold the probe until its timeout and be marked
        // unhealthy for being paused.
        match runtime.state(&self.container) {
            Ok(state) if state.state == State::Paused => return Err(ProbeError::Paused),
            Err(LifecycleError::NotFound(_)) => return Err(ProbeError::ContainerGone),
            _ => {}
        }
        let (read, write) = rustix::pipe::pipe().map_err(|e| ProbeError::Failed(e.to_string()))?;
        let stderr = write
            .try_clone()
            .map_err(|e| ProbeError::Failed(e.to_string()))?;
        let session = runtime.exec(
            &self.container,
            ExecOptions {
                args: argv.to_vec(),
                stdout: Some(write),
                stderr: Some(stderr),
                ..ExecOptions::default()
            },
        );
        let session = match session {
            Ok(session) => session,
            Err(LifecycleError::NotRunning(_) | LifecycleError::NotFound(_)) => {
                return Err(ProbeError::ContainerGone)
            }
            Err(err) => return Err(ProbeError::Failed(err.to_string())),
        };
        let pid = session.pid;
        let finished = tokio::task::spawn_blocking(move || {
            let mut output = Vec::new();
            let _ = File::from(read)
                .take(MAX_OUTPUT_BYTES as u64 + 1)
                .read_to_end(&mut output);
            let code = session.wait();
            (output, code)
        });
        let (output, code) = match tokio::time::timeout(timeout, finished).await {
            Ok(Ok(done)) => done,
            Ok(Err(err)) => return Err(ProbeError::Failed(err.to_string())),
            Err(_) => {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                return Ok(ProbeOutput {
                    outcome: ProbeOutcome::TimedOut,
                    output: String::new(),
                });
            }
        };
        let code = code.map_err(|e| ProbeError::Failed(e.to_string()))?;
        Ok(ProbeOutput {
            outcome: ProbeOutcome::Exited(i64::from(code)),
            output: String::from_utf8_lossy(&output).into_owned(),
        })
    }
}

//! Helpers for end-to-end tests of the `rcompose` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A throwaway project directory with files written into it.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// A project whose directory has a fixed, valid name, so output can be compared.
    pub fn new(files: &[(&str, &str)]) -> Project {
        let dir = tempfile::Builder::new()
            .prefix("rc-test-")
            .tempdir()
            .unwrap();
        let project = Project { dir };
        for (name, text) in files {
            project.write(name, text);
        }
        project
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, text: &str) {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Runs rcompose in `cwd` (relative to the project) with only the given variables set.
    pub fn run_in(
        &self,
        cwd: &str,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&str>,
    ) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rcompose"));
        command
            .args(args)
            .current_dir(self.dir.path().join(cwd))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", "/home/tester")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("rcompose runs");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        Run(child.wait_with_output().unwrap())
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_in(".", args, &[], None)
    }
}

pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Asserts success and returns stdout.
    pub fn ok(&self) -> String {
        assert_eq!(
            self.code(),
            0,
            "rcompose failed:\nstdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }
    /// Asserts failure with `code` and returns stderr.
    pub fn fails(&self, code: i32) -> String {
        assert_eq!(
            self.code(),
            code,
            "expected exit {code}:\nstdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        assert!(
            !self.stderr().contains("panicked"),
            "panic: {}",
            self.stderr()
        );
        self.stderr()
    }
}

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Root filesystem tarballs for image tests: files and symlinks owned by root.
pub struct RootfsTar {
    builder: Option<tar::Builder<Vec<u8>>>,
}

impl RootfsTar {
    pub fn new() -> RootfsTar {
        RootfsTar {
            builder: Some(tar::Builder::new(Vec::new())),
        }
    }

    fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        header
    }

    pub fn file(mut self, path: &str, body: &[u8], mode: u32) -> RootfsTar {
        let mut header = Self::header(tar::EntryType::Regular, body.len() as u64, mode);
        let builder = self.builder.as_mut().unwrap();
        builder.append_data(&mut header, path, body).unwrap();
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> RootfsTar {
        let mut header = Self::header(tar::EntryType::Symlink, 0, 0o777);
        let builder = self.builder.as_mut().unwrap();
        builder.append_link(&mut header, path, target).unwrap();
        self
    }

    pub fn build(mut self) -> Vec<u8> {
        self.builder.take().unwrap().into_inner().unwrap()
    }
}

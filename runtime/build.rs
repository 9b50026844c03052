//! Builds the init binary for `init: true` (`init/main.rs`) as a static executable in
//! OUT_DIR; `src/container/init.rs` embeds it with `include_bytes!`.
//!
//! It is bind-mounted into arbitrary images, so it must not need their libc: rustc links
//! it statically against glibc's `libc.a` (`-C target-feature=+crt-static`). It is
//! compiled by calling `$RUSTC` directly because it is a separate, dependency-free
//! program; a cargo package of its own could not be embedded without a nested build.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

const SOURCE: &str = "init/main.rs";
const OUTPUT: &str = "rcompose-init";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if let Err(message) = build_init() {
        eprintln!("error: building rcompose's static init binary ({SOURCE}) failed: {message}");
        eprintln!(
            "It is linked statically against glibc: on Debian/Ubuntu, `apt-get install libc6-dev` \
             provides libc.a; the Rust standard library for the target must be installed too."
        );
        exit(1);
    }
}

fn build_init() -> Result<(), String> {
    let out_dir = PathBuf::from(required_env("OUT_DIR")?);
    let manifest_dir = PathBuf::from(required_env("CARGO_MANIFEST_DIR")?);
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut command = Command::new(&rustc);
    command.args(rustc_args(
        &manifest_dir.join(SOURCE),
        &out_dir.join(OUTPUT),
        &required_env("TARGET")?,
    ));
    // A linker configured for the target (target.<triple>.linker) applies here too.
    if let Some(linker) = env::var_os("RUSTC_LINKER") {
        let mut option = std::ffi::OsString::from("linker=");
        option.push(linker);
        command.arg("-C").arg(option);
    }
    let output = command
        .output()
        .map_err(|err| format!("running {}: {err}", Path::new(&rustc).display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} exited with {}:\n{}",
            Path::new(&rustc).display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    // Warnings in the init's source would otherwise go unseen.
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        println!("cargo:warning=rcompose-init: {line}");
    }
    Ok(())
}

/// A small, static, panic-free executable: no unwinding tables, optimized for size,
/// no symbols.
fn rustc_args(source: &Path, output: &Path, target: &str) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "--edition=2021",
        "--crate-type=bin",
        "--crate-name=rcompose_init",
        "--target",
        target,
        "-C",
        "target-feature=+crt-static",
        "-C",
        "panic=abort",
        "-C",
        "opt-level=s",
        "-C",
        "codegen-units=1",
        "-C",
        "strip=symbols",
        "-o",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(output.into());
    args.push(source.into());
    args
}

fn required_env(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("cargo did not set {name}"))
}

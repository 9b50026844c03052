//! Interpolation and env-file parsing on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rcompose::project::{dotenv, interpolate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lookup = |name: &str| (name.len() % 2 == 0).then(|| format!("v{name}"));
    let _ = interpolate::substitute(text, &lookup);
    let _ = dotenv::parse(text, &lookup);
    let _ = dotenv::parse_raw(text);
});

//! Random identifiers from the kernel's pool.

use std::fs;
use std::io::{self, Read};

/// 64 hex digits, like Docker's ids and anonymous volume names.
pub(crate) fn random_hex_id() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_digits_and_differ() {
        let a = random_hex_id().unwrap();
        let b = random_hex_id().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}

//! The names the protocols carry, checked in one place: file names (also
//! used for host names on the registry, see `docs/registry-protocol.md`) and
//! usernames (which name a directory on a node, see `docs/trust.md`).

use reactor::bytes::{any_of, below, eq, non_ascii};

/// Why a name may not be a file name: base names only, 1–255 bytes, no `/`,
/// `\` or control characters, not `.` or `..`.
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err("names must be 1 to 255 bytes long".into());
    }
    if name == "." || name == ".." {
        return Err("'.' and '..' are not file names".into());
    }
    if name.contains(['/', '\\']) || name.chars().any(char::is_control) {
        return Err("names may not contain '/', '\\' or control characters".into());
    }
    Ok(())
}

pub fn valid_file_name(name: &str) -> bool {
    // The same rule as `check_file_name`, without building its message: the
    // registry checks a name or two on every request line, eight bytes at a
    // time here. Anything not ASCII takes the full rule.
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 255 || name == "." || name == ".." {
        return false;
    }
    if !any_of(b, |w| {
        non_ascii(w) | below(w, 0x20) | eq(w, 0x7f) | eq(w, b'/') | eq(w, b'\\')
    }) {
        return true;
    }
    if name.is_ascii() {
        return false;
    }
    check_file_name(name).is_ok()
}

/// What the coordinator says about a username it refuses.
pub const USERNAME_RULE: &str =
    "Username must be 3 to 32 characters: letters, digits, '_', '.' or '-' (not only dots)";

/// Usernames: 3–32 of `A-Za-z0-9_.-`, not only dots, since a node keeps each
/// user's files in a directory of that name.
pub fn valid_username(u: &str) -> bool {
    (3..=32).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && u.bytes().any(|b| b != b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_base_names() {
        assert!(valid_file_name("report 2024 ü.pdf"));
        assert!(valid_file_name("a b.txt"));
        for bad in ["", ".", "..", "a/b", "a\\b", "a\nb", &"x".repeat(256)] {
            assert!(!valid_file_name(bad), "{bad:?}");
        }
        // The quick ASCII path and the full rule agree on every byte.
        for c in 0u8..0x80 {
            let s = format!("a{}b", c as char);
            assert_eq!(valid_file_name(&s), check_file_name(&s).is_ok(), "{c:#x}");
        }
        assert!(!valid_file_name("a\u{85}b"));
        assert!(valid_file_name(&"ü".repeat(127)));
        assert!(!valid_file_name(&"ü".repeat(128)));
    }

    #[test]
    fn usernames_that_can_name_a_directory() {
        assert!(valid_username("alice"));
        assert!(valid_username("a.b-c_9"));
        assert!(!valid_username("..."));
        assert!(!valid_username(".."));
        assert!(!valid_username("ab"));
        assert!(!valid_username("a/bc"));
        assert!(!valid_username(&"x".repeat(33)));
    }
}

//! Password hashing (argon2id, PHC string format).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};

use crate::error::Error;

/// Hashes a password for storage.
pub fn hash(password: &str) -> Result<String, Error> {
    if password.is_empty() {
        return Err(Error::Invalid("a password cannot be empty".into()));
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Invalid(format!("cannot hash the password: {e}")))
}

/// Whether `password` matches a stored hash. A malformed stored hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A digest of a secret the server generated itself (device tokens and MQTT passwords, the server's own
/// MQTT secret): SHA-256 in hex. Such secrets carry 240 random bits, so a slow hash would add nothing but
/// cost on every connect and request.
pub fn digest(secret: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(secret.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `secret` has the stored `digest`, compared in constant time.
pub fn digest_matches(secret: &str, stored: &str) -> bool {
    same_in_constant_time(&digest(secret), stored)
}

/// Whether two secrets' digests or seals are equal, in a time that does not depend on where they differ.
pub fn same_in_constant_time(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new random secret for a device or the server: 60 hexadecimal digits (240 random bits).
pub fn new_secret() -> String {
    let mut s = String::new();
    for _ in 0..2 {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    // Drop the version and variant digits, which are not random.
    s.chars().enumerate().filter(|(i, _)| ![12, 16, 44, 48].contains(i)).map(|(_, c)| c).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = super::hash("digitme2").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("digitme2", &h));
        assert!(!super::verify("digitme3", &h));
        assert!(!super::verify("digitme2", "not a hash"));
        assert!(super::hash("").is_err());
    }

    #[test]
    fn digests_match_their_secret_only() {
        let a = super::new_secret();
        let b = super::new_secret();
        assert_eq!(a.len(), 60);
        assert_ne!(a, b);
        let d = super::digest(&a);
        assert_eq!(d.len(), 64);
        assert!(super::digest_matches(&a, &d));
        assert!(!super::digest_matches(&b, &d));
        assert!(!super::digest_matches(&a, ""));
        assert_eq!(super::digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}

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
}

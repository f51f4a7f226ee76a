//! Tokens and passwords: HS256 JWTs signed by hand, PBKDF2-HMAC-SHA256 password hashes.

pub mod jwt;
pub mod password;
pub mod random;

//! A wrapper for values that must never be printed: API keys, the JWT secret, database passwords.
//!
//! `Debug` and `Display` print `***`; there is deliberately no `Serialize`, so a secret cannot reach JSON, a log
//! line, the dashboard or the database by accident. The only way in is [`Secret::expose`], which is easy to grep
//! for in review. String and byte secrets are overwritten with zeros when dropped.

use std::fmt;

/// A value that prints as `***` and is wiped on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T: Wipe>(T);

impl<T: Wipe> Secret<T> {
    /// Wraps a value.
    pub fn new(v: T) -> Self {
        Self(v)
    }
    /// Gives access to the value. Call sites are the audit surface: each must not log or store what it gets.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl Secret<String> {
    /// True when the secret is the empty string (a key that was not configured).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T: Wipe> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
impl<T: Wipe> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T: Wipe> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.wipe();
    }
}

impl From<String> for Secret<String> {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// Overwrites a value's memory before it is freed.
pub trait Wipe {
    /// Overwrites the value with zeros (or an empty value).
    fn wipe(&mut self);
}

fn wipe_bytes(b: &mut [u8]) {
    for x in b.iter_mut() {
        // Volatile so the compiler cannot drop the store as dead before the free.
        // SAFETY: `x` is a valid, aligned, exclusive reference.
        unsafe { std::ptr::write_volatile(x, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

impl Wipe for String {
    fn wipe(&mut self) {
        // SAFETY: zero bytes are valid UTF-8, so the string stays valid.
        wipe_bytes(unsafe { self.as_mut_vec() });
        self.clear();
    }
}
impl Wipe for Vec<u8> {
    fn wipe(&mut self) {
        wipe_bytes(self);
        self.clear();
    }
}
impl<const N: usize> Wipe for [u8; N] {
    fn wipe(&mut self) {
        wipe_bytes(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("hunter2-super-secret".to_string());
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            key: Secret<String>,
        }
        let h = Holder { key: s.clone() };
        assert!(!format!("{h:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-super-secret");
    }
}

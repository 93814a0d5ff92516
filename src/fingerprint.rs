//! Stable content fingerprints (FNV-1a), for "has this changed" checks. Not a security
//! measure: where a secret is fingerprinted, it is only to notice that it changed.

/// A fingerprint of `bytes`: the FNV-1a hash and the length.
pub fn content_hash(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}-{}", bytes.len())
}

/// The hash part of `content_hash` alone (16 hex digits): short enough for object names and
/// label values.
pub fn short_hash(bytes: &[u8]) -> String {
    let full = content_hash(bytes);
    full.split('-').next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_changes_with_content() {
        assert_eq!(content_hash(b"abc"), content_hash(b"abc"));
        assert_ne!(content_hash(b"abc"), content_hash(b"abd"));
        assert_ne!(content_hash(b""), content_hash(b"\0"));
        // Known FNV-1a 64 value of "a".
        assert_eq!(content_hash(b"a"), "af63dc4c8601ec8c-1");
        assert_eq!(short_hash(b"a"), "af63dc4c8601ec8c");
    }
}

//! The request context: condition key -> one or more string values, filled by the agent
//! for each request.
//!
//! Keys are case-insensitive, as IAM's condition key names are: they are stored
//! lowercased, with a hash, and the policy's keys are lowercased and hashed once at parse
//! time, so a lookup compares one integer per entry and bytes only on a hash hit. Keys
//! and values live back to back in one string, with a small list of ranges into it, so
//! building a context costs two growing buffers (none when a context is reused after
//! [`Context::clear`]) instead of an allocation per key. A linear scan over a dozen
//! entries beats a hash map at this size.

use std::ops::Range;

/// Condition keys and their values for one request.
///
/// ```
/// use lattice_policy::Context;
/// let mut context = Context::new();
/// context.insert("vpc-lattice-svcs:RequestMethod", "GET");
/// context.insert("vpc-lattice-svcs:RequestQueryString/tag", "a");
/// context.insert("vpc-lattice-svcs:RequestQueryString/tag", "b");
/// assert_eq!(context.values("VPC-LATTICE-SVCS:requestmethod").collect::<Vec<_>>(), ["GET"]);
/// assert_eq!(context.values("vpc-lattice-svcs:RequestQueryString/tag").count(), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Context {
    text: String,
    entries: Vec<Entry>,
}

/// One key-value pair; a key with several values has several entries.
#[derive(Debug, Clone)]
struct Entry {
    /// [`key_hash`] of the lowercased key.
    hash: u64,
    key: Range<usize>,
    value: Range<usize>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty context with room for `entries` pairs of `text_bytes` bytes in all.
    pub fn with_capacity(entries: usize, text_bytes: usize) -> Self {
        Self {
            text: String::with_capacity(text_bytes),
            entries: Vec::with_capacity(entries),
        }
    }

    /// Adds `value` to `key` (any case). Inserting a key again adds a value: the key is
    /// then multivalued, for the `ForAllValues`/`ForAnyValue` qualifiers.
    pub fn insert(&mut self, key: &str, value: &str) {
        let key_start = self.text.len();
        if key.is_ascii() {
            // The common case, done a slice at a time rather than a char at a time.
            self.text.push_str(key);
            if let Some(pushed) = self.text.get_mut(key_start..) {
                pushed.make_ascii_lowercase();
            }
        } else {
            self.text.extend(key.chars().flat_map(char::to_lowercase));
        }
        let value_start = self.text.len();
        let hash = key_hash(self.text.get(key_start..).unwrap_or_default());
        self.text.push_str(value);
        self.entries.push(Entry {
            hash,
            key: key_start..value_start,
            value: value_start..self.text.len(),
        });
    }

    /// Adds `value` to a key lowercased and hashed in advance: the keys a caller fills
    /// for every request cost a copy, not a lowercasing and a hash each time.
    pub fn insert_key(&mut self, key: &ContextKey, value: &str) {
        let key_start = self.text.len();
        self.text.push_str(&key.text);
        let value_start = self.text.len();
        self.text.push_str(value);
        self.entries.push(Entry {
            hash: key.hash,
            key: key_start..value_start,
            value: value_start..self.text.len(),
        });
    }

    /// Adds `value` to the key `prefix` + `name` (`name` in any case), with the prefix
    /// lowercased and hashed in advance: `vpc-lattice-svcs:RequestHeader/` + a name.
    pub fn insert_under(&mut self, prefix: &ContextKey, name: &str, value: &str) {
        let key_start = self.text.len();
        self.text.push_str(&prefix.text);
        let name_start = self.text.len();
        if name.is_ascii() {
            self.text.push_str(name);
            if let Some(pushed) = self.text.get_mut(name_start..) {
                pushed.make_ascii_lowercase();
            }
        } else {
            self.text.extend(name.chars().flat_map(char::to_lowercase));
        }
        let value_start = self.text.len();
        let hash = key_hash_from(prefix.hash, self.text.get(name_start..).unwrap_or_default());
        self.text.push_str(value);
        self.entries.push(Entry {
            hash,
            key: key_start..value_start,
            value: value_start..self.text.len(),
        });
    }

    /// Empties the context, keeping its buffers for the next request.
    pub fn clear(&mut self) {
        self.text.clear();
        self.entries.clear();
    }

    /// Whether no key has a value.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The values of `key`, whatever its case, in insertion order.
    pub fn values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |e| {
                self.text
                    .get(e.key.clone())
                    .is_some_and(|k| k.chars().eq(key.chars().flat_map(char::to_lowercase)))
            })
            .filter_map(|e| self.text.get(e.value.clone()))
    }

    /// Whether `key` (any case) has a value.
    pub fn contains(&self, key: &str) -> bool {
        self.values(key).next().is_some()
    }

    /// The values of `key`, already lowercased and hashed (the evaluator's keys are).
    pub(crate) fn values_of<'a>(
        &'a self,
        key: &'a ContextKey,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.hash == key.hash && self.text.get(e.key.clone()) == Some(&*key.text))
            .filter_map(|e| self.text.get(e.value.clone()))
    }
}

/// A condition key as the context stores it: lowercased, with its hash. Made once for
/// a key (or a key prefix) that is used again and again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextKey {
    hash: u64,
    text: Box<str>,
}

impl ContextKey {
    pub fn new(key: &str) -> Self {
        let text = lowercase(key);
        Self {
            hash: key_hash(&text),
            text: text.into(),
        }
    }

    /// The key, lowercased.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// The form of a condition key the context stores.
pub(crate) fn lowercase(key: &str) -> String {
    key.chars().flat_map(char::to_lowercase).collect()
}

/// FNV-1a: a few instructions per byte, and keys are short.
fn key_hash(key: &str) -> u64 {
    key_hash_from(0xcbf2_9ce4_8422_2325, key)
}

/// FNV-1a of a key that goes on after a part whose hash is `hash`: the hash of
/// `prefix + rest` is `key_hash_from(key_hash(prefix), rest)`.
fn key_hash_from(hash: u64, rest: &str) -> u64 {
    rest.bytes().fold(hash, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_ignore_case_values_keep_it() {
        let mut c = Context::with_capacity(4, 128);
        c.insert("aws:PrincipalTag/Team", "Payments");
        c.insert("AWS:SOURCEIP", "10.0.0.1");
        assert!(c.contains("aws:principaltag/team"));
        assert_eq!(c.values("aws:SourceIp").collect::<Vec<_>>(), ["10.0.0.1"]);
        assert_eq!(
            c.values_of(&ContextKey::new("AWS:PrincipalTag/TEAM"))
                .collect::<Vec<_>>(),
            ["Payments"]
        );
        assert_eq!(c.values("aws:PrincipalTag").count(), 0);
        c.clear();
        assert!(c.is_empty());
        assert!(!c.contains("aws:SourceIp"));
    }

    #[test]
    fn keys_made_in_advance_are_the_same_keys() {
        let mut fast = Context::new();
        fast.insert_key(&ContextKey::new("aws:SourceIp"), "10.0.0.1");
        let header = ContextKey::new("vpc-lattice-svcs:RequestHeader/");
        fast.insert_under(&header, "X-Team", "a");
        fast.insert_under(&header, "x-team", "b");
        fast.insert_under(&ContextKey::new("aws:PrincipalTag/"), "Équipe", "c");
        let mut slow = Context::new();
        slow.insert("aws:SourceIp", "10.0.0.1");
        slow.insert("vpc-lattice-svcs:RequestHeader/X-Team", "a");
        slow.insert("vpc-lattice-svcs:RequestHeader/x-team", "b");
        slow.insert("aws:PrincipalTag/Équipe", "c");
        for key in [
            "aws:sourceip",
            "vpc-lattice-svcs:requestheader/x-team",
            "aws:principaltag/équipe",
        ] {
            let key = ContextKey::new(key);
            assert_eq!(
                fast.values_of(&key).collect::<Vec<_>>(),
                slow.values_of(&key).collect::<Vec<_>>(),
                "{key:?}"
            );
        }
        assert_eq!(
            fast.values("VPC-Lattice-Svcs:RequestHeader/X-TEAM").count(),
            2
        );
    }
}

//! Listener filters: `event_types` (dot-separated patterns where a `*` segment
//! matches one or more segments) and `sources` (exact names).
//!
//! Patterns are split into segments once, when the listener subscribes;
//! matching allocates nothing and runs in time linear in the segments for
//! all practical patterns (backtracking only to the last `*`). Lists are
//! capped ([`MAX_ENTRIES`], [`MAX_ENTRY_LEN`]) so one listener cannot make
//! every delivery expensive.

/// Most entries in `event_types` or in `sources`.
pub const MAX_ENTRIES: usize = 32;
/// Longest entry, in bytes.
pub const MAX_ENTRY_LEN: usize = 256;
/// Event types with more dot-separated segments than this match no pattern.
const MAX_SEGMENTS: usize = 32;

/// What one listener asked for. An empty list means "no filter on that axis".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Each pattern as its segments.
    event_types: Vec<Box<[Box<str>]>>,
    sources: Vec<Box<str>>,
}

impl Filter {
    /// Builds a filter from the comma lists of the query (`None` when absent).
    /// `Ok(None)` when neither list names anything: no filter at all. A list
    /// over the caps is an error saying which.
    pub fn from_lists(
        event_types: Option<&str>,
        sources: Option<&str>,
    ) -> Result<Option<Self>, String> {
        fn split<'a>(name: &str, s: Option<&'a str>) -> Result<Vec<&'a str>, String> {
            let items: Vec<&'a str> = s
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            if items.len() > MAX_ENTRIES {
                return Err(format!(
                    "`{name}` lists {} entries; at most {MAX_ENTRIES}",
                    items.len()
                ));
            }
            if items.iter().any(|p| p.len() > MAX_ENTRY_LEN) {
                return Err(format!("`{name}` has an entry over {MAX_ENTRY_LEN} bytes"));
            }
            Ok(items)
        }
        let f = Filter {
            event_types: split("event_types", event_types)?
                .into_iter()
                .map(|p| p.split('.').map(Into::into).collect())
                .collect(),
            sources: split("sources", sources)?
                .into_iter()
                .map(Into::into)
                .collect(),
        };
        Ok((!f.event_types.is_empty() || !f.sources.is_empty()).then_some(f))
    }

    /// Whether an event of `event_type` from `source` passes every given list.
    pub fn matches(&self, event_type: &str, source: Option<&str>) -> bool {
        let source_ok = self.sources.is_empty()
            || source.is_some_and(|s| self.sources.iter().any(|x| &**x == s));
        source_ok && (self.event_types.is_empty() || self.type_matches(event_type))
    }

    fn type_matches(&self, event_type: &str) -> bool {
        let mut segs = [""; MAX_SEGMENTS];
        let mut n = 0;
        for seg in event_type.split('.') {
            if n == MAX_SEGMENTS {
                return false;
            }
            segs[n] = seg;
            n += 1;
        }
        self.event_types.iter().any(|p| glob(p, &segs[..n]))
    }
}

/// `*` as a whole segment matches one or more segments; other segments match
/// literally. Classic glob matching with backtracking to the last `*`.
fn glob<S: AsRef<str>>(pat: &[S], typ: &[&str]) -> bool {
    let (mut p, mut t) = (0, 0);
    // After the last `*` seen: (pattern index after it, text index where its
    // match ends).
    let mut star: Option<(usize, usize)> = None;
    while t < typ.len() {
        if p < pat.len() && pat[p].as_ref() == "*" {
            star = Some((p + 1, t + 1));
            p += 1;
            t += 1;
        } else if p < pat.len() && pat[p].as_ref() == typ[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            // Let the last `*` take one more segment and retry from there.
            star = Some((sp, st + 1));
            p = sp;
            t = st + 1;
        } else {
            return false;
        }
    }
    p == pat.len()
}

/// Matches one pattern string against an event type (for tests and tools).
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    let pat: Vec<&str> = pattern.split('.').collect();
    let typ: Vec<&str> = event_type.split('.').collect();
    glob(&pat, &typ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(pattern_matches("blog.*", "blog.post"));
        assert!(pattern_matches("blog.*", "blog.post.created"));
        assert!(!pattern_matches("blog.*", "blog"));
        assert!(!pattern_matches("blog.*", "news.post"));
        assert!(pattern_matches("*.created", "user.created"));
        assert!(pattern_matches("*.created", "a.b.created"));
        assert!(!pattern_matches("*.created", "created"));
        assert!(pattern_matches("*", "message"));
        assert!(pattern_matches("*", "a.b.c"));
        assert!(pattern_matches("a.*.c", "a.x.y.c"));
        assert!(!pattern_matches("a.*.c", "a.c"));
        assert!(pattern_matches("exact", "exact"));
        assert!(!pattern_matches("exact", "exactly"));
    }

    #[test]
    fn lists_and_sources() {
        assert_eq!(Filter::from_lists(None, None), Ok(None));
        assert_eq!(Filter::from_lists(Some(" , "), Some("")), Ok(None));
        let f = Filter::from_lists(Some("blog.*,message"), None)
            .unwrap()
            .unwrap();
        assert!(f.matches("blog.post", None));
        assert!(f.matches("message", None));
        assert!(!f.matches("news", None));
        let f = Filter::from_lists(None, Some("billing,crm"))
            .unwrap()
            .unwrap();
        assert!(f.matches("anything", Some("crm")));
        assert!(!f.matches("anything", Some("cr")));
        assert!(
            !f.matches("anything", None),
            "no source fails a sources filter"
        );
        let f = Filter::from_lists(Some("a.*"), Some("s")).unwrap().unwrap();
        assert!(f.matches("a.b", Some("s")));
        assert!(!f.matches("a.b", Some("t")));
        assert!(!f.matches("b", Some("s")));
    }

    #[test]
    fn several_stars_and_deep_types() {
        assert!(pattern_matches("*.*", "a.b"));
        assert!(!pattern_matches("*.*", "a"));
        assert!(pattern_matches("*.x.*", "a.b.x.c.d"));
        assert!(!pattern_matches("*.x.*", "a.b.x"));
        assert!(pattern_matches("a.*.b.*.c", "a.1.2.b.3.c"));
        assert!(!pattern_matches("a.*.b.*.c", "a.b.c"));
        let deep = vec!["s"; 40].join(".");
        let f = Filter::from_lists(Some("*"), None).unwrap().unwrap();
        assert!(
            !f.matches(&deep, None),
            "types deeper than MAX_SEGMENTS match nothing"
        );
        assert!(f.matches(&vec!["s"; 32].join("."), None));
    }

    #[test]
    fn lists_are_capped() {
        let many = vec!["a"; MAX_ENTRIES + 1].join(",");
        assert!(Filter::from_lists(Some(&many), None).is_err());
        assert!(Filter::from_lists(None, Some(&many)).is_err());
        let ok = vec!["a"; MAX_ENTRIES].join(",");
        assert!(Filter::from_lists(Some(&ok), None).is_ok());
        let long = "x".repeat(MAX_ENTRY_LEN + 1);
        assert!(Filter::from_lists(Some(&long), None).is_err());
    }
}

//! Listener filters: `event_types` (dot-separated patterns where a `*` segment
//! matches one or more segments) and `sources` (exact names).

/// What one listener asked for. An empty list means "no filter on that axis".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    event_types: Vec<Box<str>>,
    sources: Vec<Box<str>>,
}

impl Filter {
    /// Builds a filter from the comma lists of the query (`None` when absent).
    /// Returns `None` when neither list names anything: no filter at all.
    pub fn from_lists(event_types: Option<&str>, sources: Option<&str>) -> Option<Self> {
        let split = |s: Option<&str>| -> Vec<Box<str>> {
            s.map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(Into::into)
                    .collect()
            })
            .unwrap_or_default()
        };
        let f = Filter {
            event_types: split(event_types),
            sources: split(sources),
        };
        (!f.event_types.is_empty() || !f.sources.is_empty()).then_some(f)
    }

    /// Whether an event of `event_type` from `source` passes every given list.
    pub fn matches(&self, event_type: &str, source: Option<&str>) -> bool {
        let type_ok = self.event_types.is_empty()
            || self
                .event_types
                .iter()
                .any(|p| pattern_matches(p, event_type));
        let source_ok = self.sources.is_empty()
            || source.is_some_and(|s| self.sources.iter().any(|x| &**x == s));
        type_ok && source_ok
    }
}

/// `*` as a whole segment matches one or more segments; other segments match
/// literally.
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    let pat: Vec<&str> = pattern.split('.').collect();
    let typ: Vec<&str> = event_type.split('.').collect();
    segments_match(&pat, &typ)
}

fn segments_match(pat: &[&str], typ: &[&str]) -> bool {
    match pat.split_first() {
        None => typ.is_empty(),
        Some((&"*", rest)) => (1..=typ.len()).any(|n| segments_match(rest, &typ[n..])),
        Some((seg, rest)) => typ.first() == Some(seg) && segments_match(rest, &typ[1..]),
    }
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
        assert_eq!(Filter::from_lists(None, None), None);
        assert_eq!(Filter::from_lists(Some(" , "), Some("")), None);
        let f = Filter::from_lists(Some("blog.*,message"), None).unwrap();
        assert!(f.matches("blog.post", None));
        assert!(f.matches("message", None));
        assert!(!f.matches("news", None));
        let f = Filter::from_lists(None, Some("billing,crm")).unwrap();
        assert!(f.matches("anything", Some("crm")));
        assert!(!f.matches("anything", Some("cr")));
        assert!(
            !f.matches("anything", None),
            "no source fails a sources filter"
        );
        let f = Filter::from_lists(Some("a.*"), Some("s")).unwrap();
        assert!(f.matches("a.b", Some("s")));
        assert!(!f.matches("a.b", Some("t")));
        assert!(!f.matches("b", Some("s")));
    }
}

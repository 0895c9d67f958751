//! Fuzzes the listener filters (`hub::filter::Filter`): building one from
//! the query's `event_types` and `sources` lists, and matching events
//! against it, checked against a plain recursive reference matcher.
#![no_main]

use herald::hub::filter::{Filter, MAX_ENTRIES, MAX_ENTRY_LEN};
use libfuzzer_sys::fuzz_target;

/// `*` matches one or more whole segments; anything else one equal segment.
fn reference(pattern: &[&str], ty: &[&str]) -> bool {
    match pattern.split_first() {
        None => ty.is_empty(),
        Some((&"*", rest)) => (1..=ty.len()).any(|n| reference(rest, &ty[n..])),
        Some((seg, rest)) => ty.first() == Some(seg) && reference(rest, &ty[1..]),
    }
}

fn list(s: &str) -> Vec<&str> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty()).collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // event_types \n sources \n event type \n source
    let mut parts = text.splitn(4, '\n');
    let (types, sources, ty, source) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next(),
    );
    let (tl, sl) = (list(types), list(sources));
    match Filter::from_lists(Some(types), Some(sources)) {
        Err(e) => {
            assert!(!e.is_empty());
            let over = |l: &[&str]| l.len() > MAX_ENTRIES || l.iter().any(|p| p.len() > MAX_ENTRY_LEN);
            assert!(over(&tl) || over(&sl), "refused within the caps: {e}");
        }
        Ok(None) => assert!(tl.is_empty() && sl.is_empty()),
        Ok(Some(f)) => {
            let segs: Vec<&str> = ty.split('.').collect();
            let type_ok = tl.is_empty()
                || (segs.len() <= 32
                    && tl.iter().any(|p| {
                        let pat: Vec<&str> = p.split('.').collect();
                        reference(&pat, &segs)
                    }));
            let source_ok = sl.is_empty() || source.is_some_and(|s| sl.contains(&s));
            assert_eq!(f.matches(ty, source), type_ok && source_ok, "{types:?} {sources:?} {ty:?} {source:?}");
        }
    }
});

//! Start-up warnings for variables that look like herald's but are not
//! (SPEC §8): a name that starts like a known one (`JWT_`, `REDIS_`, …) but
//! is not in [`VARS`] is most likely a typo, so it is named together with
//! the nearest known name. Nothing is refused: the warning is the help.

use super::vars::VARS;

/// Names others set that share a prefix with herald's (systemd's socket
/// activation): never a typo.
const FOREIGN: &[&str] = &["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"];

/// The unknown names among `names` that share a known variable's first
/// segment (`JWT_SECERT`), each with the nearest known variable.
pub fn typos(names: impl IntoIterator<Item = String>) -> Vec<(String, &'static str)> {
    let prefixes: Vec<String> = VARS
        .iter()
        .filter_map(|(name, _, _)| name.split_once('_').map(|(p, _)| format!("{p}_")))
        .collect();
    let mut out: Vec<(String, &'static str)> = names
        .into_iter()
        .filter(|n| !VARS.iter().any(|(known, _, _)| known == n) && !FOREIGN.contains(&n.as_str()))
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p.as_str())))
        .filter_map(|n| {
            let nearest = VARS
                .iter()
                .map(|(known, _, _)| *known)
                .min_by_key(|known| distance(&n, known))?;
            Some((n, nearest))
        })
        .collect();
    out.sort();
    out
}

/// Levenshtein distance between two ASCII-ish names.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_named_with_the_nearest_known_variable() {
        let names = [
            "JWT_SECERT",
            "REDIS_URLL",
            "JWT_SECRET",
            "PATH",
            "HOME",
            "ADMIN_TOKN",
        ];
        let got = typos(names.iter().map(|s| s.to_string()));
        assert_eq!(
            got,
            [
                ("ADMIN_TOKN".to_string(), "ADMIN_TOKEN"),
                ("JWT_SECERT".to_string(), "JWT_SECRET"),
                ("REDIS_URLL".to_string(), "REDIS_URL"),
            ]
        );
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}

//! `HERALD_ENV_FILE`: the environment file(s) herald's configuration came
//! from, read again on `SIGHUP` (a supervisor's `kill -HUP` cannot change a
//! running process's environment, so herald reads the file itself).
//!
//! Contract:
//! - [`parse`] reads the format systemd's `EnvironmentFile=` reads:
//!   `KEY=VALUE` lines; blank lines, lines starting with `#` or `;`, and
//!   lines without `=` are ignored; whitespace around keys and unquoted
//!   values is dropped; `'…'` is verbatim, `"…"` knows `\"`, `\\`, `\$`,
//!   `` \` `` (any other backslash stays), and both may span lines; an
//!   unquoted `\x` is `x`, and a backslash at the end of a line joins the
//!   next. A key that is not a valid name is skipped and reported (by name,
//!   never with its value). A later assignment of the same key wins.
//! - `HERALD_ENV_FILE` is a comma list of paths, read in order (a later file
//!   wins, as with several `EnvironmentFile=` lines); a path written `-/…`
//!   may be missing, as in systemd. It is read from the process environment
//!   only.
//! - [`Source::lookup`] lays the files' variables over the process
//!   environment (the files win, as `EnvironmentFile=` wins over
//!   `Environment=`), so start-up and `SIGHUP` validate the same inputs
//!   with the same [`Config::from_lookup`].

use std::collections::HashMap;

use super::{Config, ConfigError};

/// Where herald's variables come from: the process environment, and the
/// files named by `HERALD_ENV_FILE` when it is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// The raw `HERALD_ENV_FILE` value (`None` when unset or blank).
    pub env_file: Option<String>,
}

/// What the environment files said.
#[derive(Debug, Clone, Default)]
pub struct FileVars {
    pub vars: HashMap<String, String>,
    /// Lines skipped (bad key names), one sentence each; no value in them.
    pub notes: Vec<String>,
}

impl Source {
    /// `HERALD_ENV_FILE` from the process environment.
    pub fn from_env() -> Self {
        Self {
            env_file: std::env::var("HERALD_ENV_FILE")
                .ok()
                .filter(|v| !v.trim().is_empty()),
        }
    }

    /// Reads every named file; an unreadable one (unless written `-/…` and
    /// missing) is an error naming `HERALD_ENV_FILE`.
    pub fn read_files(&self) -> Result<FileVars, ConfigError> {
        let mut out = FileVars::default();
        let Some(list) = &self.env_file else {
            return Ok(out);
        };
        for entry in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (optional, path) = match entry.strip_prefix('-') {
                Some(p) => (true, p),
                None => (false, entry),
            };
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(ConfigError {
                        var: "HERALD_ENV_FILE",
                        message: format!("cannot read {path}: {e}"),
                    })
                }
            };
            let (vars, bad) = parse(&text);
            out.notes.extend(
                bad.into_iter().map(|k| {
                    format!("HERALD_ENV_FILE {path}: {k:?} is not a variable name; skipped")
                }),
            );
            out.vars.extend(vars);
        }
        Ok(out)
    }

    /// The process environment with `files` laid over it.
    pub fn lookup(files: &FileVars) -> impl Fn(&str) -> Option<String> + '_ {
        move |k| files.vars.get(k).cloned().or_else(|| std::env::var(k).ok())
    }

    /// Validates the configuration from the environment and the files (on
    /// `SIGHUP`). `Ok` carries the notes to log: skipped lines, and names
    /// in the files that look like a misspelt variable.
    pub fn load(&self) -> Result<(Config, Vec<String>), ConfigError> {
        let mut files = self.read_files()?;
        let cfg = Config::from_lookup(&Self::lookup(&files))?;
        for (name, nearest) in super::typos(files.vars.keys().cloned()) {
            files.notes.push(format!(
                "HERALD_ENV_FILE: {name} is not a herald variable (ignored); did you mean {nearest}?"
            ));
        }
        Ok((cfg, files.notes))
    }

    /// [`Source::load`] at start-up: an unreadable file is not fatal there
    /// (the supervisor already put its variables in the environment), so
    /// the environment alone is used and a note says why `SIGHUP` will not
    /// see the file.
    pub fn load_at_start(&self) -> Result<(Config, Vec<String>), ConfigError> {
        match self.read_files() {
            Ok(files) => {
                let cfg = Config::from_lookup(&Self::lookup(&files))?;
                Ok((cfg, files.notes))
            }
            Err(e) => {
                let cfg = Config::from_env()?;
                let note = format!(
                    "{e}: using the process environment alone; SIGHUP cannot re-read it until \
                     herald may read it"
                );
                Ok((cfg, vec![note]))
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum St {
    PreKey,
    Key,
    PreValue,
    Value,
    ValueEscape,
    Single,
    Double,
    DoubleEscape,
    Comment,
    CommentEscape,
}

fn is_newline(c: char) -> bool {
    c == '\n' || c == '\r'
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn valid_name(k: &str) -> bool {
    let mut b = k.bytes();
    matches!(b.next(), Some(c) if c == b'_' || c.is_ascii_alphabetic())
        && b.all(|c| c == b'_' || c.is_ascii_alphanumeric())
}

/// Parses an environment file (systemd's `EnvironmentFile=` rules, see the
/// module docs): the assignments in order, and the keys skipped as invalid.
pub fn parse(text: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let (mut key, mut value) = (String::new(), String::new());
    // Where trailing whitespace of the key or unquoted value starts.
    let (mut key_ws, mut value_ws): (Option<usize>, Option<usize>) = (None, None);
    let mut emit = |key: &mut String, value: &mut String, value_ws: &mut Option<usize>| {
        if let Some(at) = value_ws.take() {
            value.truncate(at);
        }
        let (k, v) = (std::mem::take(key), std::mem::take(value));
        if valid_name(&k) {
            out.push((k, v));
        } else {
            bad.push(k);
        }
    };
    let mut st = St::PreKey;
    for c in text.chars() {
        st = match st {
            St::PreKey if c == '#' || c == ';' => St::Comment,
            St::PreKey if is_space(c) => St::PreKey,
            St::PreKey => {
                key.push(c);
                key_ws = None;
                St::Key
            }
            St::Key if is_newline(c) => {
                key.clear();
                St::PreKey
            }
            St::Key if c == '=' => {
                if let Some(at) = key_ws.take() {
                    key.truncate(at);
                }
                value_ws = None;
                St::PreValue
            }
            St::Key => {
                key_ws = if is_space(c) {
                    key_ws.or(Some(key.len()))
                } else {
                    None
                };
                key.push(c);
                St::Key
            }
            St::PreValue if is_newline(c) => {
                emit(&mut key, &mut value, &mut value_ws);
                St::PreKey
            }
            St::PreValue if c == '\'' => St::Single,
            St::PreValue if c == '"' => St::Double,
            St::PreValue if c == '\\' => St::ValueEscape,
            St::PreValue if is_space(c) => St::PreValue,
            St::PreValue => {
                value.push(c);
                St::Value
            }
            St::Value if c == '\\' => {
                value_ws = None;
                St::ValueEscape
            }
            St::Value if is_newline(c) => {
                emit(&mut key, &mut value, &mut value_ws);
                St::PreKey
            }
            St::Value => {
                value_ws = if is_space(c) {
                    value_ws.or(Some(value.len()))
                } else {
                    None
                };
                value.push(c);
                St::Value
            }
            St::ValueEscape => {
                if !is_newline(c) {
                    value.push(c);
                }
                St::Value
            }
            St::Single if c == '\'' => St::PreValue,
            St::Single => {
                value.push(c);
                St::Single
            }
            St::Double if c == '"' => St::PreValue,
            St::Double if c == '\\' => St::DoubleEscape,
            St::Double => {
                value.push(c);
                St::Double
            }
            St::DoubleEscape => {
                if matches!(c, '"' | '\\' | '`' | '$') {
                    value.push(c);
                } else if c != '\n' {
                    value.push('\\');
                    value.push(c);
                }
                St::Double
            }
            St::Comment if c == '\\' => St::CommentEscape,
            St::Comment if is_newline(c) => St::PreKey,
            St::Comment => St::Comment,
            St::CommentEscape => St::Comment,
        };
    }
    if matches!(
        st,
        St::PreValue | St::Value | St::ValueEscape | St::Single | St::Double | St::DoubleEscape
    ) {
        emit(&mut key, &mut value, &mut value_ws);
    }
    (out, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> Vec<(String, String)> {
        parse(text).0
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn plain_lines_comments_and_blanks() {
        let text = "# a comment\n; another\n\nJWT_SECRET=abc\n  LOG_LEVEL = debug  \n#X=1\nno equals sign\nEMPTY=\n";
        assert_eq!(
            vars(text),
            kv(&[("JWT_SECRET", "abc"), ("LOG_LEVEL", "debug"), ("EMPTY", "")])
        );
    }

    #[test]
    fn quotes_and_escapes() {
        let text = concat!(
            "A='single $x \\n \"kept\"'\n",
            "B=\"double \\\"q\\\" \\\\ \\$ \\n\"\n",
            "C=un\\ quoted\\\\ x\n",
            "D=  interior   space kept  \n",
            "E=\"spans\nlines\"\n",
            "F=joined \\\nline\n",
            "G=a#not-a-comment\n",
            "H=\"tail\"  \n",
        );
        assert_eq!(
            vars(text),
            kv(&[
                ("A", "single $x \\n \"kept\""),
                ("B", "double \"q\" \\ $ \\n"),
                ("C", "un quoted\\ x"),
                ("D", "interior   space kept"),
                ("E", "spans\nlines"),
                ("F", "joined line"),
                ("G", "a#not-a-comment"),
                ("H", "tail"),
            ])
        );
    }

    #[test]
    fn crlf_last_line_without_newline_and_later_wins() {
        let (v, _) = parse("A=1\r\nB=2\r\nA=3");
        assert_eq!(v, kv(&[("A", "1"), ("B", "2"), ("A", "3")]));
        let files = FileVars {
            vars: v.into_iter().collect(),
            notes: vec![],
        };
        assert_eq!(files.vars["A"], "3");
    }

    #[test]
    fn bad_names_are_reported_without_values() {
        let (v, bad) = parse("1BAD=secret\nGOOD=1\nexport X=2\n");
        assert_eq!(v, kv(&[("GOOD", "1")]));
        assert_eq!(bad, vec!["1BAD".to_string(), "export X".to_string()]);
    }

    #[test]
    fn files_in_order_optional_missing_and_unreadable() {
        let dir = std::env::temp_dir().join(format!("herald-envfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.env"), dir.join("b.env"));
        std::fs::write(&a, "X=from-a\nY=a\n").unwrap();
        std::fs::write(&b, "X=from-b\n").unwrap();
        let missing = dir.join("missing.env");
        let src = Source {
            env_file: Some(format!(
                "{}, -{} ,{}",
                a.display(),
                missing.display(),
                b.display()
            )),
        };
        let files = src.read_files().unwrap();
        assert_eq!(files.vars["X"], "from-b");
        assert_eq!(files.vars["Y"], "a");
        let src = Source {
            env_file: Some(missing.display().to_string()),
        };
        let e = src.read_files().unwrap_err();
        assert_eq!(e.var, "HERALD_ENV_FILE");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Slurm's config-file syntax, as `src/common/parse_config.c` reads it: logical lines, then
//! `Key=Value` pairs.
//!
//! Per physical line, a `#` preceded by an even number of backslashes starts a comment. A line
//! that then ends (trailing whitespace aside) in an odd number of backslashes continues on the
//! next one: the last backslash and what follows it are dropped and the next line is appended
//! as is. On the joined line `\X` stands for `X`. A key is letters, digits, `_` and `.`; a value
//! is double-quoted or runs to the next whitespace. `include PATH` is a directive, not a pair.

use super::hostlist::quote;

/// A logical line: physical lines joined at continuations.
pub(super) struct Line {
    /// 1-based number of its first physical line.
    pub number: usize,
    /// Comments stripped, continuations joined, escapes removed.
    pub text: String,
}

/// One `Key=Value`.
pub(super) struct Pair {
    /// The key as written.
    pub key: String,
    /// The value, quotes removed.
    pub value: String,
}

/// What a logical line says.
pub(super) enum Statement {
    /// `include PATH`.
    Include(String),
    /// Zero or more pairs.
    Pairs(Vec<Pair>),
}

/// Splits text into logical lines, dropping those left empty.
pub(super) fn logical_lines(text: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut pending: Option<Line> = None;
    for (i, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let code = strip_comment(raw);
        let (code, continues) = strip_continuation(code);
        let line = pending.get_or_insert_with(|| Line {
            number: i + 1,
            text: String::new(),
        });
        line.text.push_str(code);
        if !continues {
            let mut line = pending.take().expect("just inserted");
            line.text = strip_escapes(&line.text);
            if !line.text.trim().is_empty() {
                lines.push(line);
            }
        }
    }
    if let Some(mut line) = pending {
        line.text = strip_escapes(&line.text);
        if !line.text.trim().is_empty() {
            lines.push(line);
        }
    }
    lines
}

/// Cuts at the first `#` preceded by an even number of backslashes.
fn strip_comment(line: &str) -> &str {
    let mut backslashes = 0usize;
    for (i, b) in line.bytes().enumerate() {
        match b {
            b'#' if backslashes % 2 == 0 => return &line[..i],
            b'\\' => backslashes += 1,
            _ => backslashes = 0,
        }
    }
    line
}

/// Drops a continuation backslash (and the whitespace after it); says whether there was one.
fn strip_continuation(line: &str) -> (&str, bool) {
    let trimmed = line.trim_end_matches(|c: char| c.is_ascii_whitespace());
    let backslashes = trimmed.bytes().rev().take_while(|&b| b == b'\\').count();
    if backslashes % 2 == 1 {
        (&trimmed[..trimmed.len() - 1], true)
    } else {
        (line, false)
    }
}

/// `\X` becomes `X`; a lone trailing backslash is dropped.
fn strip_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

/// Reads a logical line's pairs (or its include directive). Errors are messages for the line.
pub(super) fn statement(text: &str) -> Result<Statement, String> {
    let trimmed = text.trim_start();
    if let Some(rest) = trimmed
        .get(..7)
        .filter(|w| w.eq_ignore_ascii_case("include"))
    {
        let after = &trimmed[rest.len()..];
        if after.starts_with(|c: char| c.is_ascii_whitespace()) {
            let path = after.trim();
            if path.is_empty() {
                return Err("include without a path".to_string());
            }
            return Ok(Statement::Include(path.to_string()));
        }
    }
    let bytes = text.as_bytes();
    let mut pairs = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == bytes.len() {
            return Ok(Statement::Pairs(pairs));
        }
        let key_start = i;
        while i < bytes.len() && is_key_byte(bytes[i]) {
            i += 1;
        }
        let key = &text[key_start..i];
        let rest = &text[i..];
        if key.is_empty() {
            return Err(format!("expected Key=Value at {}", quote(rest)));
        }
        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
            i += 1;
        }
        match bytes.get(i) {
            Some(b'=') => i += 1,
            Some(b'+' | b'-' | b'*' | b'/') if bytes.get(i + 1) == Some(&b'=') => {
                let op = &text[i..i + 2];
                return Err(format!(
                    "{key}{op}: operators are for scontrol, not config files"
                ));
            }
            _ => return Err(format!("{key}: expected '=' and a value")),
        }
        // Slurm's pattern allows blanks after '=' too (so `Key= Other=1` is Key="Other=1").
        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
            i += 1;
        }
        let value = if bytes.get(i) == Some(&b'"') {
            let start = i + 1;
            let Some(len) = text[start..].find('"') else {
                return Err(format!("{key}: unterminated quote"));
            };
            i = start + len + 1;
            &text[start..start + len]
        } else {
            let start = i;
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            &text[start..i]
        };
        pairs.push(Pair {
            key: key.to_string(),
            value: value.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn check(text: &str, expect: Expect) {
        let mut out = String::new();
        for line in logical_lines(text) {
            let parsed = match statement(&line.text) {
                Ok(Statement::Include(path)) => format!("include {path:?}"),
                Ok(Statement::Pairs(pairs)) => pairs
                    .iter()
                    .map(|p| format!("{}={:?}", p.key, p.value))
                    .collect::<Vec<_>>()
                    .join(" "),
                Err(e) => format!("error: {e}"),
            };
            out.push_str(&format!("{}: {parsed}\n", line.number));
        }
        expect.assert_eq(&out);
    }

    #[test]
    fn lines_and_pairs() {
        check(
            "# comment\n\
             ClusterName=hpc1 # trailing comment\n\
             \n\
             NodeName=a[1-2] \\\n  CPUs=4 \\\r\n  Gres=gpu:2\n\
             Reason=\"down for repair\" Key = value\n\
             Feature=a\\#b,c\n\
             Weight=1\\\\\n\
             include /etc/slurm/nodes.conf\n\
             Includes=x\n\
             =oops\n\
             Features+=x\n\
             State\n\
             Reason=\"open\n\
             Last=1\\",
            expect![[r#"
                2: ClusterName="hpc1"
                4: NodeName="a[1-2]" CPUs="4" Gres="gpu:2"
                7: Reason="down for repair" Key="value"
                8: Feature="a#b,c"
                9: Weight="1\\"
                10: include "/etc/slurm/nodes.conf"
                11: Includes="x"
                12: error: expected Key=Value at "=oops"
                13: error: Features+=: operators are for scontrol, not config files
                14: error: State: expected '=' and a value
                15: error: Reason: unterminated quote
                16: Last="1"
            "#]],
        );
    }
}

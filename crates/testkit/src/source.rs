//! The repository's own files read as text, for the tests that check the repository itself
//! rather than a binary: `tests/layers.rs` (no module cycle in any crate) and
//! `tests/citations.rs` (every path the docs and comments cite exists).

use std::path::{Path, PathBuf};

/// The root of the repository (the workspace), two levels above this crate.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/testkit sits two levels below the repository root")
        .to_path_buf()
}

/// A Rust source split in two texts of the source's length and lines: `code` with the comments
/// blanked and the string and character literals emptied (their quotes kept), and `comments`
/// with everything but the comments (doc comments included) blanked.
pub struct RustText {
    pub code: String,
    pub comments: String,
}

/// Splits `text` into code and comments, with a lexer of just enough Rust for that: line and
/// nested block comments, strings (escaped, byte and raw), characters told from lifetimes.
pub fn split_rust(text: &str) -> RustText {
    let bytes = text.as_bytes();
    let mut code = bytes.to_vec();
    let mut comments: Vec<u8> = bytes
        .iter()
        .map(|&b| if b == b'\n' { b } else { b' ' })
        .collect();
    let mut at = 0;
    while at < bytes.len() {
        let Some((end, is_comment)) = literal_or_comment(bytes, at) else {
            at += 1;
            continue;
        };
        for i in (at..end).filter(|&i| bytes[i] != b'\n') {
            if is_comment {
                (comments[i], code[i]) = (bytes[i], b' ');
            } else if i != at && i != end - 1 {
                code[i] = b' ';
            }
        }
        at = end;
    }
    // Only whole runs between ASCII delimiters were blanked, so both are still UTF-8.
    let (code, comments) = (String::from_utf8(code), String::from_utf8(comments));
    let utf8 = "blanking keeps UTF-8";
    RustText {
        code: code.expect(utf8),
        comments: comments.expect(utf8),
    }
}

/// The comment or literal starting at `at`: its end and whether it is a comment.
fn literal_or_comment(bytes: &[u8], at: usize) -> Option<(usize, bool)> {
    let rest = &bytes[at..];
    let ident = |i: usize| bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_';
    // Where `needle` next starts from `from`, or the end of the text.
    let find = |from: usize, needle: &[u8]| {
        let tail = bytes.get(from..).unwrap_or_default();
        let found = tail.windows(needle.len()).position(|w| w == needle);
        found.map_or(bytes.len(), |i| from + i)
    };
    if rest.starts_with(b"//") {
        return Some((find(at, b"\n"), true));
    }
    if rest.starts_with(b"/*") {
        let (mut depth, mut i) = (0, at);
        while i + 1 < bytes.len() {
            match &bytes[i..i + 2] {
                b"/*" => (depth, i) = (depth + 1, i + 2),
                b"*/" if depth == 1 => return Some((i + 2, true)),
                b"*/" => (depth, i) = (depth - 1, i + 2),
                _ => i += 1,
            }
        }
        return Some((bytes.len(), true));
    }
    match rest[0] {
        b'"' => {
            let mut i = at + 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            Some(((i + 1).min(bytes.len()), false))
        }
        // A raw string (`r"…"`, `r#"…"#`, `br#"…"#`), not a raw identifier (`r#type`).
        b'r' if at == 0
            || !ident(at - 1)
            || bytes[at - 1] == b'b' && (at == 1 || !ident(at - 2)) =>
        {
            let hashes = rest[1..].iter().take_while(|&&b| b == b'#').count();
            let close = [b"\"".as_slice(), &rest[1..1 + hashes]].concat();
            let end = || find(at + 2 + hashes, &close) + close.len();
            (rest.get(1 + hashes) == Some(&b'"')).then(|| (end().min(bytes.len()), false))
        }
        b'\'' if rest.get(1) == Some(&b'\\') => {
            Some(((find(at + 3, b"'") + 1).min(bytes.len()), false))
        }
        // `'x'` is a character; `'a` (a lifetime or a label) is code.
        b'\'' => {
            let width = rest.get(1).map_or(1, |&b| b.leading_ones().max(1) as usize);
            (rest.get(1 + width) == Some(&b'\'')).then_some((at + width + 2, false))
        }
        _ => None,
    }
}

/// Every path a brace group names, nested groups included: `a/{b,c}.rs` is `a/b.rs` and
/// `a/c.rs`; `crate::{a, b::{c as d}}` is `crate::a` and `crate::b::c` (a rename dropped).
pub fn expand_braces(text: &str) -> Vec<String> {
    let Some(open) = text.find('{') else {
        return vec![text.split_whitespace().next().unwrap_or("").to_string()];
    };
    // The group's commas, then its closing brace, each a cut between two choices.
    let (mut depth, mut cuts) = (0, vec![open]);
    for (at, c) in text.char_indices().skip_while(|&(at, _)| at < open) {
        depth += i32::from(c == '{') - i32::from(c == '}');
        if depth == 0 || depth == 1 && c == ',' {
            cuts.push(at);
        }
        if depth == 0 {
            let (head, tail) = (&text[..open], &text[at + 1..]);
            let choices = cuts.windows(2).map(|cut| text[cut[0] + 1..cut[1]].trim());
            return choices
                .flat_map(|choice| expand_braces(&format!("{head}{choice}{tail}")))
                .collect();
        }
    }
    vec![text.to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the code and the comments of `source`, each with its blank runs read as one space.
    #[track_caller]
    fn check(source: &str, code: &str, comments: &str) {
        let split = split_rust(source);
        let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(words(&split.code), code, "code of {source:?}");
        assert_eq!(words(&split.comments), comments, "comments of {source:?}");
        let shape = |text: &str| (text.len(), text.lines().count());
        assert_eq!(shape(&split.code), shape(source), "lines of {source:?}");
        assert_eq!(shape(&split.comments), shape(source), "lines of {source:?}");
    }

    #[rustfmt::skip]
    #[test]
    fn code_and_comments_part() {
        check("a // b\nc",                   "a c",                  "// b");
        check("a /* b /* c */ d */ e",       "a e",                  "/* b /* c */ d */");
        check("a /* b\nc */ d",              "a d",                  "/* b c */");
        check(r#"x("\"//") // y"#,           r#"x(" ")"#,            "// y");
        check(r##"r#"a"b"# // c"##,          "r #",                  "// c");
        check(r#"b"//" // c"#,               r#"b" ""#,              "// c");
        check(r#"'"' // c"#,                 "' '",                  "// c");
        check(r"'\'' // c",                  "' '",                  "// c");
        check("fn f<'a>(x: &'a str) // c",   "fn f<'a>(x: &'a str)", "// c");
        check("r#type // c",                 "r#type",               "// c");
        check("'é' // c",                    "' '",                  "// c");
        check("/// doc\n//! inner\nfn f()",  "fn f()",               "/// doc //! inner");
    }

    #[test]
    fn brace_groups_expand() {
        let expanded = |text| expand_braces(text).join(" ");
        assert_eq!(expanded("a/{b,c}.rs"), "a/b.rs a/c.rs");
        assert_eq!(
            expanded("crate::{a, b::{c as d, *}}"),
            "crate::a crate::b::c crate::b::*"
        );
    }
}

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

/// A Rust source split in two texts of the same length and lines as the source: `code` with
/// every comment and the contents of every string and character literal blanked, and
/// `comments` with everything but the comments (doc comments included) blanked. Line `n` of
/// either is line `n` of the source.
#[derive(Debug, PartialEq, Eq)]
pub struct RustText {
    /// The code: keywords, names and punctuation, literals emptied, comments blanked.
    pub code: String,
    /// The comments alone, at their places.
    pub comments: String,
}

/// Splits `text` into code and comments. A lexer of just enough Rust for that: line and nested
/// block comments, strings (escaped, byte and raw), and character literals told apart from
/// lifetimes.
pub fn split_rust(text: &str) -> RustText {
    let bytes = text.as_bytes();
    let mut code = bytes.to_vec();
    let mut comments: Vec<u8> = bytes
        .iter()
        .map(|&b| if b == b'\n' { b'\n' } else { b' ' })
        .collect();
    let mut at = 0;
    while at < bytes.len() {
        let (end, is_comment) = match literal_or_comment(bytes, at) {
            Some(found) => found,
            None => {
                at += 1;
                continue;
            }
        };
        for i in at..end {
            if bytes[i] == b'\n' {
                continue;
            }
            if is_comment {
                comments[i] = bytes[i];
                code[i] = b' ';
            } else if i != at && i != end - 1 {
                // A literal keeps its delimiters in the code, so that `"..."` still reads as one
                // token; its contents go.
                code[i] = b' ';
            }
        }
        at = end;
    }
    // Only ASCII bytes were replaced, and only whole runs between ASCII delimiters, so both are
    // still UTF-8.
    RustText {
        code: String::from_utf8(code).expect("blanking keeps UTF-8"),
        comments: String::from_utf8(comments).expect("blanking keeps UTF-8"),
    }
}

/// The comment or literal starting at `at`, as its end and whether it is a comment.
fn literal_or_comment(bytes: &[u8], at: usize) -> Option<(usize, bool)> {
    let next = |offset: usize| bytes.get(at + offset).copied();
    let ident =
        |i: Option<usize>| i.is_some_and(|i| bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_');
    match bytes[at] {
        b'/' if next(1) == Some(b'/') => {
            let end = find(bytes, at, b"\n").unwrap_or(bytes.len());
            Some((end, true))
        }
        b'/' if next(1) == Some(b'*') => {
            let mut depth = 0;
            let mut i = at;
            while i < bytes.len() {
                if bytes[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if bytes[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        return Some((i, true));
                    }
                } else {
                    i += 1;
                }
            }
            Some((bytes.len(), true))
        }
        b'"' => {
            let mut i = at + 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            Some(((i + 1).min(bytes.len()), false))
        }
        // A raw string: `r"..."`, `r#"..."#`, `br#"..."#`; not a raw identifier (`r#type`).
        b'r' if !ident(at.checked_sub(1))
            || (bytes[at - 1] == b'b' && !ident(at.checked_sub(2))) =>
        {
            let hashes = bytes[at + 1..].iter().take_while(|&&b| b == b'#').count();
            if next(1 + hashes) != Some(b'"') {
                return None;
            }
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            let end = find(bytes, at + 2 + hashes, &close).map_or(bytes.len(), |i| i + close.len());
            Some((end, false))
        }
        b'\'' => {
            if next(1) == Some(b'\\') {
                let end = find(bytes, at + 3, b"'").map_or(bytes.len(), |i| i + 1);
                return Some((end, false));
            }
            // `'x'` is a character; `'a` (a lifetime or a label) is code.
            let width = next(1).map_or(1, utf8_width);
            (next(1 + width) == Some(b'\'')).then_some((at + width + 2, false))
        }
        _ => None,
    }
}

/// Where `needle` next occurs in `bytes` from `from`.
fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|i| from + i)
}

/// The length of the UTF-8 character whose first byte is `first`.
fn utf8_width(first: u8) -> usize {
    match first {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
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
        assert_eq!(split.code.len(), source.len(), "{source:?}");
        assert_eq!(split.comments.len(), source.len(), "{source:?}");
        assert_eq!(
            split.code.lines().count(),
            source.lines().count(),
            "{source:?}"
        );
    }

    #[rustfmt::skip]
    #[test]
    fn code_and_comments_part() {
        check("a // b\nc",                   "a c",                  "// b");
        check("a /* b /* c */ d */ e",       "a e",                  "/* b /* c */ d */");
        check("a /* b\nc */ d",              "a d",                  "/* b c */");
        check(r#"x("// no")"#,               r#"x(" ")"#,            "");
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
}

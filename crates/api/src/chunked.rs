//! Chunked request bodies (RFC 9112, section 7.1): decoding, resumable across reads.
//!
//! Like the head parser, the decoder keeps "incomplete" apart from "invalid": the caller reads
//! more on [`Progress::Partial`] and answers the error's status (then closes) on `Err`. The
//! chunk-size and trailer lines follow the grammar byte by byte, because two readers that
//! disagree on where a chunked body ends is how requests get smuggled.

use crate::http::{HttpError, Progress};
use crate::limits::{BODY_BYTES_MAX, CHUNKED_WIRE_BYTES_MAX, CHUNK_LINE_BYTES_MAX};

/// How far the decoding of one chunked body got, kept between reads so that each byte of the
/// wire is looked at about once however finely the body trickles in. A new request starts
/// from `ChunkedState::default()`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedState {
    /// Wire bytes already consumed: whole chunks, then whole trailer lines.
    position: usize,
    /// Whether the last (empty) chunk was seen and only trailer lines remain.
    in_trailers: bool,
}

/// Decodes the chunked body at the start of `wire` into `body`, resuming from `state` (and
/// clearing `body` when starting afresh). `wire` must only grow between calls for one body. On
/// completion returns how many wire bytes the body took, trailers included; trailer fields are
/// ignored.
pub fn decode_chunked(
    wire: &[u8],
    body: &mut Vec<u8>,
    state: &mut ChunkedState,
) -> Result<Progress<usize>, HttpError> {
    if *state == ChunkedState::default() {
        body.clear();
    }
    while !state.in_trailers {
        let Some((line_bytes, size)) = parse_chunk_line(&wire[state.position..])? else {
            return partial_chunked(wire);
        };
        if size == 0 {
            state.position += line_bytes;
            state.in_trailers = true;
            break;
        }
        if size > (BODY_BYTES_MAX - body.len()) as u64 {
            return Err(HttpError::BodyTooLarge);
        }
        let data_start = state.position + line_bytes;
        let data_end = data_start + size as usize;
        if wire.len() < data_end + 2 {
            return partial_chunked(wire);
        }
        if &wire[data_end..data_end + 2] != b"\r\n" {
            return Err(HttpError::InvalidChunk);
        }
        body.extend_from_slice(&wire[data_start..data_end]);
        state.position = data_end + 2;
    }
    // The trailer section: header lines up to an empty line.
    loop {
        let rest = &wire[state.position..];
        let Some(line_bytes) = rest.windows(2).position(|pair| pair == b"\r\n") else {
            return partial_line(wire, rest);
        };
        let line = &rest[..line_bytes];
        if line_bytes > CHUNK_LINE_BYTES_MAX || !(line.is_empty() || valid_field_line(line)) {
            return Err(HttpError::InvalidChunk);
        }
        state.position += line_bytes + 2;
        if line.is_empty() {
            break;
        }
    }
    if state.position > CHUNKED_WIRE_BYTES_MAX {
        return Err(HttpError::BodyTooLarge);
    }
    Ok(Progress::Complete(state.position))
}

/// Where the reading of a chunk-size line is (RFC 9112, section 7.1.1):
///
/// ```text
/// chunk-line     = chunk-size [ chunk-ext ] CRLF
/// chunk-size     = 1*HEXDIG
/// chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// chunk-ext-name = token
/// chunk-ext-val  = token / quoted-string
/// ```
///
/// BWS (spaces and tabs) is accepted exactly where the grammar puts it: before each `;`, after
/// it, and on both sides of `=`, since RFC 9110 (5.6.3) asks recipients to parse it even though
/// senders must not send it. So `1a ; name = "quoted value"` is valid, while blanks before the
/// line's end (`5 `, `5;a `) are not, as no rule ends in BWS. Only CRLF ends the line: a bare
/// LF, a CR not followed by LF, NUL and every other control byte are refused wherever they are
/// (inside a quoted string too), since a reader that took any of them otherwise would see
/// another body.
#[derive(Clone, Copy)]
enum ChunkLine {
    /// Before the size's first digit.
    SizeStart,
    /// In the size.
    Size,
    /// After the size, an extension's name (`name`) or its value, and `spaced` if BWS followed:
    /// then the line cannot end before another `;` (or `=` after a name).
    After { name: bool, spaced: bool },
    /// After `;`, before the extension's name.
    NameStart,
    /// In the extension's name.
    Name,
    /// After `=`, before the value.
    ValueStart,
    /// In a token value.
    Token,
    /// In a quoted-string value.
    Quoted,
    /// After a backslash in a quoted string.
    QuotedPair,
    /// After CR, which only LF may follow.
    Cr,
}

/// Reads the chunk-size line at the start of `rest`: its length with CRLF and the size, or
/// `None` while it is unfinished. A line is refused as soon as a byte breaks the grammar, and
/// once it is longer than `CHUNK_LINE_BYTES_MAX` (it is scanned again on every read until it
/// ends); a size beyond 64 bits is refused too.
fn parse_chunk_line(rest: &[u8]) -> Result<Option<(usize, u64)>, HttpError> {
    use ChunkLine::*;
    let mut size = 0u64;
    let mut state = SizeStart;
    for (index, &byte) in rest.iter().enumerate().take(CHUNK_LINE_BYTES_MAX) {
        // A byte that cannot continue the size, a name or a token ends it.
        let current = match state {
            Size if !byte.is_ascii_hexdigit() => After {
                name: false,
                spaced: false,
            },
            Name if !is_tchar(byte) => After {
                name: true,
                spaced: false,
            },
            Token if !is_tchar(byte) => After {
                name: false,
                spaced: false,
            },
            other => other,
        };
        state = match (current, byte) {
            (SizeStart | Size, _) if byte.is_ascii_hexdigit() => {
                let digit = char::from(byte).to_digit(16).expect("a hex digit");
                size = size
                    .checked_mul(16)
                    .and_then(|size| size.checked_add(u64::from(digit)))
                    .ok_or(HttpError::InvalidChunk)?;
                Size
            }
            (After { name, .. }, b' ' | b'\t') => After { name, spaced: true },
            (After { .. }, b';') => NameStart,
            (After { name: true, .. }, b'=') => ValueStart,
            (After { spaced: false, .. }, b'\r') => Cr,
            (NameStart | ValueStart, b' ' | b'\t') => current,
            (NameStart | Name, _) if is_tchar(byte) => Name,
            (ValueStart, b'"') => Quoted,
            (ValueStart | Token, _) if is_tchar(byte) => Token,
            (Quoted, b'"') => After {
                name: false,
                spaced: false,
            },
            (Quoted, b'\\') => QuotedPair,
            // qdtext: blanks, visible bytes but `"` and `\`, obs-text.
            (Quoted, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff) => Quoted,
            (QuotedPair, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff) => Quoted,
            (Cr, b'\n') => return Ok(Some((index + 1, size))),
            _ => return Err(HttpError::InvalidChunk),
        };
    }
    if rest.len() >= CHUNK_LINE_BYTES_MAX {
        return Err(HttpError::InvalidChunk);
    }
    Ok(None)
}

/// Whether `line` (without its CRLF) is a field line of the trailer section (RFC 9112, 5 and
/// 7.1.2): a token, `:`, then visible bytes and blanks only, so that a bare CR or LF, NUL or
/// another control byte cannot make it two lines to another reader.
fn valid_field_line(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&byte| byte == b':') else {
        return false;
    };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    let value_byte = |&byte: &u8| matches!(byte, b'\t' | b' '..=b'~' | 0x80..=0xff);
    !name.is_empty() && name.iter().all(|&byte| is_tchar(byte)) && value.iter().all(value_byte)
}

/// An unfinished trailer line: its length is bounded, since it is scanned again on every read
/// until it ends.
fn partial_line(wire: &[u8], line: &[u8]) -> Result<Progress<usize>, HttpError> {
    if line.len() > CHUNK_LINE_BYTES_MAX {
        return Err(HttpError::InvalidChunk);
    }
    partial_chunked(wire)
}

/// An unfinished chunked body is worth waiting for only while it fits its wire limit.
fn partial_chunked(wire: &[u8]) -> Result<Progress<usize>, HttpError> {
    if wire.len() >= CHUNKED_WIRE_BYTES_MAX {
        Err(HttpError::BodyTooLarge)
    } else {
        Ok(Progress::Partial)
    }
}

/// RFC 9110's `tchar`, the bytes of a token (5.6.2).
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `decode_chunked` should make of a wire, from a fresh state.
    #[derive(Debug, PartialEq)]
    enum Decoded<'a> {
        /// The whole wire is one body, decoded as this.
        Whole(&'a [u8]),
        /// A body, decoded as this, that ends after this many bytes of the wire.
        Ends(&'a [u8], usize),
        /// More wire is needed.
        Partial,
        /// The wire is refused.
        Fails(HttpError),
    }
    use Decoded::*;
    use HttpError::{BodyTooLarge, InvalidChunk};

    #[track_caller]
    fn check(wire: &[u8], expected: Decoded<'_>) {
        let mut body = Vec::new();
        let decoded = match decode_chunked(wire, &mut body, &mut ChunkedState::default()) {
            Ok(Progress::Complete(wire_bytes)) if wire_bytes == wire.len() => Whole(&body),
            Ok(Progress::Complete(wire_bytes)) => Ends(&body, wire_bytes),
            Ok(Progress::Partial) => Partial,
            Err(error) => Fails(error),
        };
        assert_eq!(
            decoded,
            expected,
            "wire {:?}",
            String::from_utf8_lossy(wire)
        );
    }

    #[rustfmt::skip]
    #[test]
    fn chunked_bodies() {
        check(b"0\r\n\r\n",                                   Whole(b""));
        check(b"5\r\nhello\r\n0\r\n\r\n",                     Whole(b"hello"));
        check(b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",            Whole(b"hello"));
        check(b"A\r\n0123456789\r\n0\r\n\r\n",                Whole(b"0123456789"));
        check(b"a\r\n0123456789\r\n0\r\n\r\n",                Whole(b"0123456789"));
        check(b"005\r\nhello\r\n0\r\n\r\n",                   Whole(b"hello"));
        // Extensions are checked and skipped, trailers checked and ignored.
        check(b"5;name=value\r\nhello\r\n0;last\r\n\r\n",     Whole(b"hello"));
        check(b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n", Whole(b"hello"));
        // Chunk data is opaque: CRLF inside it is data.
        check(b"4\r\n\r\n\r\n\r\n0\r\n\r\n",                  Whole(b"\r\n\r\n"));
        // Whatever follows the body is the next request, not counted.
        check(b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n", Ends(b"hello", 15));
        // Incomplete at every stage.
        check(b"",                                            Partial);
        check(b"5",                                           Partial);
        check(b"5\r",                                         Partial);
        check(b"5\r\nhel",                                    Partial);
        check(b"5\r\nhello",                                  Partial);
        check(b"5\r\nhello\r",                                Partial);
        check(b"5\r\nhello\r\n0\r\n",                         Partial);
        check(b"5\r\nhello\r\n0\r\nX: 1\r\n",                 Partial);
        check(b"0\r\n\r",                                     Partial);
        // Malformed.
        check(b"\r\nhello\r\n0\r\n\r\n",                      Fails(InvalidChunk));
        check(b"g\r\nhello\r\n0\r\n\r\n",                     Fails(InvalidChunk));
        check(b"-5\r\nhello\r\n0\r\n\r\n",                    Fails(InvalidChunk));
        check(b" 5\r\nhello\r\n0\r\n\r\n",                    Fails(InvalidChunk));
        check(b"5\r\nhelloX\r\n0\r\n\r\n",                    Fails(InvalidChunk));
        check(b"5\nhello\r\n0\r\n\r\n",                       Fails(InvalidChunk));
        check(b"5\r\nhello\r\n0\r\nno colon\r\n\r\n",         Fails(InvalidChunk));
        check(b"fffffffffffffffff\r\n",                       Fails(InvalidChunk));
        // Too large, decoded or on the wire.
        check(b"1001\r\n",                                    Fails(BodyTooLarge));
        check(b"ffffffffffffff\r\n",                          Fails(BodyTooLarge));
        let two_halves = [&b"800\r\n"[..], &[b'x'; 0x800], b"\r\n801\r\n"].concat();
        check(&two_halves,                                    Fails(BodyTooLarge));
        // Size and trailer lines are bounded, complete or not.
        let long_extension = [&b"1;"[..], &[b'e'; CHUNK_LINE_BYTES_MAX - 1]].concat();
        check(&long_extension,                                Fails(InvalidChunk));
        check(&[&long_extension[..], b"\r\nx\r\n0\r\n\r\n"].concat(), Fails(InvalidChunk));
        let long_trailer = [&b"0\r\nX-T: "[..], &[b't'; CHUNK_LINE_BYTES_MAX - 4]].concat();
        check(&long_trailer,                                  Fails(InvalidChunk));
        let extension = [&b"1;"[..], &[b'e'; CHUNK_LINE_BYTES_MAX - 4], b"\r\nx\r\n0\r\n\r\n"].concat();
        check(&extension,                                     Whole(b"x"));
    }

    #[rustfmt::skip]
    #[test]
    fn chunk_extensions() {
        // The story of this table: extensions were skipped up to the first CR whatever they
        // held, so `26;a\nb\r\n` was read as a size line while a bare `26\n` was refused, the
        // disagreement between parsers that the "funky chunks" research turned into request
        // smuggling. Now the whole line follows RFC 9112 (section 7.1.1), see `ChunkLine`.
        check(b"5;name=value\r\nhello\r\n0\r\n\r\n",          Whole(b"hello"));
        check(b"5;a\r\nhello\r\n0\r\n\r\n",                   Whole(b"hello"));
        check(b"5;a;b=c;d\r\nhello\r\n0\r\n\r\n",             Whole(b"hello"));
        check(b"5;name=\"quoted value\"\r\nhello\r\n0\r\n\r\n", Whole(b"hello"));
        check(b"5;q=\"\"\r\nhello\r\n0\r\n\r\n",              Whole(b"hello"));
        check(b"5;q=\"a \\\"pair\\\" \\\\ \\\t\"\r\nhello\r\n0\r\n\r\n", Whole(b"hello"));
        check(b"5;q=\"caf\xc3\xa9\"\r\nhello\r\n0\r\n\r\n",   Whole(b"hello"));
        check(b"5;!#$%&'*+-.^_`|~09AZaz=!#$%&'*+-.^_`|~09AZaz\r\nhello\r\n0\r\n\r\n", Whole(b"hello"));
        // Bad whitespace where the grammar has BWS: before `;`, after it, around `=`.
        check(b"5 ;a\r\nhello\r\n0\r\n\r\n",                  Whole(b"hello"));
        check(b"5 ; name = \"quoted value\"\r\nhello\r\n0\r\n\r\n", Whole(b"hello"));
        check(b"5\t;\ta\t=\tb ;c\r\nhello\r\n0\r\n\r\n",      Whole(b"hello"));
        check(b"5\r\nhello\r\n0;last=\"x\"\r\n\r\n",          Whole(b"hello"));
        // Unfinished lines wait, as long as nothing so far breaks the grammar.
        check(b"5;",                                          Partial);
        check(b"5;a",                                         Partial);
        check(b"5;a ",                                        Partial);
        check(b"5;a=",                                        Partial);
        check(b"5;a= ",                                       Partial);
        check(b"5;a=\"x",                                     Partial);
        check(b"5;a=\"x\\",                                   Partial);
        check(b"5;a=\"x\"",                                   Partial);
        check(b"5 ",                                          Partial);
        check(b"5;a\r",                                       Partial);
        // Only CRLF ends the line: a bare LF or CR anywhere in it is refused.
        check(b"26;a\nb\r\n",                                 Fails(InvalidChunk));
        check(b"26\n",                                        Fails(InvalidChunk));
        check(b"5;a=b\nhello\r\n0\r\n\r\n",                   Fails(InvalidChunk));
        check(b"5;a\rb\r\nhello\r\n0\r\n\r\n",                Fails(InvalidChunk));
        check(b"5\r\r\nhello\r\n0\r\n\r\n",                   Fails(InvalidChunk));
        check(b"5;a=\"x\ny\"\r\nhello\r\n0\r\n\r\n",          Fails(InvalidChunk));
        check(b"5;a=\"x\r\nhello\r\n0\r\n\r\n",               Fails(InvalidChunk));
        check(b"5\r\nhello\r\n0;a\nb\r\n\r\n",                Fails(InvalidChunk));
        // Control bytes, as soon as they arrive.
        check(b"5;a\0",                                       Fails(InvalidChunk));
        check(b"5;a\0b\r\nhello\r\n0\r\n\r\n",                Fails(InvalidChunk));
        check(b"5;a=\x01\r\nhello\r\n0\r\n\r\n",              Fails(InvalidChunk));
        check(b"5;a=b\x7f\r\nhello\r\n0\r\n\r\n",             Fails(InvalidChunk));
        check(b"5;a=\"\0\"\r\nhello\r\n0\r\n\r\n",            Fails(InvalidChunk));
        check(b"5;a=\"\\\0\"\r\nhello\r\n0\r\n\r\n",          Fails(InvalidChunk));
        check(b"5;a=\"\x7f\"\r\nhello\r\n0\r\n\r\n",          Fails(InvalidChunk));
        check(b"5;\x80\r\nhello\r\n0\r\n\r\n",                Fails(InvalidChunk));
        // Whitespace where the grammar has none: before the line's end, inside a size.
        check(b"5 \r\nhello\r\n0\r\n\r\n",                    Fails(InvalidChunk));
        check(b"5;a \r\nhello\r\n0\r\n\r\n",                  Fails(InvalidChunk));
        check(b"5;a=b \r\nhello\r\n0\r\n\r\n",                Fails(InvalidChunk));
        check(b"5;a=\"b\" \r\nhello\r\n0\r\n\r\n",            Fails(InvalidChunk));
        check(b"0 5\r\nhello\r\n0\r\n\r\n",                   Fails(InvalidChunk));
        // Names and values that are not tokens or quoted strings.
        check(b"5;\r\nhello\r\n0\r\n\r\n",                    Fails(InvalidChunk));
        check(b"5;;a\r\nhello\r\n0\r\n\r\n",                  Fails(InvalidChunk));
        check(b"5;=b\r\nhello\r\n0\r\n\r\n",                  Fails(InvalidChunk));
        check(b"5;a=\r\nhello\r\n0\r\n\r\n",                  Fails(InvalidChunk));
        check(b"5;a==b\r\nhello\r\n0\r\n\r\n",                Fails(InvalidChunk));
        check(b"5;a=b=c\r\nhello\r\n0\r\n\r\n",               Fails(InvalidChunk));
        check(b"5;a=b c\r\nhello\r\n0\r\n\r\n",               Fails(InvalidChunk));
        check(b"5;a/b\r\nhello\r\n0\r\n\r\n",                 Fails(InvalidChunk));
        check(b"5;a=b/c\r\nhello\r\n0\r\n\r\n",               Fails(InvalidChunk));
        check(b"5;a=\"x\"y\r\nhello\r\n0\r\n\r\n",            Fails(InvalidChunk));
        check(b"5;a=x\"y\"\r\nhello\r\n0\r\n\r\n",            Fails(InvalidChunk));
        check(b"5=a\r\nhello\r\n0\r\n\r\n",                   Fails(InvalidChunk));
        check(b"5,a\r\nhello\r\n0\r\n\r\n",                   Fails(InvalidChunk));
        check(b"5 a\r\nhello\r\n0\r\n\r\n",                   Fails(InvalidChunk));
    }

    #[rustfmt::skip]
    #[test]
    fn trailer_fields() {
        check(b"0\r\nX-T: v\r\n\r\n",                         Whole(b""));
        check(b"0\r\nX-T:\r\n\r\n",                           Whole(b""));
        check(b"0\r\nX-T:\tv w \t\r\n\r\n",                   Whole(b""));
        check(b"0\r\nX-T: caf\xc3\xa9\r\n\r\n",               Whole(b""));
        // Like the size lines, trailer lines end at CRLF only and hold no control byte.
        check(b"0\r\nX-T: a\nb\r\n\r\n",                      Fails(InvalidChunk));
        check(b"0\r\nX-T: a\rb\r\n\r\n",                      Fails(InvalidChunk));
        check(b"0\r\nX-T: a\0\r\n\r\n",                       Fails(InvalidChunk));
        check(b"0\r\nX-T: \x7f\r\n\r\n",                      Fails(InvalidChunk));
        check(b"0\r\n: v\r\n\r\n",                            Fails(InvalidChunk));
        check(b"0\r\nX T: v\r\n\r\n",                         Fails(InvalidChunk));
        check(b"0\r\nX-T : v\r\n\r\n",                        Fails(InvalidChunk));
        check(b"0\r\n X-T: v\r\n\r\n",                        Fails(InvalidChunk));
    }

    #[test]
    fn chunked_body_of_one_byte_chunks_fits() {
        let mut wire = b"1\r\nx\r\n".repeat(BODY_BYTES_MAX);
        wire.extend_from_slice(b"0\r\n\r\n");
        check(&wire, Whole(&[b'x'; BODY_BYTES_MAX]));
    }
}

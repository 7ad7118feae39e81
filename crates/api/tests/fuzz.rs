//! Property tests (stable toolchain, proptest) of the request parser and the body validator of
//! `rinha-api`, each against an independent reference written here from the rules of the
//! contract and RFC 9112, not from the code under test. They are the only property tests of
//! these parsers.
//!
//! - `parse_head`: arbitrary bytes never panic; generated heads (framing, persistence and Host
//!   headers, in any case, repeated, with lists) get exactly the framing or the error status the
//!   reference predicts; mutated requests are never accepted with ambiguous framing; a valid
//!   head is found whole and every proper prefix of it waits for more.
//! - `decode_chunked`: arbitrary bytes never panic; generated chunked bodies decode to their
//!   data whatever the read boundaries, and fed byte by byte every proper prefix is incomplete;
//!   arbitrary bytes decode the same whether they arrive at once or in pieces.
//! - `parse_transaction`: generated bodies (every field kind, escapes, duplicates, unknown
//!   fields) are accepted exactly when the reference says so, with the same values; arbitrary
//!   bytes and mutations of valid bodies never panic and are never accepted when invalid.

use std::fmt;

use proptest::prelude::*;
use rinha_api::body::parse_transaction;
use rinha_api::chunked::{decode_chunked, ChunkedState};
use rinha_api::http::{parse_head, BodyLength, HttpError, Progress};

const BODY_BYTES_MAX: u64 = rinha_api::limits::BODY_BYTES_MAX as u64;

/// Cases per property: `cases`, or `RINHA_FUZZ_CASES` for a longer run on demand.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("RINHA_FUZZ_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Request heads.

/// What the reference expects of a head: its body length and persistence, or an error status.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Accepted {
        body_length: BodyLength,
        keep_alive: bool,
    },
    Status(&'static str),
}

/// One generated header field: its name as sent, and its value.
#[derive(Debug, Clone)]
struct Field {
    name: String,
    value: String,
}

fn field_strategy() -> impl Strategy<Value = Field> {
    let names = prop::sample::select(vec![
        "Content-Length",
        "content-length",
        "CONTENT-LENGTH",
        "Transfer-Encoding",
        "transfer-encoding",
        "Connection",
        "connection",
        "Host",
        "X-Padding",
    ]);
    let values = prop::sample::select(vec![
        "0",
        "5",
        "10",
        "4096",
        "4097",
        "007",
        "5, 5",
        "5,6",
        "+5",
        "-1",
        "0x5",
        "5 5",
        "",
        " 12 ",
        "99999999999999999999999",
        "chunked",
        "Chunked",
        "CHUNKED",
        "chunked, chunked",
        "gzip, chunked",
        "chunked, gzip",
        "identity",
        "xchunked",
        " chunked ",
        "close",
        "keep-alive",
        "Keep-Alive, close",
        "upgrade",
        "localhost",
    ]);
    (names, values).prop_map(|(name, value)| Field {
        name: name.to_owned(),
        value: value.to_owned(),
    })
}

/// The reference: RFC 9112's framing rules as the contract applies them, then its Host rule
/// (section 3.2): exactly one Host, which an HTTP/1.0 request may leave out.
fn reference_head(http_1_0: bool, fields: &[Field]) -> Expected {
    let hosts = fields
        .iter()
        .filter(|field| field.name.eq_ignore_ascii_case("host"))
        .count();
    match reference_framing(http_1_0, fields) {
        Expected::Accepted { .. } if hosts > 1 || (hosts == 0 && !http_1_0) => {
            Expected::Status("400")
        }
        expected => expected,
    }
}

/// RFC 9112's framing rules as the contract applies them.
fn reference_framing(http_1_0: bool, fields: &[Field]) -> Expected {
    let mut lengths = Vec::new();
    let mut codings = Vec::new();
    let mut transfer_encoding = false;
    let (mut close, mut keep_alive) = (false, false);
    for field in fields {
        let items = field
            .value
            .split(',')
            .map(|item| item.trim_matches([' ', '\t']));
        match field.name.to_ascii_lowercase().as_str() {
            "content-length" => lengths.extend(items.map(str::to_owned)),
            "transfer-encoding" => {
                transfer_encoding = true;
                codings.extend(items.map(str::to_ascii_lowercase));
            }
            "connection" => {
                for item in items {
                    close |= item.eq_ignore_ascii_case("close");
                    keep_alive |= item.eq_ignore_ascii_case("keep-alive");
                }
            }
            _ => {}
        }
    }
    let keep_alive = if http_1_0 {
        keep_alive && !close
    } else {
        !close
    };
    if !lengths.is_empty() && transfer_encoding {
        return Expected::Status("400");
    }
    if transfer_encoding {
        let chunked = codings.iter().filter(|coding| *coding == "chunked").count();
        if http_1_0 || codings.last().map(String::as_str) != Some("chunked") || chunked > 1 {
            return Expected::Status("400");
        }
        if codings.len() > 1 {
            return Expected::Status("501");
        }
        return Expected::Accepted {
            body_length: BodyLength::Chunked,
            keep_alive,
        };
    }
    let mut length = None;
    for item in &lengths {
        if item.is_empty() || !item.bytes().all(|byte| byte.is_ascii_digit()) {
            return Expected::Status("400");
        }
        // Too many digits for any counter is simply too large.
        let value = item.parse::<u64>().unwrap_or(u64::MAX);
        if length.is_some_and(|previous| previous != value) {
            return Expected::Status("400");
        }
        length = Some(value);
    }
    match length {
        Some(length) if length > BODY_BYTES_MAX => Expected::Status("413"),
        length => Expected::Accepted {
            body_length: BodyLength::Bytes(length.unwrap_or(0) as usize),
            keep_alive,
        },
    }
}

fn render_head(method: &str, http_1_0: bool, fields: &[Field]) -> Vec<u8> {
    let version = if http_1_0 { "HTTP/1.0" } else { "HTTP/1.1" };
    let mut text = format!("{method} /clientes/1/transacoes?x=1 {version}\r\n");
    for field in fields {
        text.push_str(&format!("{}: {}\r\n", field.name, field.value));
    }
    text.push_str("\r\n");
    text.into_bytes()
}

fn status_of(error: HttpError) -> &'static str {
    let line = std::str::from_utf8(error.status().line()).expect("ASCII status line");
    let code = &line["HTTP/1.1 ".len().."HTTP/1.1 ".len() + 3];
    ["400", "413", "431", "501", "505", "417", "408"]
        .into_iter()
        .find(|known| *known == code)
        .unwrap_or("other")
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn generated_heads_match_the_reference(
        post in any::<bool>(),
        http_1_0 in any::<bool>(),
        with_host in any::<bool>(),
        fields in prop::collection::vec(field_strategy(), 0..6),
    ) {
        let mut fields = fields;
        if with_host {
            fields.insert(0, Field { name: "Host".to_owned(), value: "localhost".to_owned() });
        }
        let method = if post { "POST" } else { "GET" };
        let bytes = render_head(method, http_1_0, &fields);
        let expected = reference_head(http_1_0, &fields);
        let got = match parse_head(&bytes) {
            Ok(Progress::Complete(head)) => {
                prop_assert_eq!(head.head_bytes, bytes.len());
                prop_assert_eq!(head.path, "/clientes/1/transacoes");
                prop_assert_eq!(head.http_1_0, http_1_0);
                Expected::Accepted { body_length: head.body_length, keep_alive: head.keep_alive }
            }
            Ok(Progress::Partial) => panic!("a complete head was taken as partial"),
            Err(error) => Expected::Status(status_of(error)),
        };
        prop_assert_eq!(got, expected, "{}", String::from_utf8_lossy(&bytes));
    }

    /// Neither the head parser nor the chunked decoder panics on any bytes, and a head the
    /// parser accepts from them is never ambiguous.
    #[test]
    fn arbitrary_bytes_never_panic_the_head_parser(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut body = Vec::new();
        let _ = decode_chunked(&bytes, &mut body, &mut ChunkedState::default());
        if let Ok(Progress::Complete(head)) = parse_head(&bytes) {
            check_unambiguous(&bytes[..head.head_bytes], head.body_length)?;
        }
    }

    #[test]
    fn mutated_requests_are_never_accepted_with_ambiguous_framing(
        fields in prop::collection::vec(field_strategy(), 0..5),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut bytes = render_head("POST", false, &fields);
        apply_edits(&mut bytes, edits);
        if bytes.is_empty() {
            return Ok(());
        }
        if let Ok(Progress::Complete(head)) = parse_head(&bytes) {
            check_unambiguous(&bytes[..head.head_bytes], head.body_length)?;
        }
    }
}

proptest! {
    // Each case parses every prefix of its head, so it runs fewer cases than the rest.
    #![proptest_config(config(256))]

    /// A valid request head is recognised whole, and each proper prefix waits for more.
    #[test]
    fn complete_heads_are_found_at_any_split(
        path in "/[a-z0-9/]{0,40}",
        extra in prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,40}"), 0..8),
    ) {
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (name, value) in &extra {
            // Keep clear of the fields with framing meaning; those have their own tables.
            let name = format!("X-{name}");
            head.push_str(&format!("{name}: {}\r\n", value.trim()));
        }
        head.push_str("\r\n");
        let bytes = head.as_bytes();
        match parse_head(bytes) {
            Ok(Progress::Complete(parsed)) => {
                prop_assert_eq!(parsed.head_bytes, bytes.len());
                prop_assert_eq!(parsed.path, path.as_str());
            }
            other => prop_assert!(false, "{:?}", other),
        }
        for end in 0..bytes.len() {
            prop_assert_eq!(parse_head(&bytes[..end]), Ok(Progress::Partial));
        }
    }
}

/// A second, naive reading of an accepted head: it must not carry both framings, and the
/// framing the parser chose must be the one the head names.
fn check_unambiguous(head: &[u8], body_length: BodyLength) -> Result<(), TestCaseError> {
    let (mut lengths, mut transfer_encoding) = (Vec::new(), false);
    for line in head.split(|&byte| byte == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&byte| byte == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            lengths.push(String::from_utf8_lossy(value).trim().to_owned());
        }
        transfer_encoding |= name.eq_ignore_ascii_case(b"transfer-encoding");
    }
    let text = String::from_utf8_lossy(head);
    prop_assert!(
        lengths.is_empty() || !transfer_encoding,
        "both framings accepted: {:?}",
        text
    );
    match body_length {
        BodyLength::Chunked => prop_assert!(transfer_encoding, "chunked without TE: {:?}", text),
        BodyLength::Bytes(0) => {}
        BodyLength::Bytes(length) => {
            prop_assert!(!lengths.is_empty(), "a length from nowhere: {:?}", text);
            for item in lengths.iter().flat_map(|value| value.split(',')) {
                prop_assert_eq!(
                    item.trim().parse::<usize>().ok(),
                    Some(length),
                    "{:?}",
                    text
                );
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Chunked bodies.

/// Decodes `wire` fed in pieces ending at `cuts` (then whole), as reads would deliver it.
fn decode_in_pieces(wire: &[u8], cuts: &[usize]) -> (Result<Progress<usize>, HttpError>, Vec<u8>) {
    let mut state = ChunkedState::default();
    let mut body = Vec::new();
    let mut ends: Vec<usize> = cuts.iter().map(|cut| cut % (wire.len() + 1)).collect();
    ends.sort_unstable();
    ends.push(wire.len());
    for end in ends {
        match decode_chunked(&wire[..end], &mut body, &mut state) {
            Ok(Progress::Partial) => continue,
            done => return (done, body),
        }
    }
    (Ok(Progress::Partial), body)
}

fn chunk_strategy() -> impl Strategy<Value = (Vec<u8>, bool)> {
    (prop::collection::vec(any::<u8>(), 1..300), any::<bool>())
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn chunked_bodies_decode_whatever_the_read_boundaries(
        chunks in prop::collection::vec(chunk_strategy(), 0..8),
        trailers in prop::collection::vec("[A-Za-z-]{1,10}: [a-z0-9]{0,10}", 0..3),
        upper_hex in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        after in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut wire = Vec::new();
        let mut data = Vec::new();
        for (chunk, extension) in &chunks {
            let size = if upper_hex { format!("{:X}", chunk.len()) } else { format!("{:x}", chunk.len()) };
            wire.extend_from_slice(size.as_bytes());
            if *extension {
                wire.extend_from_slice(b";name=value");
            }
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(b"\r\n");
            data.extend_from_slice(chunk);
        }
        wire.extend_from_slice(b"0\r\n");
        for trailer in &trailers {
            wire.extend_from_slice(trailer.as_bytes());
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"\r\n");
        let encoded = wire.len();
        // Whatever follows (a pipelined request) is not part of the body.
        wire.extend_from_slice(&after);
        let (result, body) = decode_in_pieces(&wire, &cuts);
        if data.len() as u64 > BODY_BYTES_MAX {
            prop_assert_eq!(result, Err(HttpError::BodyTooLarge));
        } else {
            prop_assert_eq!(result, Ok(Progress::Complete(encoded)));
            prop_assert_eq!(body, data);
        }
    }

    #[test]
    fn arbitrary_chunked_bytes_decode_alike_at_once_and_in_pieces(
        wire in prop::collection::vec(prop::sample::select(b"0123456789abcdefXx;=: \r\n".to_vec()), 0..200),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = decode_in_pieces(&wire, &[]);
        let pieces = decode_in_pieces(&wire, &cuts);
        prop_assert_eq!(&whole.0, &pieces.0);
        if let Ok(Progress::Complete(used)) = whole.0 {
            prop_assert!(used <= wire.len());
            prop_assert_eq!(whole.1, pieces.1);
        }
    }
}

proptest! {
    // Each case decodes every prefix of its wire form, so it runs fewer cases than the rest.
    #![proptest_config(config(256))]

    /// Any body, cut into any chunks, decodes back to itself, and every proper prefix of its
    /// wire form is incomplete rather than wrong.
    #[test]
    fn chunked_round_trip(
        body in prop::collection::vec(any::<u8>(), 0..BODY_BYTES_MAX as usize),
        cuts in prop::collection::vec(1usize..600, 0..12),
    ) {
        let mut wire = Vec::new();
        let mut rest = &body[..];
        for cut in cuts {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(cut.min(rest.len()));
            wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(b"\r\n");
            rest = tail;
        }
        if !rest.is_empty() {
            wire.extend_from_slice(format!("{:X}\r\n", rest.len()).as_bytes());
            wire.extend_from_slice(rest);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let mut decoded = Vec::new();
        let whole = decode_chunked(&wire, &mut decoded, &mut ChunkedState::default());
        prop_assert_eq!(whole, Ok(Progress::Complete(wire.len())));
        prop_assert_eq!(&decoded, &body);
        // Fed byte by byte, resuming each time, the verdicts are the same.
        let mut state = ChunkedState::default();
        decoded.clear();
        for end in 0..wire.len() {
            let partial = decode_chunked(&wire[..end], &mut decoded, &mut state);
            prop_assert_eq!(partial, Ok(Progress::Partial));
        }
        let last = decode_chunked(&wire, &mut decoded, &mut state);
        prop_assert_eq!(last, Ok(Progress::Complete(wire.len())));
        prop_assert_eq!(&decoded, &body);
    }
}

// ---------------------------------------------------------------------------------------------
// Transaction bodies.

/// A generated JSON value, rendered to text, with what the reference knows about it.
#[derive(Debug, Clone)]
enum Json {
    /// An integer literal, as written (its value may not fit 64 bits).
    Integer(String),
    /// Any other number literal (fraction or exponent).
    Float(String),
    /// A string: its decoded text and how it is written.
    Text {
        decoded: String,
        literal: String,
    },
    Null,
    Bool(bool),
    Array,
    Object,
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Integer(text) | Json::Float(text) => f.write_str(text),
            Json::Text { literal, .. } => f.write_str(literal),
            Json::Null => f.write_str("null"),
            Json::Bool(value) => write!(f, "{value}"),
            Json::Array => f.write_str("[1, \"c\", {\"a\": null}]"),
            Json::Object => f.write_str("{\"valor\": 1}"),
        }
    }
}

/// A JSON string literal for `text`, escaping each character in one of several ways.
fn text_strategy(text: impl Strategy<Value = String>) -> impl Strategy<Value = Json> {
    (text, any::<u64>()).prop_map(|(decoded, choices)| {
        let mut literal = String::from("\"");
        for (index, character) in decoded.chars().enumerate() {
            let escape = (choices >> (index % 64)) & 1 == 1;
            match character {
                '"' => literal.push_str("\\\""),
                '\\' => literal.push_str("\\\\"),
                '\n' => literal.push_str("\\n"),
                c if (c as u32) < 0x20 => literal.push_str(&format!("\\u{:04x}", c as u32)),
                c if escape => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        literal.push_str(&format!("\\u{unit:04X}"));
                    }
                }
                c => literal.push(c),
            }
        }
        literal.push('"');
        Json::Text { decoded, literal }
    })
}

fn value_strategy() -> impl Strategy<Value = Json> {
    prop_oneof![
        3 => (1i64..=10_000).prop_map(|n| Json::Integer(n.to_string())),
        1 => prop::sample::select(vec![
            "0", "-0", "-5", "9223372036854775807", "9223372036854775808",
            "18446744073709551615", "18446744073709551616", "99999999999999999999999",
        ])
        .prop_map(|text| Json::Integer(text.to_owned())),
        1 => prop::sample::select(vec!["1.0", "1.2", "1e3", "1E3", "-1.5", "0.0", "1e-2"])
            .prop_map(|text| Json::Float(text.to_owned())),
        3 => text_strategy(prop::sample::select(vec!["c", "d", "C", "D", "x", "", " c", "cd"])
            .prop_map(str::to_owned)),
        3 => text_strategy("\\PC{0,13}"),
        1 => text_strategy("[\"\\\\\n\u{1}é😀a-z]{0,12}"),
        1 => Just(Json::Null),
        1 => any::<bool>().prop_map(Json::Bool),
        1 => Just(Json::Array),
        1 => Just(Json::Object),
    ]
}

/// A key: which field it names after unescaping, and how it is written.
fn key_strategy() -> impl Strategy<Value = (String, String)> {
    prop::sample::select(vec![
        ("valor", "\"valor\""),
        ("valor", "\"\\u0076alor\""),
        ("tipo", "\"tipo\""),
        ("tipo", "\"ti\\u0070o\""),
        ("descricao", "\"descricao\""),
        ("descricao", "\"descri\\u00E7ao\""),
        ("Valor", "\"Valor\""),
        ("extra", "\"extra\""),
        ("", "\"\""),
    ])
    .prop_map(|(key, literal)| {
        // "descri\u00E7ao" decodes to "descriçao", which is not the field's name.
        let key = if literal.contains("00E7") {
            "descriçao"
        } else {
            key
        };
        (key.to_owned(), literal.to_owned())
    })
}

/// The reference validity of a generated object: each of the three fields exactly once,
/// `valor` an integer in 1..=i64::MAX, `tipo` "c" or "d", `descricao` 1 to 10 characters.
fn reference_body(fields: &[(String, Json)]) -> Option<(i64, char, String)> {
    let once = |name: &str| {
        let mut found = fields.iter().filter(|(key, _)| key == name);
        let first = found.next();
        if found.next().is_some() {
            None
        } else {
            first.map(|(_, value)| value)
        }
    };
    let value = match once("valor")? {
        Json::Integer(text) => text.parse::<i64>().ok().filter(|value| *value > 0)?,
        _ => return None,
    };
    let kind = match once("tipo")? {
        Json::Text { decoded, .. } if decoded == "c" || decoded == "d" => decoded.chars().next()?,
        _ => return None,
    };
    let description = match once("descricao")? {
        Json::Text { decoded, .. } if (1..=10).contains(&decoded.chars().count()) => {
            decoded.clone()
        }
        _ => return None,
    };
    Some((value, kind, description))
}

fn object_strategy() -> impl Strategy<Value = Vec<(String, String, Json)>> {
    let required = (
        (1i64..=10_000).prop_map(|n| Json::Integer(n.to_string())),
        text_strategy(prop::sample::select(vec!["c", "d"]).prop_map(str::to_owned)),
        text_strategy("\\PC{1,10}"),
    );
    let extra = prop::collection::vec((key_strategy(), value_strategy()), 0..4);
    let replace = prop::collection::vec((any::<prop::sample::Index>(), value_strategy()), 0..2);
    (required, extra, replace, any::<prop::sample::Index>()).prop_map(
        |((value, kind, description), extra, replace, rotate)| {
            let mut fields = vec![
                ("valor".to_owned(), "\"valor\"".to_owned(), value),
                ("tipo".to_owned(), "\"tipo\"".to_owned(), kind),
                (
                    "descricao".to_owned(),
                    "\"descricao\"".to_owned(),
                    description,
                ),
            ];
            for ((key, literal), json) in extra {
                fields.push((key, literal, json));
            }
            for (index, json) in replace {
                let at = index.index(fields.len());
                fields[at].2 = json;
            }
            let at = rotate.index(fields.len());
            fields.rotate_left(at);
            fields
        },
    )
}

fn render_object(fields: &[(String, String, Json)], spaced: bool) -> String {
    let separator = if spaced { " ,\n " } else { "," };
    let body: Vec<String> = fields
        .iter()
        .map(|(_, literal, json)| {
            if spaced {
                format!("{literal} :\t{json}")
            } else {
                format!("{literal}:{json}")
            }
        })
        .collect();
    format!("{{{}}}", body.join(separator))
}

/// An independent generic reading of any body, keeping repeated keys (serde_json's own map
/// types keep only one), for bodies the generator did not make.
struct Pairs(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Pairs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> serde::de::Visitor<'de> for PairsVisitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    // RFC 8259's grammar allows any \uXXXX escape, lone surrogates included
                    // (their meaning is "unpredictable"); only the strings the contract reads
                    // must decode to Unicode, so other values are checked for syntax only.
                    let value = if ["valor", "tipo", "descricao"].contains(&key.as_str()) {
                        map.next_value()?
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        serde_json::Value::Null
                    };
                    pairs.push((key, value));
                }
                Ok(Pairs(pairs))
            }
        }
        deserializer.deserialize_map(PairsVisitor)
    }
}

fn reference_bytes(body: &[u8]) -> Option<(i64, char, String)> {
    let Pairs(pairs) = serde_json::from_slice(body).ok()?;
    let fields: Vec<(String, Json)> = pairs
        .into_iter()
        .map(|(key, value)| {
            let json = match value {
                serde_json::Value::Number(number) if number.is_f64() => {
                    Json::Float(number.to_string())
                }
                serde_json::Value::Number(number) => Json::Integer(number.to_string()),
                serde_json::Value::String(text) => Json::Text {
                    decoded: text,
                    literal: String::new(),
                },
                serde_json::Value::Null => Json::Null,
                serde_json::Value::Bool(value) => Json::Bool(value),
                serde_json::Value::Array(_) => Json::Array,
                serde_json::Value::Object(_) => Json::Object,
            };
            (key, json)
        })
        .collect();
    reference_body(&fields)
}

fn accepted(body: &[u8]) -> Option<(i64, char, String)> {
    parse_transaction(body)
        .ok()
        .map(|tx| (tx.value, tx.kind.as_char(), tx.description.into_owned()))
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn generated_bodies_match_the_reference(
        fields in object_strategy(),
        spaced in any::<bool>(),
    ) {
        let body = render_object(&fields, spaced);
        let logical: Vec<(String, Json)> =
            fields.iter().map(|(key, _, json)| (key.clone(), json.clone())).collect();
        let expected = reference_body(&logical);
        prop_assert_eq!(accepted(body.as_bytes()), expected.clone(), "{}", body);
        // The generic reading agrees with the generator's own knowledge.
        prop_assert_eq!(reference_bytes(body.as_bytes()), expected, "{}", body);
    }

    #[test]
    fn arbitrary_bytes_are_never_accepted_when_invalid(
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let got = accepted(&body);
        prop_assert_eq!(got, reference_bytes(&body), "{:?}", String::from_utf8_lossy(&body));
    }

    #[test]
    fn mutated_bodies_are_never_accepted_when_invalid(
        fields in object_strategy(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(
            b"{}[]\":,.-+eE0123456789 \\u\x00\xffcdtipovalordescricao".to_vec()), 0u8..3), 1..5),
    ) {
        let mut body = render_object(&fields, false).into_bytes();
        apply_edits(&mut body, edits);
        prop_assert_eq!(
            accepted(&body),
            reference_bytes(&body),
            "{:?}",
            String::from_utf8_lossy(&body)
        );
    }
}

/// Applies generated edits in order, each at a position chosen within the current length:
/// 0 overwrites a byte, 1 inserts one, anything else removes one. Stops once nothing is left.
fn apply_edits(bytes: &mut Vec<u8>, edits: Vec<(prop::sample::Index, u8, u8)>) {
    for (at, byte, how) in edits {
        let index = at.index(bytes.len());
        match how {
            0 => bytes[index] = byte,
            1 => bytes.insert(index, byte),
            _ => {
                bytes.remove(index);
            }
        }
        if bytes.is_empty() {
            return;
        }
    }
}

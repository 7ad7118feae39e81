//! Strict validation of the transaction body.
//!
//! The body is read by serde_json straight into borrowed fields with hand-written visitors,
//! because the derived ones are too lenient for the contract: a derived struct also accepts a
//! JSON array in field order, and an `i64` field accepts neither more nor less than we need.
//!
//! Rules (one test row per rule below):
//! - the document is a JSON object; an array, a string, a number or `null` is rejected;
//! - `valor` is a JSON integer greater than zero: `1.0`, `1e3`, `"10"`, `0`, `-5`, `null` and
//!   integers beyond `i64::MAX` are rejected (serde_json reads those as floats or strings);
//! - `tipo` is exactly the string `c` or `d` (after unescaping);
//! - `descricao` is a string of 1 to 10 Unicode scalar values after unescaping;
//! - all three are required; unknown fields are skipped (their values must still be JSON);
//! - a field given twice is rejected, whatever the values: accepting the first or the last
//!   would let two parsers of the same body disagree, so neither is picked.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::ledger::{Entry, Kind, Transaction, DESCRIPTION_BYTES_MAX};

/// Most characters in a description.
pub const DESCRIPTION_CHARS_MAX: usize = 10;

/// A valid transaction request, borrowing from the body where no unescaping was needed.
pub struct NewTransaction<'b> {
    /// The amount in cents, greater than zero.
    pub value: i64,
    /// Credit or debit.
    pub kind: Kind,
    /// 1 to `DESCRIPTION_CHARS_MAX` characters.
    pub description: Cow<'b, str>,
}

// The storage keeps a description in a field of `DESCRIPTION_BYTES_MAX` bytes; the contract's
// characters take at most 4 UTF-8 bytes each.
const _: () = assert!(DESCRIPTION_CHARS_MAX * 4 <= DESCRIPTION_BYTES_MAX);

impl NewTransaction<'_> {
    /// The transaction as the storage engine appends it. The storage's own rules (a positive
    /// amount, a description that fits its record field) are implied by the contract's, which
    /// the parser checked, so they cannot fail here.
    pub fn entry(&self) -> Entry {
        let transaction = Transaction {
            value: self.value,
            kind: self.kind,
            description: &self.description,
        };
        transaction
            .validate()
            .expect("the contract's rules imply the storage's")
    }
}

/// Why a body is not a valid transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// The body is not one well-formed JSON document.
    Syntax,
    /// The body is JSON but breaks a rule of the contract.
    Invalid,
}

/// Parses and validates a transaction body.
pub fn parse_transaction(body: &[u8]) -> Result<NewTransaction<'_>, BodyError> {
    serde_json::from_slice(body).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => BodyError::Invalid,
        _ => BodyError::Syntax,
    })
}

impl<'de> Deserialize<'de> for NewTransaction<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TransactionVisitor)
    }
}

struct TransactionVisitor;

impl<'de> Visitor<'de> for TransactionVisitor {
    type Value = NewTransaction<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object with valor, tipo and descricao")
    }

    // Only `visit_map` is implemented, so any JSON value but an object is a type error.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut value = None;
        let mut kind = None;
        let mut description = None;
        while let Some(Text(key)) = map.next_key()? {
            match key.as_ref() {
                "valor" => set_once(&mut value, "valor", map.next_value::<Value>()?.0)?,
                "tipo" => set_once(&mut kind, "tipo", map.next_value::<TypeCode>()?.0)?,
                "descricao" => {
                    let Text(text) = map.next_value()?;
                    let chars = text.chars().count();
                    if chars == 0 || chars > DESCRIPTION_CHARS_MAX {
                        return Err(de::Error::invalid_length(chars, &"1 to 10 characters"));
                    }
                    set_once(&mut description, "descricao", text)?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(NewTransaction {
            value: value.ok_or_else(|| de::Error::missing_field("valor"))?,
            kind: kind.ok_or_else(|| de::Error::missing_field("tipo"))?,
            description: description.ok_or_else(|| de::Error::missing_field("descricao"))?,
        })
    }
}

/// Stores a field's value, rejecting a second occurrence of the field.
fn set_once<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(value);
    Ok(())
}

/// A JSON string, borrowed from the input unless it had escapes to decode.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(text)))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(text)))
    }
}

/// `valor`: a JSON integer in 1..=i64::MAX.
struct Value(i64);

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_i64(ValueVisitor)
    }
}

struct ValueVisitor;

impl Visitor<'_> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an integer greater than zero")
    }

    // serde_json calls `visit_u64` for non-negative integers, `visit_i64` for negative ones
    // and `visit_f64` for any number with a fraction or exponent, or too large for 64 bits;
    // the latter is left to the default, which rejects it.
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        match i64::try_from(value) {
            Ok(value) if value > 0 => Ok(Value(value)),
            _ => Err(E::invalid_value(de::Unexpected::Unsigned(value), &self)),
        }
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        if value > 0 {
            Ok(Value(value))
        } else {
            Err(E::invalid_value(de::Unexpected::Signed(value), &self))
        }
    }
}

/// `tipo`: exactly `c` or `d`.
struct TypeCode(Kind);

impl<'de> Deserialize<'de> for TypeCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Text(code) = Text::deserialize(deserializer)?;
        match code.as_ref() {
            "c" => Ok(TypeCode(Kind::Credit)),
            "d" => Ok(TypeCode(Kind::Debit)),
            other => Err(de::Error::invalid_value(
                de::Unexpected::Str(other),
                &"\"c\" or \"d\"",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expected` is `Ok((valor, tipo, descricao))` or the error.
    #[track_caller]
    fn check(body: &str, expected: Result<(i64, char, &str), BodyError>) {
        let parsed = parse_transaction(body.as_bytes());
        let parsed = parsed
            .as_ref()
            .map(|tx| (tx.value, tx.kind.as_char(), tx.description.as_ref()))
            .map_err(|error| *error);
        assert_eq!(parsed, expected, "body {body}");
    }

    #[test]
    fn accepted() {
        check(
            r#"{"valor":1000,"tipo":"c","descricao":"descricao"}"#,
            Ok((1000, 'c', "descricao")),
        );
        check(
            r#"{"valor": 1, "tipo": "d", "descricao": "x"}"#,
            Ok((1, 'd', "x")),
        );
        // Field order is free.
        check(
            r#"{"descricao":"toma","tipo":"c","valor":7}"#,
            Ok((7, 'c', "toma")),
        );
        // Whitespace around and inside.
        check(
            " \n{ \"valor\" :\t5 , \"tipo\":\"d\",\"descricao\":\"a b\" }\r\n",
            Ok((5, 'd', "a b")),
        );
        // Ten characters of two bytes each are ten characters.
        check(
            r#"{"valor":1,"tipo":"c","descricao":"éééééééééé"}"#,
            Ok((1, 'c', "éééééééééé")),
        );
        // Ten characters of four bytes each.
        check(
            r#"{"valor":1,"tipo":"c","descricao":"😀😀😀😀😀😀😀😀😀😀"}"#,
            Ok((1, 'c', "😀😀😀😀😀😀😀😀😀😀")),
        );
        // Escapes count as the character they decode to.
        check(
            r#"{"valor":1,"tipo":"c","descricao":"\u00e9\"\\\n"}"#,
            Ok((1, 'c', "é\"\\\n")),
        );
        check(
            r#"{"valor":1,"tipo":"c","descricao":"\ud83d\ude00"}"#,
            Ok((1, 'c', "😀")),
        );
        // Escaped field names and values are the same names and values.
        check(
            r#"{"\u0076alor":3,"tipo":"\u0064","descricao":"x"}"#,
            Ok((3, 'd', "x")),
        );
        // Unknown fields are ignored, whatever their value.
        check(
            r#"{"valor":2,"tipo":"c","descricao":"x","extra":[1,{"a":null}],"valor2":"no"}"#,
            Ok((2, 'c', "x")),
        );
        // The largest value.
        check(
            r#"{"valor":9223372036854775807,"tipo":"c","descricao":"max"}"#,
            Ok((i64::MAX, 'c', "max")),
        );
    }

    #[test]
    fn rejected_valor() {
        let invalid = Err(BodyError::Invalid);
        check(r#"{"valor":1.2,"tipo":"c","descricao":"x"}"#, invalid);
        check(r#"{"valor":1.0,"tipo":"c","descricao":"x"}"#, invalid);
        check(r#"{"valor":1e3,"tipo":"c","descricao":"x"}"#, invalid);
        check(r#"{"valor":1E3,"tipo":"c","descricao":"x"}"#, invalid);
        check(r#"{"valor":"10","tipo":"c","descricao":"x"}"#, invalid);
        check(r#"{"valor":0,"tipo":"c","descricao":"x"}"#, invalid);
        check(r#"{"valor":-0,"tipo":"c","descricao":"x"}"#, invalid);
        check(r#"{"valor":-5,"tipo":"c","descricao":"x"}"#, invalid);
        check(r#"{"valor":null,"tipo":"c","descricao":"x"}"#, invalid);
        check(r#"{"valor":true,"tipo":"c","descricao":"x"}"#, invalid);
        check(r#"{"valor":[1],"tipo":"c","descricao":"x"}"#, invalid);
        check(r#"{"valor":{},"tipo":"c","descricao":"x"}"#, invalid);
        check(
            r#"{"valor":9223372036854775808,"tipo":"c","descricao":"x"}"#,
            invalid,
        );
        check(
            r#"{"valor":18446744073709551616,"tipo":"c","descricao":"x"}"#,
            invalid,
        );
        check(
            r#"{"valor":99999999999999999999999999,"tipo":"c","descricao":"x"}"#,
            invalid,
        );
        check(r#"{"tipo":"c","descricao":"x"}"#, invalid);
    }

    #[test]
    fn rejected_tipo() {
        let invalid = Err(BodyError::Invalid);
        check(r#"{"valor":1,"tipo":"x","descricao":"x"}"#, invalid);
        check(r#"{"valor":1,"tipo":"C","descricao":"x"}"#, invalid);
        check(r#"{"valor":1,"tipo":"D","descricao":"x"}"#, invalid);
        check(r#"{"valor":1,"tipo":"cd","descricao":"x"}"#, invalid);
        check(r#"{"valor":1,"tipo":" c","descricao":"x"}"#, invalid);
        check(r#"{"valor":1,"tipo":"","descricao":"x"}"#, invalid);
        check(r#"{"valor":1,"tipo":null,"descricao":"x"}"#, invalid);
        check(r#"{"valor":1,"tipo":99,"descricao":"x"}"#, invalid);
        check(r#"{"valor":1,"tipo":["c"],"descricao":"x"}"#, invalid);
        check(r#"{"valor":1,"descricao":"x"}"#, invalid);
    }

    #[test]
    fn rejected_descricao() {
        let invalid = Err(BodyError::Invalid);
        check(r#"{"valor":1,"tipo":"c","descricao":""}"#, invalid);
        check(
            r#"{"valor":1,"tipo":"c","descricao":"12345678901"}"#,
            invalid,
        );
        check(
            r#"{"valor":1,"tipo":"c","descricao":"123456789 e mais um pouco"}"#,
            invalid,
        );
        check(
            r#"{"valor":1,"tipo":"c","descricao":"ééééééééééé"}"#,
            invalid,
        );
        check(r#"{"valor":1,"tipo":"c","descricao":null}"#, invalid);
        check(r#"{"valor":1,"tipo":"c","descricao":10}"#, invalid);
        check(r#"{"valor":1,"tipo":"c","descricao":["x"]}"#, invalid);
        check(r#"{"valor":1,"tipo":"c"}"#, invalid);
    }

    #[test]
    fn rejected_documents() {
        let invalid = Err(BodyError::Invalid);
        let syntax = Err(BodyError::Syntax);
        // An array in field order is not an object.
        check(r#"[1000,"c","descricao"]"#, invalid);
        check(r#""valor""#, invalid);
        check("1000", invalid);
        check("null", invalid);
        check("{}", invalid);
        // A field twice is rejected, even with equal values.
        check(
            r#"{"valor":1,"valor":2,"tipo":"c","descricao":"x"}"#,
            invalid,
        );
        check(
            r#"{"valor":1,"valor":1,"tipo":"c","descricao":"x"}"#,
            invalid,
        );
        check(
            r#"{"valor":1,"tipo":"c","tipo":"d","descricao":"x"}"#,
            invalid,
        );
        check(
            r#"{"valor":1,"tipo":"c","descricao":"x","descricao":"y"}"#,
            invalid,
        );
        // Not JSON at all, or not only JSON.
        check("", syntax);
        check("valor=1&tipo=c", syntax);
        check(r#"{"valor":1,"tipo":"c","descricao":"x""#, syntax);
        check(r#"{"valor":1,"tipo":"c","descricao":"x"} {}"#, syntax);
        check(r#"{"valor":1,"tipo":"c","descricao":"x",}"#, syntax);
        check(r#"{"valor":01,"tipo":"c","descricao":"x"}"#, syntax);
        check(r#"{'valor':1,'tipo':'c','descricao':'x'}"#, syntax);
        // A lone surrogate is not a Unicode scalar value.
        check(r#"{"valor":1,"tipo":"c","descricao":"\ud800"}"#, syntax);
    }

    #[test]
    fn rejected_bytes() {
        // Invalid UTF-8 inside a string.
        let body = b"{\"valor\":1,\"tipo\":\"c\",\"descricao\":\"\xff\"}";
        assert_eq!(parse_transaction(body).map(|_| ()), Err(BodyError::Syntax));
    }

    #[test]
    fn borrows_unless_escaped() {
        let plain = parse_transaction(br#"{"valor":1,"tipo":"c","descricao":"plain"}"#).unwrap();
        assert!(matches!(plain.description, Cow::Borrowed("plain")));
        let escaped = parse_transaction(br#"{"valor":1,"tipo":"c","descricao":"\u0041"}"#).unwrap();
        assert!(matches!(escaped.description, Cow::Owned(_)));
    }
}

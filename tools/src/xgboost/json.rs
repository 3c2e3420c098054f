//! A bounded JSON reader for XGBoost's `.json` model files (`Booster.save_model`).
//!
//! Recursive descent with a depth limit ([`MAX_DEPTH`]) and a value budget ([`MAX_VALUES`]);
//! every container grows only as its elements are read, so memory follows the bytes present.
//! Integers (no fraction, no exponent) become [`Value::Int`]; other numbers keep their value
//! correctly rounded to `f32` and to `f64` from the text itself. Strings are UTF-8 with the
//! usual escapes (`\uXXXX`, surrogate pairs joined; a lone surrogate is refused).

use super::value::{DecodeError, MAX_DEPTH, MAX_VALUES, Value};

/// Decodes one JSON value that fills `bytes` (whitespace around it allowed).
pub fn parse(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut p = Parser {
        bytes,
        pos: 0,
        values: 0,
    };
    let value = p.value(0)?;
    p.skip_space();
    if p.pos != bytes.len() {
        return Err(p.error("data after the JSON value"));
    }
    Ok(value)
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    values: usize,
}

impl Parser<'_> {
    fn error(&self, reason: impl Into<String>) -> DecodeError {
        DecodeError {
            format: "JSON",
            offset: self.pos,
            reason: reason.into(),
        }
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn expect(&mut self, literal: &str, value: Value) -> Result<Value, DecodeError> {
        if self.bytes[self.pos..].starts_with(literal.as_bytes()) {
            self.pos += literal.len();
            Ok(value)
        } else {
            Err(self.error(format!("expected `{literal}`")))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(self.error(format!("more than {MAX_VALUES} values")));
        }
        self.skip_space();
        match self.peek() {
            None => Err(self.error("unexpected end of data")),
            Some(b'{') | Some(b'[') if depth >= MAX_DEPTH => {
                Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")))
            }
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b't') => self.expect("true", Value::Bool(true)),
            Some(b'f') => self.expect("false", Value::Bool(false)),
            Some(b'n') => self.expect("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(c) => Err(self.error(format!("unexpected byte 0x{c:02x}"))),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, DecodeError> {
        self.pos += 1; // {
        let mut entries = Vec::new();
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(entries));
        }
        loop {
            self.skip_space();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected an object key"));
            }
            let key = self.string()?;
            self.skip_space();
            if self.peek() != Some(b':') {
                return Err(self.error("expected `:` after an object key"));
            }
            self.pos += 1;
            let value = self.value(depth + 1)?;
            entries.push((key, value));
            self.skip_space();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(entries));
                }
                _ => return Err(self.error("expected `,` or `}` in an object")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, DecodeError> {
        self.pos += 1; // [
        let mut items = Vec::new();
        self.skip_space();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_space();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error("expected `,` or `]` in an array")),
            }
        }
    }

    fn number(&mut self) -> Result<Value, DecodeError> {
        let start = self.pos;
        let mut integer = true;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let digits = |p: &mut Self| {
            let from = p.pos;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.pos += 1;
            }
            p.pos > from
        };
        if !digits(self) {
            return Err(self.error("a number without digits"));
        }
        if self.peek() == Some(b'.') {
            integer = false;
            self.pos += 1;
            if !digits(self) {
                return Err(self.error("a number without digits after `.`"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(self.error("a number without exponent digits"));
            }
        }
        // Only ASCII digits, signs, `.` and `e` were consumed.
        let text = std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or_default();
        if integer {
            text.parse::<i64>()
                .map(Value::Int)
                .map_err(|_| self.error(format!("integer {text} does not fit 64 bits")))
        } else {
            match (text.parse::<f32>(), text.parse::<f64>()) {
                (Ok(f32), Ok(f64)) => Ok(Value::Float { f32, f64 }),
                _ => Err(self.error(format!("invalid number {text}"))),
            }
        }
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        self.pos += 1; // "
        let mut out = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error("unterminated string"));
            };
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.error("unterminated string"));
                    };
                    self.pos += 1;
                    let simple = match e {
                        b'"' => Some(b'"'),
                        b'\\' => Some(b'\\'),
                        b'/' => Some(b'/'),
                        b'b' => Some(8),
                        b'f' => Some(12),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        b'u' => None,
                        _ => return Err(self.error("invalid escape in a string")),
                    };
                    match simple {
                        Some(b) => out.push(b),
                        None => {
                            let ch = self.unicode_escape()?;
                            let mut buf = [0; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                }
                c if c < 0x20 => return Err(self.error("control character in a string")),
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.error("a string is not UTF-8"))
    }

    /// After `\u`: one code point, joining a surrogate pair.
    fn unicode_escape(&mut self) -> Result<char, DecodeError> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if !self.bytes[self.pos..].starts_with(b"\\u") {
                return Err(self.error("a lone surrogate in a string"));
            }
            self.pos += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.error("a lone surrogate in a string"));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.error("a lone surrogate in a string"))
    }

    fn hex4(&mut self) -> Result<u32, DecodeError> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| {
                u32::from_str_radix(d, 16)
                    .ok()
                    .filter(|_| !d.starts_with('+'))
            })
            .ok_or_else(|| self.error("invalid \\u escape"))?;
        self.pos += 4;
        Ok(digits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_xgboost_numbers_exactly() {
        let v =
            parse(br#"{"a":[1,-2,5E-1,3.4028235E38,1e-46],"s":"x\u00e9\ud83d\ude00"}"#).unwrap();
        let Some(Value::Array(a)) = v.get("a") else {
            panic!("{v:?}")
        };
        assert_eq!(a[0], Value::Int(1));
        assert_eq!(a[1], Value::Int(-2));
        assert_eq!(a[2], Value::Float { f32: 0.5, f64: 0.5 });
        assert_eq!(
            a[3],
            Value::Float {
                f32: f32::MAX,
                f64: 3.4028235e38
            }
        );
        assert_eq!(
            a[4],
            Value::Float {
                f32: 0.0,
                f64: 1e-46
            }
        );
        assert_eq!(v.get("s"), Some(&Value::Str("xé😀".into())));
    }

    #[test]
    fn parses_float32_text_without_double_rounding() {
        // 1.00000005960464477539062500000001 is just above the midpoint between 1 and the next
        // float: f32 parsing rounds up, f64-then-f32 rounds to 1 (ties to even).
        let text = b"1.00000005960464477539062500000001";
        let Value::Float { f32, f64 } = parse(text).unwrap() else {
            panic!()
        };
        assert_eq!(f32, 1.0000001);
        assert_eq!(f64 as f32, 1.0);
    }

    #[test]
    fn refuses_malformed_and_deep_input() {
        for bad in [
            &b"{"[..],
            b"[1,]",
            b"{\"a\" 1}",
            b"\"\\ud800\"",
            b"01x",
            b"1 2",
            b"99999999999999999999",
            b"\"\x01\"",
            b"-",
            b"1.",
            b"1e",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "[".repeat(100_000);
        let err = parse(deep.as_bytes()).unwrap_err();
        assert!(err.reason.contains("nested deeper than 64"), "{err}");
    }
}

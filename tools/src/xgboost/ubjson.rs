//! A bounded UBJSON reader for XGBoost's `.ubj` model files and the memory snapshots its
//! pickles carry.
//!
//! Big-endian; the markers XGBoost writes and reads (`{` `}` `[` `]` `Z` `T` `F` `i` `U` `I`
//! `l` `L` `d` `D` `S` `C`), arrays optimised with a count (`#`) or a type and a count
//! (`$t#`), object keys as a length then UTF-8 bytes. Every declared length or count is checked
//! against the bytes remaining before anything is allocated (an element takes at least one
//! byte, a typed one its width); nesting is limited to [`MAX_DEPTH`] and the values read to
//! [`MAX_VALUES`]. High-precision numbers (`H`) are refused.

use super::value::{DecodeError, MAX_DEPTH, MAX_VALUES, Value};

/// Decodes one UBJSON value that fills `bytes`.
pub fn parse(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut p = Reader {
        bytes,
        pos: 0,
        values: 0,
    };
    let value = p.value(0)?;
    if p.pos != bytes.len() {
        return Err(p.error("data after the UBJSON value"));
    }
    Ok(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    values: usize,
}

impl Reader<'_> {
    fn error(&self, reason: impl Into<String>) -> DecodeError {
        DecodeError {
            format: "UBJSON",
            offset: self.pos,
            reason: reason.into(),
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.error(format!(
                "needs {n} bytes, {} remain (truncated?)",
                self.remaining()
            )));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.bytes
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.error("unexpected end of data (truncated?)"))
    }

    fn count(&mut self, n: usize) -> Result<(), DecodeError> {
        self.values += n;
        if self.values > MAX_VALUES {
            return Err(self.error(format!("more than {MAX_VALUES} values")));
        }
        Ok(())
    }

    /// The integer after marker `m`, or `None` if `m` is not an integer marker.
    fn integer(&mut self, m: u8) -> Result<Option<i64>, DecodeError> {
        Ok(Some(match m {
            b'i' => i64::from(self.byte()? as i8),
            b'U' => i64::from(self.byte()?),
            b'I' => i64::from(i16::from_be_bytes(self.array()?)),
            b'l' => i64::from(i32::from_be_bytes(self.array()?)),
            b'L' => i64::from_be_bytes(self.array()?),
            _ => return Ok(None),
        }))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        Ok(bytes.try_into().expect("take returned N bytes"))
    }

    /// A length or count: an integer marker and a non-negative value no larger than
    /// `remaining bytes / min_size` (each element needs at least `min_size` bytes).
    fn length(&mut self, what: &str, min_size: usize) -> Result<usize, DecodeError> {
        let m = self.byte()?;
        let n = self
            .integer(m)?
            .ok_or_else(|| self.error(format!("{what} has no integer length marker")))?;
        let n = usize::try_from(n).map_err(|_| self.error(format!("{what} length {n}")))?;
        if n.saturating_mul(min_size) > self.remaining() {
            return Err(self.error(format!(
                "{what} declares {n} elements of at least {min_size} bytes, {} bytes remain",
                self.remaining()
            )));
        }
        Ok(n)
    }

    fn string(&mut self, what: &str) -> Result<String, DecodeError> {
        let n = self.length(what, 1)?;
        let start = self.pos;
        let bytes = self.take(n)?.to_vec();
        String::from_utf8(bytes).map_err(|_| DecodeError {
            format: "UBJSON",
            offset: start,
            reason: format!("{what} is not UTF-8"),
        })
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        self.count(1)?;
        let m = self.byte()?;
        if let Some(i) = self.integer(m)? {
            return Ok(Value::Int(i));
        }
        match m {
            b'Z' => Ok(Value::Null),
            b'T' => Ok(Value::Bool(true)),
            b'F' => Ok(Value::Bool(false)),
            b'd' => {
                let v = f32::from_be_bytes(self.array()?);
                Ok(Value::Float {
                    f32: v,
                    f64: f64::from(v),
                })
            }
            b'D' => {
                let v = f64::from_be_bytes(self.array()?);
                // A float64 read as float32 is rounded once, from its exact value.
                Ok(Value::Float {
                    f32: v as f32,
                    f64: v,
                })
            }
            b'S' => Ok(Value::Str(self.string("a string")?)),
            b'C' => Ok(Value::Str(char::from(self.byte()?).to_string())),
            b'{' | b'[' if depth >= MAX_DEPTH => {
                Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")))
            }
            b'{' => self.object(depth),
            b'[' => self.list(depth),
            b'H' => Err(self.error("high-precision numbers (H) are not supported")),
            other => Err(self.error(format!("unknown marker 0x{other:02x}"))),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, DecodeError> {
        let mut entries = Vec::new();
        let counted = match self.peek()? {
            b'$' => return Err(self.error("typed objects ($) are not supported")),
            b'#' => {
                self.pos += 1;
                // A key and a value take at least 3 bytes.
                Some(self.length("an object", 3)?)
            }
            _ => None,
        };
        loop {
            match counted {
                Some(n) if entries.len() == n => break,
                None if self.peek()? == b'}' => {
                    self.pos += 1;
                    break;
                }
                _ => {}
            }
            let key = self.string("an object key")?;
            let value = self.value(depth + 1)?;
            entries.push((key, value));
        }
        Ok(Value::Object(entries))
    }

    fn list(&mut self, depth: usize) -> Result<Value, DecodeError> {
        match self.peek()? {
            b'$' => {
                self.pos += 1;
                let t = self.byte()?;
                if self.byte()? != b'#' {
                    return Err(self.error("a typed array ($) without a count (#)"));
                }
                let width = match t {
                    b'i' | b'U' => 1,
                    b'I' => 2,
                    b'l' | b'd' => 4,
                    b'L' | b'D' => 8,
                    other => {
                        return Err(self.error(format!(
                            "typed arrays of marker 0x{other:02x} are not supported"
                        )));
                    }
                };
                let n = self.length("a typed array", width)?;
                self.count(n)?;
                let data = self.take(n * width)?;
                Ok(match t {
                    b'd' => Value::F32s(
                        data.chunks_exact(4)
                            .map(|c| f32::from_be_bytes(c.try_into().expect("4 bytes")))
                            .collect(),
                    ),
                    b'D' => Value::F64s(
                        data.chunks_exact(8)
                            .map(|c| f64::from_be_bytes(c.try_into().expect("8 bytes")))
                            .collect(),
                    ),
                    b'i' => Value::Ints(data.iter().map(|&b| i64::from(b as i8)).collect()),
                    b'U' => Value::Ints(data.iter().map(|&b| i64::from(b)).collect()),
                    b'I' => Value::Ints(
                        data.chunks_exact(2)
                            .map(|c| i64::from(i16::from_be_bytes([c[0], c[1]])))
                            .collect(),
                    ),
                    b'l' => Value::Ints(
                        data.chunks_exact(4)
                            .map(|c| i64::from(i32::from_be_bytes(c.try_into().expect("4"))))
                            .collect(),
                    ),
                    _ => Value::Ints(
                        data.chunks_exact(8)
                            .map(|c| i64::from_be_bytes(c.try_into().expect("8 bytes")))
                            .collect(),
                    ),
                })
            }
            b'#' => {
                self.pos += 1;
                let n = self.length("an array", 1)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            _ => {
                let mut items = Vec::new();
                while self.peek()? != b']' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::Array(items))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Vec<u8> {
        let mut out = vec![b'L'];
        out.extend_from_slice(&(k.len() as i64).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out
    }

    #[test]
    fn reads_typed_and_counted_arrays() {
        let mut b = vec![b'{'];
        b.extend(key("f"));
        b.extend([b'[', b'$', b'd', b'#', b'U', 2]);
        b.extend(0.5f32.to_be_bytes());
        b.extend((-1.25f32).to_be_bytes());
        b.extend(key("n"));
        b.extend([b'[', b'#', b'i', 2, b'l', 0, 0, 1, 0, b'T']);
        b.extend(key("s"));
        b.extend([b'S', b'U', 2, b'h', b'i']);
        b.push(b'}');
        let v = parse(&b).unwrap();
        assert_eq!(v.get("f"), Some(&Value::F32s(vec![0.5, -1.25])));
        assert_eq!(
            v.get("n"),
            Some(&Value::Array(vec![Value::Int(256), Value::Bool(true)]))
        );
        assert_eq!(v.get("s"), Some(&Value::Str("hi".into())));
    }

    #[test]
    fn refuses_oversized_counts_before_allocating() {
        let mut huge = vec![b'[', b'$', b'd', b'#', b'L'];
        huge.extend(i64::MAX.to_be_bytes());
        let err = parse(&huge).unwrap_err();
        assert!(err.reason.contains("declares"), "{err}");
        let mut counted = vec![b'[', b'#', b'L'];
        counted.extend((1i64 << 40).to_be_bytes());
        assert!(parse(&counted).unwrap_err().reason.contains("declares"));
        let mut string = vec![b'S', b'L'];
        string.extend((-5i64).to_be_bytes());
        assert!(parse(&string).is_err());
        let deep = vec![b'['; 10_000];
        assert!(parse(&deep).unwrap_err().reason.contains("nested deeper"));
        assert!(parse(b"{").is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"[$H#U\x01").is_err());
    }
}

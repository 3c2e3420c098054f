//! Validation of the seed's `/predict` body, with FastAPI/pydantic's error shapes.
//!
//! The body is one row (`{"gdp_per_capita": 50000, ...}`) or a list of rows. Each row must
//! have exactly the model's features: a finite number for a numeric feature (numeric strings
//! such as `"5.2"` are accepted, as pydantic does), a non-empty string for a string feature,
//! `null` for a missing value where the feature is nullable, and one of the feature's
//! `categories` where it has them. Numbers and strings are kept apart ([`Rows`]), as the
//! model's two inputs take them. Every problem becomes a [`FieldError`] whose `loc` names
//! the field, so a 422 lists all of them at once. The body is read in one pass; each field's
//! value is kept as raw JSON text and read from there, so `1e999` is reported at its field (as
//! not finite) instead of failing the whole document.
//!
//! A 422 is bounded whatever the body: it lists at most [`MAX_LISTED_ERRORS`] errors (then one
//! `too_many_errors` entry counting the rest), and a row or field value echoed as an error's
//! `input` is summarised when it is larger than [`MAX_ECHOED_BYTES`]. Otherwise a body of a few
//! megabytes (200,000 unknown keys, or 10,000 empty rows) could make an answer, and the memory
//! to build it, hundreds of times its own size.

use std::borrow::Cow;
use std::fmt;

use onnx_model::contract::{Feature, FeatureType};
use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::FieldError;

/// Most errors a 422 lists; the rest are counted in one last `too_many_errors` entry.
pub const MAX_LISTED_ERRORS: usize = 100;

/// Largest row (members' keys and raw values, in bytes) or field value echoed whole as an
/// error's `input`; a larger one is echoed as a summary such as
/// `"<object with 200000 members>"` or `"<array of 2000001 bytes>"`.
pub const MAX_ECHOED_BYTES: usize = 4096;

/// A validated body: rows of features in the model's feature order, numbers and strings
/// apart (the model's two inputs).
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    /// Row-major numeric features, `n_rows * n_number_features` (NaN = missing).
    pub values: Vec<f64>,
    /// Row-major string features, `n_rows * n_string_features` (`""` = missing); empty for a
    /// model without string features.
    pub strings: Vec<String>,
    /// Whether the body was a list (the answer is a list too).
    pub batch: bool,
}

/// Parses and validates a `/predict` body against numeric, non-nullable features named
/// `features`; batches hold at most `max_rows` rows.
pub fn parse(body: &[u8], features: &[String], max_rows: usize) -> Result<Rows, Vec<FieldError>> {
    let features: Vec<Feature> = features
        .iter()
        .map(|name| Feature::number(name.clone(), false))
        .collect();
    parse_features(body, &features, max_rows)
}

/// Parses and validates a `/predict` body against the model's `features`: a number (or
/// numeric string) for a numeric feature, a non-empty string for a string feature, `null` for
/// a missing value where the feature is nullable, and one of its `categories` where it has
/// them; batches hold at most `max_rows` rows.
pub fn parse_features(
    body: &[u8],
    features: &[Feature],
    max_rows: usize,
) -> Result<Rows, Vec<FieldError>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(vec![error(
            "missing",
            vec![],
            "Field required",
            Value::Null,
        )]);
    }
    // Valid UTF-8 is checked once for the whole body, not string by string; a body that is not
    // is read as bytes, so that the error names the position.
    let document = match std::str::from_utf8(body) {
        Ok(text) => read_document(serde_json::Deserializer::from_str(text), max_rows),
        Err(_) => read_document(serde_json::Deserializer::from_slice(body), max_rows),
    }
    .map_err(|e| vec![json_invalid(body, &e)])?;
    match document {
        Item::List { items, len } => parse_list(&items, len, features, max_rows),
        item => {
            let mut rows = Rows::with_capacity(1, features, false);
            let mut errors = Errors::default();
            parse_row(&item, features, None, &mut rows, &mut errors);
            rows_or_errors(rows, errors)
        }
    }
}

impl Rows {
    fn with_capacity(n_rows: usize, features: &[Feature], batch: bool) -> Rows {
        let n_strings = features
            .iter()
            .filter(|f| f.kind == FeatureType::String)
            .count();
        Rows {
            values: Vec::with_capacity(n_rows * (features.len() - n_strings)),
            strings: Vec::with_capacity(n_rows * n_strings),
            batch,
        }
    }
}

/// Reads the whole body as one [`Item`] (a list item by item, up to `max_rows + 1` kept).
fn read_document<'de, R: serde_json::de::Read<'de>>(
    mut reader: serde_json::Deserializer<R>,
    max_rows: usize,
) -> Result<Item<'de>, serde_json::Error> {
    let document = ItemSeed {
        list_limit: Some(max_rows),
    }
    .deserialize(&mut reader)?;
    reader.end()?;
    Ok(document)
}

/// Validates a list of rows (the batch form); `len` is the list's length, of which only the
/// first `max_rows + 1` items were kept.
fn parse_list(
    items: &[Item<'_>],
    len: usize,
    features: &[Feature],
    max_rows: usize,
) -> Result<Rows, Vec<FieldError>> {
    if len == 0 {
        return Err(vec![error(
            "too_short",
            vec![],
            "List should have at least 1 item after validation, not 0",
            Value::Array(vec![]),
        )]);
    }
    if len > max_rows {
        return Err(vec![FieldError {
            kind: "too_long",
            loc: vec!["body".into()],
            msg: format!("List should have at most {max_rows} items after validation, not {len}"),
            input: Value::String(format!("<list of {len} rows>")),
            ctx: Some(
                serde_json::json!({ "field_type": "List", "max_length": max_rows, "actual_length": len }),
            ),
        }]);
    }
    let mut rows = Rows::with_capacity(items.len(), features, true);
    let mut errors = Errors::default();
    for (index, item) in items.iter().enumerate() {
        parse_row(item, features, Some(index), &mut rows, &mut errors);
    }
    rows_or_errors(rows, errors)
}

/// The validated rows, or the errors found in them.
fn rows_or_errors(rows: Rows, errors: Errors) -> Result<Rows, Vec<FieldError>> {
    if errors.listed.is_empty() {
        Ok(rows)
    } else {
        Err(errors.finish())
    }
}

/// The errors of a body: the first [`MAX_LISTED_ERRORS`] in full, the rest only counted (and
/// never built).
#[derive(Default)]
struct Errors {
    listed: Vec<FieldError>,
    not_listed: usize,
}

impl Errors {
    fn push(&mut self, error: impl FnOnce() -> FieldError) {
        if self.listed.len() < MAX_LISTED_ERRORS {
            self.listed.push(error());
        } else {
            self.not_listed += 1;
        }
    }

    fn finish(mut self) -> Vec<FieldError> {
        if self.not_listed > 0 {
            self.listed.push(FieldError {
                kind: "too_many_errors",
                loc: vec!["body".into()],
                msg: format!(
                    "{} more errors are not listed (only the first {MAX_LISTED_ERRORS} are)",
                    self.not_listed
                ),
                input: Value::Null,
                ctx: Some(serde_json::json!({
                    "listed": MAX_LISTED_ERRORS,
                    "not_listed": self.not_listed,
                })),
            });
        }
        self.listed
    }
}

/// Validates one row (`item`) and appends its values, or its errors.
fn parse_row(
    item: &Item<'_>,
    features: &[Feature],
    index: Option<usize>,
    rows: &mut Rows,
    errors: &mut Errors,
) {
    let loc = |field: Option<&str>| {
        let mut loc: Vec<Value> = Vec::new();
        if let Some(i) = index {
            loc.push(i.into());
        }
        if let Some(f) = field {
            loc.push(f.into());
        }
        loc
    };
    let fields = match item {
        Item::Object(fields) => fields,
        other => {
            errors.push(|| {
                error(
                    "model_attributes_type",
                    loc(None),
                    "Input should be a valid dictionary or object to extract fields from",
                    other.to_value(),
                )
            });
            return;
        }
    };
    for feature in features {
        let name = feature.name.as_str();
        // NOTE: like Python's json, a repeated key keeps its last value.
        let Some((_, value)) = fields.iter().rev().find(|(key, _)| key == name) else {
            errors.push(|| {
                error(
                    "missing",
                    loc(Some(name)),
                    "Field required",
                    item.to_value(),
                )
            });
            continue;
        };
        let null = value.get() == "null";
        let bad = match feature.kind {
            FeatureType::Number if null && feature.nullable => {
                rows.values.push(f64::NAN);
                continue;
            }
            FeatureType::String if null && feature.nullable => {
                rows.strings.push(String::new());
                continue;
            }
            FeatureType::Number => match number(value) {
                Ok(v) if is_category(feature, |c| c.as_f64() == Some(v)) => {
                    rows.values.push(v);
                    continue;
                }
                Ok(_) => category_error(feature),
                Err((kind, msg)) => (kind, Cow::Borrowed(msg)),
            },
            FeatureType::String => match string(value) {
                Ok(v) if is_category(feature, |c| c.as_str() == Some(v.as_ref())) => {
                    rows.strings.push(v.into_owned());
                    continue;
                }
                Ok(_) => category_error(feature),
                Err((kind, msg)) => (kind, Cow::Borrowed(msg)),
            },
        };
        let (kind, msg) = bad;
        errors.push(|| error(kind, loc(Some(name)), &msg, to_value(value)));
    }
    for (key, value) in fields {
        if !features.iter().any(|f| f.name == *key) {
            errors.push(|| {
                error(
                    "extra_forbidden",
                    loc(Some(key)),
                    "Extra inputs are not permitted",
                    to_value(value),
                )
            });
        }
    }
}

/// Whether the value is one of the feature's categories (`matches` says whether a category
/// is it); always true when the feature has none.
fn is_category(feature: &Feature, matches: impl Fn(&Value) -> bool) -> bool {
    feature
        .categories
        .as_ref()
        .is_none_or(|categories| categories.iter().any(matches))
}

/// Most categories a 422 message lists.
const LISTED_CATEGORIES: usize = 20;

/// pydantic's `enum` error: `Input should be 'a', 'b' or 'c'` (at most
/// [`LISTED_CATEGORIES`] of them named).
fn category_error(feature: &Feature) -> (&'static str, Cow<'static, str>) {
    let categories = feature.categories.as_deref().unwrap_or_default();
    let shown: Vec<String> = categories
        .iter()
        .take(LISTED_CATEGORIES)
        .map(|c| match c {
            Value::String(s) => format!("'{s}'"),
            other => other.to_string(),
        })
        .collect();
    let list = match shown.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] if categories.len() <= LISTED_CATEGORIES => {
            format!("{} or {last}", init.join(", "))
        }
        all => format!(
            "{}, ... ({} categories in all)",
            all.join(", "),
            categories.len()
        ),
    };
    ("enum", Cow::Owned(format!("Input should be {list}")))
}

/// Reads a string feature's value: a non-empty JSON string without NUL characters.
fn string(raw: &RawValue) -> Result<Cow<'_, str>, (&'static str, &'static str)> {
    let text = raw.get();
    if !text.starts_with('"') {
        return Err(("string_type", "Input should be a valid string"));
    }
    // The raw text is a JSON string the parser has checked: without escapes, its inside is
    // the value.
    let inside = &text[1..text.len() - 1];
    let s: Cow<'_, str> = if inside.contains('\\') {
        serde_json::from_str(text).map_err(|_| ("string_type", "Input should be a valid string"))?
    } else {
        Cow::Borrowed(inside)
    };
    if s.is_empty() {
        return Err((
            "string_too_short",
            "String should have at least 1 character (send null for a missing value)",
        ));
    }
    if s.contains('\0') {
        return Err((
            "string_type",
            "Input should be a valid string without NUL characters",
        ));
    }
    Ok(s)
}

/// Reads a finite number from a JSON number or numeric string.
fn number(raw: &RawValue) -> Result<f64, (&'static str, &'static str)> {
    let text = raw.get();
    let parsed = match text.as_bytes().first() {
        Some(b'"') => {
            let s: Cow<'_, str> = serde_json::from_str(text).map_err(|_| FLOAT_PARSING)?;
            s.trim().parse::<f64>().map_err(|_| FLOAT_PARSING)?
        }
        Some(b'-' | b'0'..=b'9') => text.parse::<f64>().map_err(|_| FLOAT_TYPE)?,
        _ => return Err(FLOAT_TYPE),
    };
    if parsed.is_finite() {
        Ok(parsed)
    } else {
        Err(("finite_number", "Input should be a finite number"))
    }
}

const FLOAT_TYPE: (&str, &str) = ("float_type", "Input should be a valid number");
const FLOAT_PARSING: (&str, &str) = (
    "float_parsing",
    "Input should be a valid number, unable to parse string as a number",
);

fn error(kind: &'static str, loc: Vec<Value>, msg: &str, input: Value) -> FieldError {
    let mut full = vec![Value::from("body")];
    full.extend(loc);
    FieldError {
        kind,
        loc: full,
        msg: msg.to_string(),
        input,
        ctx: None,
    }
}

/// FastAPI's answer to a body that is not JSON: `json_invalid` at the byte position. A bare
/// `NaN` or `Infinity` (which Python's `json.dumps` writes by default) is named as such.
fn json_invalid(body: &[u8], e: &serde_json::Error) -> FieldError {
    let position = byte_offset(body, e.line(), e.column());
    let message = match non_finite_literal(body, position) {
        Some(literal) => format!("{literal} is not valid JSON: send a finite number ({e})"),
        None => e.to_string(),
    };
    FieldError {
        kind: "json_invalid",
        loc: vec!["body".into(), position.into()],
        msg: "JSON decode error".into(),
        input: Value::Object(Default::default()),
        ctx: Some(serde_json::json!({ "error": message })),
    }
}

/// The non-finite literal (`NaN`, `Infinity`, `-Infinity`) where JSON parsing stopped, if any.
fn non_finite_literal(body: &[u8], position: usize) -> Option<&'static str> {
    let at = |offset: usize| body.get(offset..).unwrap_or_default();
    let candidates = [position, position.saturating_sub(1)];
    ["-Infinity", "Infinity", "NaN"]
        .into_iter()
        .find(|literal| {
            candidates
                .iter()
                .any(|&p| at(p).starts_with(literal.as_bytes()))
        })
}

fn byte_offset(body: &[u8], line: usize, column: usize) -> usize {
    let line_start: usize = body
        .split(|b| *b == b'\n')
        .take(line.saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    (line_start + column.saturating_sub(1)).min(body.len())
}

/// The offending input as JSON; text that is no JSON value (`1e999`) stays a string, and a
/// value larger than [`MAX_ECHOED_BYTES`] becomes a summary such as
/// `"<array of 2000001 bytes>"`.
fn to_value(raw: &RawValue) -> Value {
    let text = raw.get();
    if text.len() > MAX_ECHOED_BYTES {
        let kind = match text.as_bytes()[0] {
            b'[' => "array",
            b'{' => "object",
            b'"' => "string",
            _ => "value",
        };
        return Value::String(format!("<{kind} of {} bytes>", text.len()));
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// An object's members in order, values kept as raw JSON.
type Fields<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// A JSON document or list item as validation needs it, read in one pass: an object keeps its
/// members' raw text, the top-level list its items; anything else is only ever an error's input.
enum Item<'a> {
    Object(Fields<'a>),
    /// The top-level list: its first items (at most the row limit + 1) and its length.
    List {
        items: Vec<Item<'a>>,
        len: usize,
    },
    Other(Value),
}

impl Item<'_> {
    /// The item as a JSON value, for an error's `input`; an object larger than
    /// [`MAX_ECHOED_BYTES`] becomes a summary string.
    fn to_value(&self) -> Value {
        match self {
            Item::Object(fields) => {
                let size: usize = fields
                    .iter()
                    .map(|(k, raw)| k.len() + raw.get().len())
                    .sum();
                if size > MAX_ECHOED_BYTES {
                    return Value::String(format!("<object with {} members>", fields.len()));
                }
                Value::Object(
                    fields
                        .iter()
                        .map(|(key, raw)| (key.to_string(), to_value(raw)))
                        .collect(),
                )
            }
            Item::List { items, .. } => Value::Array(items.iter().map(Item::to_value).collect()),
            Item::Other(value) => value.clone(),
        }
    }
}

/// An object key, borrowed from the body unless it holds escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Reads an [`Item`]. Only the document reads a list item by item (`list_limit` is set there);
/// a list inside a list is never a valid row, so it is kept as a plain value. Items past the
/// limit are skipped, only counted, so an oversized batch costs no memory per item.
struct ItemSeed {
    list_limit: Option<usize>,
}

impl<'de> DeserializeSeed<'de> for ItemSeed {
    type Value = Item<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Item<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed {
    type Value = Item<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item<'de>, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(4));
        while let Some(Key(key)) = map.next_key()? {
            let value: &'de RawValue = map.next_value()?;
            fields.push((key, value));
        }
        Ok(Item::Object(fields))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item<'de>, A::Error> {
        let Some(limit) = self.list_limit else {
            // A list inside the top-level list is only ever an error's input: read a bounded
            // copy of it.
            let mut budget = MAX_ECHOED_BYTES;
            let value = Echo(&mut budget).visit_seq(seq)?.unwrap_or_else(|| {
                Value::String(format!("<array larger than {MAX_ECHOED_BYTES} bytes>"))
            });
            return Ok(Item::Other(value));
        };
        let mut items = Vec::new();
        while items.len() <= limit {
            match seq.next_element_seed(ItemSeed { list_limit: None })? {
                Some(item) => items.push(item),
                None => {
                    let len = items.len();
                    return Ok(Item::List { items, len });
                }
            }
        }
        let mut len = items.len();
        while seq.next_element::<IgnoredAny>()?.is_some() {
            len += 1;
        }
        Ok(Item::List { items, len })
    }

    fn visit_bool<E>(self, v: bool) -> Result<Item<'de>, E> {
        Ok(Item::Other(v.into()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Item<'de>, E> {
        Ok(Item::Other(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Item<'de>, E> {
        Ok(Item::Other(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Item<'de>, E> {
        Ok(Item::Other(v.into()))
    }

    fn visit_str<E>(self, v: &str) -> Result<Item<'de>, E> {
        Ok(Item::Other(v.into()))
    }

    fn visit_unit<E>(self) -> Result<Item<'de>, E> {
        Ok(Item::Other(Value::Null))
    }
}

/// Reads a JSON value to echo in an error, spending its budget (about one unit per byte of
/// JSON) as it goes; once the budget is spent the rest is skipped unparsed and the value is
/// `None`, so a small body cannot make a large value.
struct Echo<'b>(&'b mut usize);

impl Echo<'_> {
    /// Takes `cost` from the budget; false when it is spent.
    fn spend(&mut self, cost: usize) -> bool {
        match self.0.checked_sub(cost) {
            Some(left) => {
                *self.0 = left;
                true
            }
            None => {
                *self.0 = 0;
                false
            }
        }
    }

    fn scalar<E>(mut self, value: Value, cost: usize) -> Result<Option<Value>, E> {
        Ok(self.spend(cost).then_some(value))
    }
}

impl<'de> DeserializeSeed<'de> for Echo<'_> {
    type Value = Option<Value>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Echo<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while self.spend(1) {
            match seq.next_element_seed(Echo(&mut *self.0))? {
                Some(Some(item)) => items.push(item),
                Some(None) => break,
                None => return Ok(Some(Value::Array(items))),
            }
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = serde_json::Map::new();
        while self.spend(1) {
            let Some(Key(key)) = map.next_key()? else {
                return Ok(Some(Value::Object(members)));
            };
            if !self.spend(key.len()) {
                map.next_value::<IgnoredAny>()?;
                break;
            }
            match map.next_value_seed(Echo(&mut *self.0))? {
                Some(value) => members.insert(key.into_owned(), value),
                None => break,
            };
        }
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        self.scalar(v.into(), 5)
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        self.scalar(v.into(), 8)
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        self.scalar(v.into(), 8)
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        self.scalar(v.into(), 8)
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        self.scalar(v.into(), v.len() + 2)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        self.scalar(Value::Null, 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features() -> Vec<String> {
        [
            "gdp_per_capita",
            "unemployment_rate",
            "gdp_growth_rate_lag",
            "gdp_growth_rate_ma",
        ]
        .map(String::from)
        .to_vec()
    }

    fn parse_str(body: &str) -> Result<Rows, Vec<FieldError>> {
        parse(body.as_bytes(), &features(), 3)
    }

    #[test]
    fn parses_the_seed_example() {
        let rows = parse_str(
            r#"{"gdp_per_capita": 50000, "unemployment_rate": 5.2, "gdp_growth_rate_lag": 2.1, "gdp_growth_rate_ma": 2.3}"#,
        )
        .unwrap();
        assert_eq!(rows.values, vec![50000.0, 5.2, 2.1, 2.3]);
        assert!(!rows.batch);
    }

    #[test]
    fn orders_fields_by_feature_and_accepts_numeric_strings() {
        let rows = parse_str(
            r#"[{"gdp_growth_rate_ma": 4, "gdp_growth_rate_lag": 3, "unemployment_rate": "2", "gdp_per_capita": 1}]"#,
        )
        .unwrap();
        assert_eq!(rows.values, vec![1.0, 2.0, 3.0, 4.0]);
        assert!(rows.batch);
    }

    fn single_error(body: &str) -> FieldError {
        let errors = parse_str(body).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.into_iter().next().unwrap()
    }

    #[test]
    fn each_bad_field_is_located() {
        let base = r#""gdp_per_capita": 1, "unemployment_rate": 2, "gdp_growth_rate_lag": 3"#;
        let cases = [
            (format!("{{{base}}}"), "missing", "gdp_growth_rate_ma"),
            (
                format!(r#"{{{base}, "gdp_growth_rate_ma": null}}"#),
                "float_type",
                "gdp_growth_rate_ma",
            ),
            (
                format!(r#"{{{base}, "gdp_growth_rate_ma": "abc"}}"#),
                "float_parsing",
                "gdp_growth_rate_ma",
            ),
            (
                format!(r#"{{{base}, "gdp_growth_rate_ma": "NaN"}}"#),
                "finite_number",
                "gdp_growth_rate_ma",
            ),
            (
                format!(r#"{{{base}, "gdp_growth_rate_ma": 1e999}}"#),
                "finite_number",
                "gdp_growth_rate_ma",
            ),
            (
                format!(r#"{{{base}, "gdp_growth_rate_ma": true}}"#),
                "float_type",
                "gdp_growth_rate_ma",
            ),
            (
                format!(r#"{{{base}, "gdp_growth_rate_ma": [1]}}"#),
                "float_type",
                "gdp_growth_rate_ma",
            ),
            (
                format!(r#"{{{base}, "gdp_growth_rate_ma": 1, "x": 1}}"#),
                "extra_forbidden",
                "x",
            ),
        ];
        for (body, kind, field) in cases {
            let e = single_error(&body);
            assert_eq!(e.kind, kind, "{body}");
            assert_eq!(
                e.loc,
                vec![Value::from("body"), Value::from(field)],
                "{body}"
            );
        }
    }

    #[test]
    fn batch_errors_carry_the_row_index() {
        let good = r#"{"gdp_per_capita": 1, "unemployment_rate": 2, "gdp_growth_rate_lag": 3, "gdp_growth_rate_ma": 4}"#;
        let body = format!(r#"[{good}, {{"gdp_per_capita": 1}}]"#);
        let errors = parse_str(&body).unwrap_err();
        assert_eq!(errors.len(), 3);
        assert_eq!(
            errors[0].loc,
            vec![Value::from("body"), 1.into(), "unemployment_rate".into()]
        );
    }

    #[test]
    fn document_level_problems() {
        assert_eq!(single_error("").kind, "missing");
        assert_eq!(single_error("{").kind, "json_invalid");
        assert_eq!(single_error("[]").kind, "too_short");
        assert_eq!(single_error("[1,2,3,4]").kind, "too_long");
        assert_eq!(single_error("42").kind, "model_attributes_type");
        let e = single_error("[1]");
        assert_eq!(e.kind, "model_attributes_type");
        assert_eq!(e.loc, vec![Value::from("body"), 0.into()]);
    }

    #[test]
    fn oversized_batches_are_counted_to_the_end() {
        let row = r#"{"gdp_per_capita": 1, "unemployment_rate": 2, "gdp_growth_rate_lag": 3, "gdp_growth_rate_ma": 4}"#;
        let at_limit = format!("[{}]", [row; 3].join(","));
        assert_eq!(parse_str(&at_limit).unwrap().values.len(), 12);
        let e = single_error(&format!("[{}, 1, [2], {{}}]", [row; 3].join(",")));
        assert_eq!(e.kind, "too_long");
        assert_eq!(e.ctx.unwrap()["actual_length"], 6);
        // Items past the limit are skipped, but still checked as JSON.
        assert_eq!(single_error("[1, 2, 3, 4, }]").kind, "json_invalid");
    }

    #[test]
    fn a_bad_row_is_echoed_as_json() {
        let e = single_error(
            r#"[{"gdp_per_capita": 1, "unemployment_rate": 2, "gdp_growth_rate_lag": 3}]"#,
        );
        assert_eq!(e.kind, "missing");
        assert_eq!(
            e.input,
            serde_json::json!({"gdp_per_capita": 1, "unemployment_rate": 2, "gdp_growth_rate_lag": 3})
        );
        let e = single_error(r#"[[1, "a", null]]"#);
        assert_eq!(e.kind, "model_attributes_type");
        assert_eq!(e.input, serde_json::json!([1, "a", null]));
        // A number no f64 holds is readable only inside a row, where it is a field's raw text.
        assert_eq!(single_error("[1e999]").kind, "json_invalid");
    }

    #[test]
    fn bare_non_finite_literals_are_named() {
        for (literal, body) in [
            ("NaN", r#"{"gdp_per_capita": NaN}"#),
            ("Infinity", r#"{"gdp_per_capita": Infinity}"#),
            ("-Infinity", r#"[{"gdp_per_capita": -Infinity}]"#),
        ] {
            let e = single_error(body);
            assert_eq!(e.kind, "json_invalid", "{body}");
            let message = e.ctx.unwrap()["error"].as_str().unwrap().to_string();
            assert!(
                message.starts_with(&format!("{literal} is not valid JSON")),
                "{body}: {message}"
            );
        }
        let e = single_error(r#"{"gdp_per_capita": Nope}"#);
        assert!(!e.ctx.unwrap()["error"].as_str().unwrap().contains("finite"));
    }

    #[test]
    fn errors_are_listed_up_to_the_limit_then_counted() {
        let extra = MAX_LISTED_ERRORS + 1000;
        let keys: Vec<String> = (0..extra).map(|i| format!(r#""k{i}": 0"#)).collect();
        let body = format!("{{{}}}", keys.join(","));
        let errors = parse_str(&body).unwrap_err();
        // 4 missing features + `extra` unknown keys: the first MAX listed, then one summary.
        assert_eq!(errors.len(), MAX_LISTED_ERRORS + 1);
        let last = errors.last().unwrap();
        assert_eq!(last.kind, "too_many_errors");
        assert_eq!(
            last.ctx.as_ref().unwrap()["not_listed"],
            extra + 4 - MAX_LISTED_ERRORS
        );
        // A row too large to echo in full is summarised in its `missing` errors.
        assert_eq!(errors[0].kind, "missing");
        assert_eq!(
            errors[0].input,
            Value::String(format!("<object with {extra} members>"))
        );
        // Under the limit nothing is summarised: every error is listed.
        let errors = parse_str(r#"[{}, {}, {}]"#).unwrap_err();
        assert_eq!(errors.len(), 12);
        assert!(errors.iter().all(|e| e.kind == "missing"));
    }

    #[test]
    fn a_large_field_value_is_summarised_in_its_error() {
        let big = vec!["0"; 10_000].join(",");
        let errors =
            parse_str(&format!(r#"{{"x": [{big}], "gdp_per_capita": "{big}"}}"#)).unwrap_err();
        let input = |kind: &str| {
            let e = errors.iter().find(|e| e.kind == kind).unwrap();
            e.input.clone()
        };
        assert_eq!(
            input("extra_forbidden"),
            Value::String(format!("<array of {} bytes>", big.len() + 2))
        );
        assert_eq!(
            input("float_parsing"),
            Value::String(format!("<string of {} bytes>", big.len() + 2))
        );
        // A small one is echoed as it was sent.
        let e = single_error(
            r#"{"gdp_per_capita": [1], "unemployment_rate": 1, "gdp_growth_rate_lag": 1, "gdp_growth_rate_ma": 1}"#,
        );
        assert_eq!(e.input, serde_json::json!([1]));
    }

    #[test]
    fn a_large_list_row_is_summarised_in_its_error() {
        let big = vec!["0"; 10_000].join(",");
        let e = single_error(&format!("[[{big}]]"));
        assert_eq!(e.kind, "model_attributes_type");
        assert_eq!(
            e.input,
            Value::String(format!("<array larger than {MAX_ECHOED_BYTES} bytes>"))
        );
        let e = single_error(&format!(r#"[[1, "a", null, {{"k": [true]}}, [{big}]]]"#));
        assert!(
            e.input.as_str().unwrap().starts_with("<array larger"),
            "{:?}",
            e.input
        );
        // A small one is echoed as it was sent.
        let e = single_error(r#"[[1, "a", null, {"k": [true, 2.5]}]]"#);
        assert_eq!(
            e.input,
            serde_json::json!([1, "a", null, {"k": [true, 2.5]}])
        );
    }

    #[test]
    fn string_features_nulls_and_categories() {
        let mut color = Feature::string("color", true);
        color.categories = Some(vec!["red".into(), "blue".into()]);
        let mut size = Feature::number("size", false);
        size.categories = Some(vec![1.into(), 2.into()]);
        let features = [
            Feature::number("x", true),
            color,
            size,
            Feature::string("s", false),
        ];
        let parse = |body: &str| parse_features(body.as_bytes(), &features, 10);
        let rows = parse(
            r#"[{"x": null, "color": "red", "size": 2, "s": "a"}, {"x": "1.5", "color": null, "size": 1.0, "s": "é"}]"#,
        )
        .unwrap();
        assert!(rows.values[0].is_nan());
        assert_eq!(rows.values[1..], [2.0, 1.5, 1.0]);
        assert_eq!(rows.strings, ["red", "a", "", "é"]);
        let escaped = parse(r#"{"x": 1, "color": "r\u0065d", "size": 1, "s": "a\"b"}"#).unwrap();
        assert_eq!(escaped.strings, ["red", "a\"b"]);
        let errors = parse(r#"{"x": 1, "color": "green", "size": 3, "s": null}"#).unwrap_err();
        let kinds: Vec<(&str, Value, &str)> = errors
            .iter()
            .map(|e| (e.kind, e.loc[1].clone(), e.msg.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("enum", "color".into(), "Input should be 'red' or 'blue'"),
                ("enum", "size".into(), "Input should be 1 or 2"),
                ("string_type", "s".into(), "Input should be a valid string"),
            ]
        );
        assert_eq!(errors[0].input, Value::from("green"));
        for (body, kind) in [
            (
                r#"{"x": 1, "color": "red", "size": 1, "s": 5}"#,
                "string_type",
            ),
            (
                r#"{"x": 1, "color": "red", "size": 1, "s": ""}"#,
                "string_too_short",
            ),
            (
                r#"{"x": 1, "color": "red", "size": 1, "s": "a\u0000"}"#,
                "string_type",
            ),
            (
                r#"{"x": 1, "color": "red", "size": null, "s": "a"}"#,
                "float_type",
            ),
        ] {
            let errors = parse(body).unwrap_err();
            assert_eq!(errors.len(), 1, "{body}");
            assert_eq!(errors[0].kind, kind, "{body}");
        }
    }

    #[test]
    fn json_error_position_is_a_byte_offset() {
        let e = single_error("{\n \"a\": }");
        assert_eq!(e.loc[1], Value::from(8));
    }
}

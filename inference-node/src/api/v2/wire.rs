//! Open Inference Protocol (KServe V2) wire types and request decoding.
//!
//! A model has the input `input` (`[-1, n_number_features]`); a regressor one output `variable`
//! (`[-1, n_targets]`, FP64), a classifier two: `label` (`[-1]`; INT64, BYTES or BOOL as its
//! classes are integers, strings or booleans) and `probabilities` (`[-1, n_classes]`, FP64).
//! Requests may send FP64, FP32, INT64 or INT32 data (FP32 values are rounded to single
//! precision, as a float32 tensor would hold them), as JSON (nested or flat) or as binary
//! tensor data ([`Datatype::read`]: little-endian, row-major; the framing is
//! [`super::binary`]'s). A model with string features also takes `input_strings` (BYTES
//! `[-1, n_string_features]`, JSON strings or binary: a 4-byte little-endian length, then the
//! bytes, per element; `""` is a missing value), and its `input` holds only the numeric
//! columns (left out when there are none). In binary FP64/FP32 data, NaN is a missing value
//! where the column is nullable.

use std::fmt;

use bytes::Bytes;

use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use onnx_model::ModelInfo;
use onnx_model::contract::{
    ClassLabel, Feature, FeatureType, INPUT_NAME, INPUT_STRINGS_NAME, LABEL_NAME, OUTPUT_NAME,
    PROBABILITIES_NAME, Task,
};

use crate::error::NodeError;

/// The platform string reported for every model.
pub const PLATFORM: &str = "onnx_onnxv1";
/// The only model version.
pub const VERSION: &str = "1";

/// `GET /v2` body.
#[derive(Debug, Serialize)]
pub struct ServerMetadata {
    /// Server name.
    pub name: &'static str,
    /// Server version.
    pub version: &'static str,
    /// Supported protocol extensions.
    pub extensions: Vec<&'static str>,
}

/// One tensor's description in model metadata.
#[derive(Debug, Serialize)]
pub struct TensorMetadata {
    /// Tensor name.
    pub name: &'static str,
    /// Element type.
    pub datatype: &'static str,
    /// Shape, `-1` for the batch dimension.
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{name}` body.
#[derive(Debug, Serialize)]
pub struct ModelMetadata {
    /// Model name.
    pub name: String,
    /// Available versions.
    pub versions: Vec<String>,
    /// Backend platform.
    pub platform: &'static str,
    /// Inputs.
    pub inputs: Vec<TensorMetadata>,
    /// Outputs.
    pub outputs: Vec<TensorMetadata>,
    /// What the model is beyond its tensors: task, features, classes.
    pub parameters: ModelParameters,
}

/// The `parameters` of model metadata.
#[derive(Debug, Serialize)]
pub struct ModelParameters {
    /// `regression` or `classification`.
    pub task: Task,
    /// Each input column: name, type (`number`), nullable.
    pub features: Vec<Feature>,
    /// A classifier's classes, typed as sklearn's `classes_`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<ClassLabel>,
}

impl ModelMetadata {
    /// Describes `info` in V2 terms.
    pub fn from_info(info: &ModelInfo) -> ModelMetadata {
        let outputs = match info.task {
            Task::Regression => vec![TensorMetadata {
                name: OUTPUT_NAME,
                datatype: "FP64",
                shape: vec![-1, info.n_targets as i64],
            }],
            Task::Classification => vec![
                TensorMetadata {
                    name: LABEL_NAME,
                    datatype: label_datatype(&info.classes),
                    shape: vec![-1],
                },
                TensorMetadata {
                    name: PROBABILITIES_NAME,
                    datatype: "FP64",
                    shape: vec![-1, info.n_classes() as i64],
                },
            ],
        };
        ModelMetadata {
            name: info.name.clone(),
            versions: vec![VERSION.to_string()],
            platform: PLATFORM,
            inputs: input_metadata(info),
            outputs,
            parameters: ModelParameters {
                task: info.task,
                features: info.features.clone(),
                classes: info.classes.clone(),
            },
        }
    }
}

/// A model's inputs: `input` (FP64, the numeric columns; left out when every column is a
/// string) and, with string columns, `input_strings` (BYTES).
fn input_metadata(info: &ModelInfo) -> Vec<TensorMetadata> {
    let (n_numbers, n_strings) = (info.n_number_features(), info.n_string_features());
    let mut inputs = Vec::new();
    if n_numbers > 0 || n_strings == 0 {
        inputs.push(TensorMetadata {
            name: INPUT_NAME,
            datatype: "FP64",
            shape: vec![-1, n_numbers as i64],
        });
    }
    if n_strings > 0 {
        inputs.push(TensorMetadata {
            name: INPUT_STRINGS_NAME,
            datatype: "BYTES",
            shape: vec![-1, n_strings as i64],
        });
    }
    inputs
}

/// The V2 datatype of a classifier's labels: INT64, BYTES (strings) or BOOL.
pub fn label_datatype(classes: &[ClassLabel]) -> &'static str {
    match classes.first() {
        Some(ClassLabel::Bool(_)) => "BOOL",
        Some(ClassLabel::Str(_)) => "BYTES",
        Some(ClassLabel::Int(_)) | None => "INT64",
    }
}

/// The names of `info`'s outputs.
pub fn output_names(info: &ModelInfo) -> &'static [&'static str] {
    match info.task {
        Task::Regression => &[OUTPUT_NAME],
        Task::Classification => &[LABEL_NAME, PROBABILITIES_NAME],
    }
}

/// `POST /v2/models/{name}/infer` body.
#[derive(Debug, Deserialize)]
pub struct InferRequest {
    /// Request ID, echoed in the response.
    #[serde(default)]
    pub id: Option<String>,
    /// Request parameters (`binary_data_output`; any other is skipped).
    #[serde(default)]
    pub parameters: Option<RequestParameters>,
    /// Input tensors.
    pub inputs: Vec<InferInput>,
    /// Requested outputs; absent means all.
    #[serde(default)]
    pub outputs: Option<Vec<RequestedOutput>>,
}

/// One input tensor of an infer request.
#[derive(Debug, Deserialize)]
pub struct InferInput {
    /// Tensor name.
    pub name: String,
    /// Tensor shape.
    pub shape: Vec<i64>,
    /// Element type (`FP64`, `FP32`, `INT64`, `INT32` here; `BYTES` is read and refused).
    pub datatype: String,
    /// Tensor parameters (`binary_data_size` when the data is binary, after the JSON).
    #[serde(default)]
    pub parameters: Option<TensorParameters>,
    /// Row-major values, nested or flat (decoded once the datatype is known to be numeric).
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
    /// The tensor's binary data, cut from the body by [`super::binary::attach`].
    #[serde(skip)]
    pub binary: Option<Bytes>,
}

impl InferInput {
    /// The input's `binary_data_size` parameter, if any, as a byte count.
    pub fn binary_data_size(&self) -> Result<Option<usize>, NodeError> {
        let Some(size) = self
            .parameters
            .as_ref()
            .and_then(|p| p.binary_data_size.as_ref())
        else {
            return Ok(None);
        };
        match size.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) => Ok(Some(n)),
            None => Err(NodeError::BadRequest(format!(
                "input '{}' has binary_data_size {size}; expected a byte count",
                self.name
            ))),
        }
    }
}

/// A requested output.
#[derive(Debug, Deserialize)]
pub struct RequestedOutput {
    /// Output name.
    pub name: String,
    /// Output parameters (`binary_data: true` asks for the output as binary data).
    #[serde(default)]
    pub parameters: Option<TensorParameters>,
}

/// The request parameters the node reads; any other is skipped without being parsed into
/// memory (a client may send anything there).
#[derive(Debug, Default, Deserialize)]
pub struct RequestParameters {
    /// `true` asks for every output as binary data (an output's own `binary_data` wins).
    #[serde(default)]
    pub binary_data_output: Option<bool>,
}

/// The tensor parameters the node reads; any other is skipped without being parsed into
/// memory (a client may send anything there).
#[derive(Debug, Default, Deserialize)]
pub struct TensorParameters {
    /// On an input: the size in bytes of its binary data (checked by
    /// [`InferInput::binary_data_size`], so that a bad value is a 400 naming the input).
    #[serde(default)]
    pub binary_data_size: Option<serde_json::Value>,
    /// On an output: `true` asks for it as binary data.
    #[serde(default)]
    pub binary_data: Option<bool>,
}

impl InferRequest {
    /// Whether the output `name` is to be sent as binary data: its own `binary_data`
    /// parameter, else the request's `binary_data_output`, else no.
    pub fn wants_binary_output(&self, name: &str) -> bool {
        let own = self
            .outputs
            .iter()
            .flatten()
            .find(|output| output.name == name)
            .and_then(|output| output.parameters.as_ref()?.binary_data);
        let default = self.parameters.as_ref().and_then(|p| p.binary_data_output);
        own.or(default).unwrap_or(false)
    }
}

/// `POST /v2/models/{name}/infer` response body.
#[derive(Debug, Serialize)]
pub struct InferResponse {
    /// Model name.
    pub model_name: String,
    /// Model version.
    pub model_version: String,
    /// The request's ID, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Output tensors.
    pub outputs: Vec<OutputTensor>,
}

/// An output tensor.
#[derive(Debug, Serialize)]
pub struct OutputTensor {
    /// Tensor name.
    pub name: &'static str,
    /// Element type.
    pub datatype: &'static str,
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values; absent when they travel as binary data after the JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<OutputData>,
    /// `binary_data_size` when the values travel as binary data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<OutputParameters>,
}

/// The parameters of an output tensor sent as binary data.
#[derive(Debug, Serialize)]
pub struct OutputParameters {
    /// Size of the tensor's binary data in bytes.
    pub binary_data_size: usize,
}

impl OutputTensor {
    /// An output tensor with its values in the JSON.
    pub fn new(
        name: &'static str,
        datatype: &'static str,
        shape: Vec<usize>,
        data: OutputData,
    ) -> OutputTensor {
        OutputTensor {
            name,
            datatype,
            shape,
            data: Some(data),
            parameters: None,
        }
    }

    /// Moves the values out of the JSON into `out` as binary tensor data (row-major; FP64 and
    /// INT64 little-endian, BOOL one byte each, BYTES a 4-byte little-endian length then the
    /// bytes) and records their size in `parameters.binary_data_size`.
    pub fn move_data_to_binary(&mut self, out: &mut Vec<u8>) {
        let start = out.len();
        match self.data.take() {
            Some(OutputData::Fp64(values)) => {
                out.reserve(values.len() * 8);
                for value in values {
                    out.extend_from_slice(&value.to_le_bytes());
                }
            }
            Some(OutputData::Labels(labels)) => {
                for label in labels {
                    match label {
                        ClassLabel::Int(i) => out.extend_from_slice(&i.to_le_bytes()),
                        ClassLabel::Bool(b) => out.push(u8::from(b)),
                        ClassLabel::Str(s) => {
                            let length = u32::try_from(s.len()).unwrap_or(u32::MAX);
                            out.extend_from_slice(&length.to_le_bytes());
                            out.extend_from_slice(s.as_bytes());
                        }
                    }
                }
            }
            None => {}
        }
        self.parameters = Some(OutputParameters {
            binary_data_size: out.len() - start,
        });
    }
}

/// The element types an input may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datatype {
    /// 64-bit float.
    Fp64,
    /// 32-bit float (rounded to single precision when sent as JSON).
    Fp32,
    /// 64-bit signed integer.
    Int64,
    /// 32-bit signed integer.
    Int32,
    /// Strings (only `input_strings` takes them; on `input` they are read, then refused).
    Bytes,
}

impl Datatype {
    /// Parses a protocol datatype name; `None` for the ones the node does not take.
    pub fn parse(name: &str) -> Option<Datatype> {
        Some(match name {
            "FP64" => Datatype::Fp64,
            "FP32" => Datatype::Fp32,
            "INT64" => Datatype::Int64,
            "INT32" => Datatype::Int32,
            "BYTES" => Datatype::Bytes,
            _ => return None,
        })
    }

    /// Size of one element in binary data; `None` for BYTES (length-prefixed elements).
    pub fn size(self) -> Option<usize> {
        match self {
            Datatype::Fp64 | Datatype::Int64 => Some(8),
            Datatype::Fp32 | Datatype::Int32 => Some(4),
            Datatype::Bytes => None,
        }
    }

    /// Reads little-endian binary data of a numeric type into values (exactly: FP32 and
    /// INT32 convert to f64 without loss; INT64 beyond 2^53 rounds, as its JSON form does).
    /// The caller checks that the length is a whole number of elements.
    pub fn read(self, bytes: &[u8]) -> Vec<f64> {
        fn chunks<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
            bytes
                .chunks_exact(N)
                .map(|c| c.try_into().expect("chunks_exact yields N bytes"))
        }
        match self {
            Datatype::Fp64 => chunks(bytes).map(f64::from_le_bytes).collect(),
            Datatype::Fp32 => chunks(bytes)
                .map(|b| f64::from(f32::from_le_bytes(b)))
                .collect(),
            Datatype::Int64 => chunks(bytes)
                .map(|b| i64::from_le_bytes(b) as f64)
                .collect(),
            Datatype::Int32 => chunks(bytes)
                .map(|b| f64::from(i32::from_le_bytes(b)))
                .collect(),
            Datatype::Bytes => Vec::new(),
        }
    }
}

/// Reads BYTES binary data: each element a 4-byte little-endian length, then that many bytes
/// of UTF-8. Says what is wrong when the data does not split into elements that way.
pub fn read_strings(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut strings = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some((length, tail)) = rest.split_first_chunk::<4>() else {
            return Err(format!(
                "element {} has a {}-byte length prefix; BYTES elements start with a 4-byte little-endian length",
                strings.len(),
                rest.len()
            ));
        };
        let length = u32::from_le_bytes(*length) as usize;
        if length > tail.len() {
            return Err(format!(
                "element {} is {length} bytes long but only {} bytes are left",
                strings.len(),
                tail.len()
            ));
        }
        let (string, tail) = tail.split_at(length);
        let string = std::str::from_utf8(string)
            .map_err(|e| format!("element {} is not UTF-8 ({e})", strings.len()))?;
        strings.push(string.to_string());
        rest = tail;
    }
    Ok(strings)
}

/// An output tensor's values.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum OutputData {
    /// FP64 values.
    Fp64(Vec<f64>),
    /// Class labels: JSON numbers (INT64), strings (BYTES) or booleans (BOOL).
    Labels(Vec<ClassLabel>),
}

/// Reads a tensor's `data` for the shape `dims` into row-major values: either flat (one list
/// of numbers; the caller checks the count) or nested exactly as the shape says (a list of
/// `dims[0]` lists of `dims[1]` numbers). Anything in between (`[[1, 2, 3], [4]]` for
/// `[2, 2]`, numbers mixed with lists) is refused rather than flattened.
fn read_tensor_data(json: &str, dims: &[usize]) -> Result<Vec<f64>, serde_json::Error> {
    let mut values = Vec::new();
    let mut reader = serde_json::Deserializer::from_str(json);
    TopLevel {
        values: &mut values,
        dims,
    }
    .deserialize(&mut reader)?;
    reader.end()?;
    Ok(values)
}

/// What one element of a `data` list turned out to be.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Element {
    Number,
    List,
}

/// The `data` list itself: its first element decides between flat and nested.
struct TopLevel<'a> {
    values: &'a mut Vec<f64>,
    dims: &'a [usize],
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of numbers, or of lists of numbers as the shape nests them")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = &self.dims[1..];
        let mut first = None;
        let mut len = 0;
        while let Some(element) = seq.next_element_seed(AnyElement {
            values: &mut *self.values,
            dims: inner,
        })? {
            len += 1;
            match first {
                None => first = Some(element),
                Some(kind) if kind != element => {
                    return Err(mixing_error());
                }
                Some(_) => {}
            }
        }
        if first == Some(Element::List) && len != self.dims[0] {
            return Err(nesting_error(len, self.dims[0]));
        }
        Ok(())
    }
}

/// One element of a `data` list: a number, or a list nested as `dims` says.
struct AnyElement<'a> {
    values: &'a mut Vec<f64>,
    dims: &'a [usize],
}

impl<'de> DeserializeSeed<'de> for AnyElement<'_> {
    type Value = Element;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Element, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AnyElement<'_> {
    type Value = Element;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("numbers, or lists of numbers as the shape nests them")
    }
    fn visit_f64<E>(self, v: f64) -> Result<Element, E> {
        self.values.push(v);
        Ok(Element::Number)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Element, E> {
        self.values.push(v as f64);
        Ok(Element::Number)
    }
    fn visit_u64<E>(self, v: u64) -> Result<Element, E> {
        self.values.push(v as f64);
        Ok(Element::Number)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Element, A::Error> {
        let Some((&expected, inner)) = self.dims.split_first() else {
            return Err(serde::de::Error::custom(
                "is nested deeper than the shape: send numbers at the innermost level",
            ));
        };
        let innermost = if inner.is_empty() {
            Element::Number
        } else {
            Element::List
        };
        let mut len = 0;
        while let Some(element) = seq.next_element_seed(AnyElement {
            values: &mut *self.values,
            dims: inner,
        })? {
            if element != innermost {
                return Err(mixing_error());
            }
            len += 1;
        }
        if len != expected {
            return Err(nesting_error(len, expected));
        }
        Ok(Element::List)
    }
}

fn mixing_error<E: serde::de::Error>() -> E {
    E::custom("mixes numbers and lists: send one flat list, or lists nested as the shape")
}

fn nesting_error<E: serde::de::Error>(len: usize, expected: usize) -> E {
    E::custom(format!(
        "is nested unlike the shape: a list of {len} where the shape needs {expected}"
    ))
}

/// An infer request's rows, as the model's two inputs take them.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// Row-major numeric features, `n_rows * n_number_features` (NaN = missing).
    pub values: Vec<f64>,
    /// Row-major string features, `n_rows * n_string_features` (`""` = missing); empty for a
    /// model without string features.
    pub strings: Vec<String>,
    /// The number of rows.
    pub n_rows: usize,
}

/// [`decode_mixed`] for a model without string features: its rows (row-major) and count.
pub fn decode(
    request: &mut InferRequest,
    info: &ModelInfo,
    max_rows: usize,
) -> Result<(Vec<f64>, usize), NodeError> {
    let decoded = decode_mixed(request, info, max_rows)?;
    Ok((decoded.values, decoded.n_rows))
}

/// Checks an infer request against the model and returns its rows. A model without string
/// features takes one input, `input`; a model with string features takes `input` (its
/// numeric columns; left out when it has none) and `input_strings` (BYTES, its string
/// columns).
///
/// An input's values come from its JSON `data`, or from its binary data when
/// [`super::binary::attach`] has cut that from the body.
pub fn decode_mixed(
    request: &mut InferRequest,
    info: &ModelInfo,
    max_rows: usize,
) -> Result<Decoded, NodeError> {
    let bad = |m: String| NodeError::BadRequest(m);
    if let Some(outputs) = &request.outputs {
        let names = output_names(info);
        for output in outputs {
            if !names.contains(&output.name.as_str()) {
                let known = match names {
                    [only] => format!("the only output is '{only}'"),
                    many => format!("the outputs are '{}'", many.join("', '")),
                };
                return Err(bad(format!(
                    "unexpected inference output '{}' for model '{}': {known}",
                    output.name, info.name
                )));
            }
        }
    }
    if info.n_string_features() > 0 {
        return decode_with_strings(request, info, max_rows);
    }
    let [input] = request.inputs.as_mut_slice() else {
        return Err(bad(format!(
            "expected 1 input ('{INPUT_NAME}') for model '{}', got {}",
            info.name,
            request.inputs.len()
        )));
    };
    if input.name != INPUT_NAME {
        return Err(bad(format!(
            "unexpected inference input '{}' for model '{}': the input is '{INPUT_NAME}'",
            input.name, info.name
        )));
    }
    let (values, n_rows) = decode_numbers(input, info, max_rows)?;
    Ok(Decoded {
        values,
        strings: Vec::new(),
        n_rows,
    })
}

/// The inputs of a model with string features: `input_strings`, and `input` unless every
/// feature is a string.
fn decode_with_strings(
    request: &mut InferRequest,
    info: &ModelInfo,
    max_rows: usize,
) -> Result<Decoded, NodeError> {
    let bad = |m: String| NodeError::BadRequest(m);
    let n_numbers = info.n_number_features();
    let expected: &[&str] = if n_numbers > 0 {
        &[INPUT_NAME, INPUT_STRINGS_NAME]
    } else {
        &[INPUT_STRINGS_NAME]
    };
    let takes = || {
        let columns = |kind: FeatureType| {
            info.features
                .iter()
                .filter(|f| f.kind == kind)
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let strings = format!(
            "'{INPUT_STRINGS_NAME}' (BYTES [N, {}]: {})",
            info.n_string_features(),
            columns(FeatureType::String)
        );
        if n_numbers > 0 {
            format!(
                "'{INPUT_NAME}' (FP64 [N, {n_numbers}]: {}) and {strings}",
                columns(FeatureType::Number)
            )
        } else {
            strings
        }
    };
    for (i, input) in request.inputs.iter().enumerate() {
        if !expected.contains(&input.name.as_str()) {
            return Err(bad(format!(
                "unexpected inference input '{}' for model '{}': it takes {}",
                input.name,
                info.name,
                takes()
            )));
        }
        if request.inputs[..i].iter().any(|o| o.name == input.name) {
            return Err(bad(format!("input '{}' is sent twice", input.name)));
        }
    }
    if request.inputs.len() != expected.len() {
        return Err(bad(format!(
            "expected {} inputs for model '{}', got {}: it takes {}",
            expected.len(),
            info.name,
            request.inputs.len(),
            takes()
        )));
    }
    let mut numbers = None;
    let mut strings = None;
    for input in &mut request.inputs {
        if input.name == INPUT_NAME {
            numbers = Some(decode_numbers(input, info, max_rows)?);
        } else {
            strings = Some(decode_strings(input, info, max_rows)?);
        }
    }
    let (strings, n_rows) = strings.expect("input_strings is among the checked inputs");
    let values = match numbers {
        Some((_, rows)) if rows != n_rows => {
            return Err(bad(format!(
                "input '{INPUT_NAME}' has {rows} rows and input '{INPUT_STRINGS_NAME}' {n_rows}; they must have the same"
            )));
        }
        Some((values, _)) => values,
        None => Vec::new(),
    };
    Ok(Decoded {
        values,
        strings,
        n_rows,
    })
}

/// Reads the string columns (`input_strings`, BYTES `[N, n_string_features]`, JSON strings or
/// binary): `""` is a missing value where the column is nullable; a column with categories
/// takes nothing else.
fn decode_strings(
    input: &mut InferInput,
    info: &ModelInfo,
    max_rows: usize,
) -> Result<(Vec<String>, usize), NodeError> {
    let bad = |m: String| NodeError::BadRequest(m);
    let name = INPUT_STRINGS_NAME;
    if input.datatype != "BYTES" {
        return Err(bad(format!(
            "input '{name}' has datatype {}; expected BYTES (the string columns)",
            input.datatype
        )));
    }
    let columns: Vec<&Feature> = info
        .features
        .iter()
        .filter(|f| f.kind == FeatureType::String)
        .collect();
    let width = columns.len();
    let shape = &input.shape;
    let n_rows = match shape.as_slice() {
        [rows, cols] if *cols == width as i64 && *rows >= 1 => *rows as usize,
        _ => {
            return Err(bad(format!(
                "input '{name}' has shape {shape:?}; expected [N, {width}] with N >= 1"
            )));
        }
    };
    if n_rows > max_rows {
        return Err(bad(format!(
            "input '{name}' has {n_rows} rows; the limit is {max_rows} (INFERENCE_NODE_MAX_BATCH_ROWS)"
        )));
    }
    let count = n_rows * width;
    let strings = match (input.binary.take(), input.data.take()) {
        (Some(_), Some(_)) => {
            return Err(bad(format!(
                "input '{name}' has both data and binary_data_size: send one of them"
            )));
        }
        (Some(bytes), None) => read_strings(&bytes)
            .map_err(|e| bad(format!("input '{name}' binary BYTES data: {e}")))?,
        (None, data) => {
            if input.binary_data_size()?.is_some() {
                return Err(bad(format!(
                    "input '{name}' has binary_data_size, but the request has no Inference-Header-Content-Length header: send binary tensor data after the JSON, with that header"
                )));
            }
            let Some(data) = data else {
                return Err(bad(format!("input '{name}' has no data")));
            };
            read_string_data(data.get(), n_rows, width)
                .map_err(|e| bad(format!("input '{name}' data {e}")))?
        }
    };
    if strings.len() != count {
        return Err(bad(format!(
            "input '{name}' has {} BYTES elements; shape {shape:?} needs {count}",
            strings.len()
        )));
    }
    for (i, value) in strings.iter().enumerate() {
        let column = columns[i % width];
        let at = || {
            format!(
                "input '{name}' element {i} (row {}, column '{}')",
                i / width,
                column.name
            )
        };
        if value.is_empty() {
            if !column.nullable {
                return Err(bad(format!(
                    "{} is empty (a missing value), which '{}' cannot take",
                    at(),
                    column.name
                )));
            }
        } else if value.contains('\0') {
            return Err(bad(format!("{} holds a NUL character", at())));
        } else if let Some(categories) = &column.categories
            && !categories.iter().any(|c| c.as_str() == Some(value))
        {
            return Err(bad(format!(
                "{} is {:?}, which is not one of its {} categories",
                at(),
                value,
                categories.len()
            )));
        }
    }
    Ok((strings, n_rows))
}

/// Reads BYTES `data` as JSON strings: flat (`n_rows * width` strings) or nested as the shape
/// (`n_rows` lists of `width` strings).
fn read_string_data(json: &str, n_rows: usize, width: usize) -> Result<Vec<String>, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("is not JSON: {e}"))?;
    let serde_json::Value::Array(items) = value else {
        return Err("is not a list of strings".into());
    };
    let strings = |items: Vec<serde_json::Value>| -> Result<Vec<String>, String> {
        items
            .into_iter()
            .map(|item| match item {
                serde_json::Value::String(s) => Ok(s),
                other => Err(format!("holds {other}, which is not a string")),
            })
            .collect()
    };
    if items.iter().all(serde_json::Value::is_array) && !items.is_empty() {
        if items.len() != n_rows {
            return Err(nesting_error::<serde_json::Error>(items.len(), n_rows).to_string());
        }
        let mut out = Vec::with_capacity(n_rows * width);
        for item in items {
            let serde_json::Value::Array(row) = item else {
                unreachable!("checked above")
            };
            if row.len() != width {
                return Err(nesting_error::<serde_json::Error>(row.len(), width).to_string());
            }
            out.extend(strings(row)?);
        }
        Ok(out)
    } else {
        strings(items)
    }
}

/// Reads a numeric input (`input`, `[N, n_number_features]`): its values (row-major) and
/// rows. NaN (binary data only) is a missing value where the column is nullable.
fn decode_numbers(
    input: &mut InferInput,
    info: &ModelInfo,
    max_rows: usize,
) -> Result<(Vec<f64>, usize), NodeError> {
    let bad = |m: String| NodeError::BadRequest(m);
    let Some(datatype) = Datatype::parse(&input.datatype) else {
        return Err(bad(format!(
            "input '{INPUT_NAME}' has datatype {}; expected FP64, FP32, INT64 or INT32",
            input.datatype
        )));
    };
    let n_features = info.n_number_features();
    let shape = &input.shape;
    let n_rows = match shape.as_slice() {
        [rows, cols] if *cols == n_features as i64 && *rows >= 1 => *rows as usize,
        _ => {
            return Err(bad(format!(
                "input '{INPUT_NAME}' has shape {shape:?}; expected [N, {n_features}] with N >= 1"
            )));
        }
    };
    if n_rows > max_rows {
        return Err(bad(format!(
            "input '{INPUT_NAME}' has {n_rows} rows; the limit is {max_rows} (INFERENCE_NODE_MAX_BATCH_ROWS)"
        )));
    }
    let count = n_rows * n_features;
    let no_strings = || {
        if info.n_string_features() > 0 {
            return bad(format!(
                "input '{INPUT_NAME}' has datatype BYTES, but it holds the numeric columns of model '{}' (FP64, FP32, INT64 or INT32); its string columns go in '{INPUT_STRINGS_NAME}'",
                info.name
            ));
        }
        bad(format!(
            "input '{INPUT_NAME}' has datatype BYTES, but model '{}' has no string columns: send FP64, FP32, INT64 or INT32",
            info.name
        ))
    };
    let values = match (input.binary.take(), input.data.take()) {
        (Some(_), Some(_)) => {
            return Err(bad(format!(
                "input '{INPUT_NAME}' has both data and binary_data_size: send one of them"
            )));
        }
        (Some(bytes), None) => {
            let Some(size) = datatype.size() else {
                let strings = read_strings(&bytes)
                    .map_err(|e| bad(format!("input '{INPUT_NAME}' binary BYTES data: {e}")))?;
                if strings.len() != count {
                    return Err(bad(format!(
                        "input '{INPUT_NAME}' has {} BYTES elements; shape {shape:?} needs {count}",
                        strings.len()
                    )));
                }
                return Err(no_strings());
            };
            if bytes.len() != count * size {
                return Err(bad(format!(
                    "input '{INPUT_NAME}' has binary_data_size {}; shape {shape:?} of {} needs {} ({count} elements of {size} bytes)",
                    bytes.len(),
                    input.datatype,
                    count * size
                )));
            }
            datatype.read(&bytes)
        }
        (None, data) => {
            if input.binary_data_size()?.is_some() {
                return Err(bad(format!(
                    "input '{INPUT_NAME}' has binary_data_size, but the request has no Inference-Header-Content-Length header: send binary tensor data after the JSON, with that header"
                )));
            }
            if datatype == Datatype::Bytes {
                return Err(no_strings());
            }
            let Some(data) = data else {
                return Err(bad(format!("input '{INPUT_NAME}' has no data")));
            };
            let mut values = read_tensor_data(data.get(), &[n_rows, n_features])
                .map_err(|e| bad(format!("input '{INPUT_NAME}' data {e}")))?;
            if values.len() != count {
                return Err(bad(format!(
                    "input '{INPUT_NAME}' has {} values; shape {shape:?} needs {count}",
                    values.len(),
                )));
            }
            match datatype {
                Datatype::Fp32 => {
                    for v in &mut values {
                        *v = f64::from(*v as f32);
                    }
                }
                Datatype::Int64 | Datatype::Int32 => {
                    // The type's range is [-2^(bits-1), 2^(bits-1)), exact in f64.
                    let min = if datatype == Datatype::Int64 {
                        i64::MIN as f64
                    } else {
                        f64::from(i32::MIN)
                    };
                    if let Some(position) = values
                        .iter()
                        .position(|v| v.fract() != 0.0 || *v < min || *v >= -min)
                    {
                        return Err(bad(format!(
                            "input '{INPUT_NAME}' value {position} is not an {}",
                            input.datatype
                        )));
                    }
                }
                Datatype::Fp64 | Datatype::Bytes => {}
            }
            values
        }
    };
    let nullable: Vec<bool> = info
        .features
        .iter()
        .filter(|f| f.kind == FeatureType::Number)
        .map(|f| f.nullable)
        .collect();
    if let Some(position) = values
        .iter()
        .enumerate()
        .position(|(i, v)| !(v.is_finite() || v.is_nan() && nullable[i % n_features]))
    {
        return Err(bad(format!(
            "input '{INPUT_NAME}' value {position} is not a finite number"
        )));
    }
    Ok((values, n_rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ModelInfo {
        ModelInfo::regression("M", vec!["a".into(), "b".into()], 1)
    }

    fn decode_str(body: &str) -> Result<(Vec<f64>, usize), NodeError> {
        let mut request: InferRequest =
            serde_json::from_str(body).map_err(|e| NodeError::BadRequest(e.to_string()))?;
        decode(&mut request, &info(), 10)
    }

    #[test]
    fn parameters_other_than_binary_ones_are_ignored() {
        let body = r#"{"parameters":{"p":[[1,2],{"q":null}]},"inputs":[{"name":"input","shape":[1,2],"datatype":"FP64","data":[1,2],"parameters":{"x":{"y":[1]}}}],"outputs":[{"name":"variable","parameters":{"binary_data":false,"z":"w"}}]}"#;
        assert_eq!(decode_str(body).unwrap(), (vec![1.0, 2.0], 1));
    }

    #[test]
    fn nested_and_flat_data_decode_alike() {
        let nested = r#"{"inputs":[{"name":"input","shape":[2,2],"datatype":"FP64","data":[[1,2],[3,4.5]]}]}"#;
        let flat =
            r#"{"inputs":[{"name":"input","shape":[2,2],"datatype":"FP64","data":[1,2,3,4.5]}]}"#;
        assert_eq!(decode_str(nested).unwrap(), (vec![1.0, 2.0, 3.0, 4.5], 2));
        assert_eq!(decode_str(flat).unwrap(), (vec![1.0, 2.0, 3.0, 4.5], 2));
    }

    #[test]
    fn fp32_values_are_rounded_to_single_precision() {
        let body =
            r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[0.1,2]}]}"#;
        assert_eq!(decode_str(body).unwrap().0[0], f64::from(0.1f32));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let cases = [
            (r#"{"inputs":[]}"#, "expected 1 input"),
            (
                r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP64","data":[1,2]}]}"#,
                "'x'",
            ),
            (
                r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"INT8","data":[1,2]}]}"#,
                "INT8",
            ),
            (
                r#"{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP64","data":[1,2,3]}]}"#,
                "shape",
            ),
            (
                r#"{"inputs":[{"name":"input","shape":[2,2],"datatype":"FP64","data":[1,2,3]}]}"#,
                "3 values",
            ),
            (
                r#"{"inputs":[{"name":"input","shape":[11,2],"datatype":"FP64","data":[]}]}"#,
                "limit",
            ),
            (
                r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP64"}]}"#,
                "no data",
            ),
            (
                r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP64","data":[1,"a"]}]}"#,
                "numbers",
            ),
            (
                r#"{"inputs":[{"name":"input","shape":[2,2],"datatype":"FP64","data":[[1,2,3],[4]]}]}"#,
                "a list of 3 where the shape needs 2",
            ),
            (
                r#"{"inputs":[{"name":"input","shape":[2,2],"datatype":"FP64","data":[[1,2]]}]}"#,
                "a list of 1 where the shape needs 2",
            ),
            (
                r#"{"inputs":[{"name":"input","shape":[2,2],"datatype":"FP64","data":[1,2,[3,4]]}]}"#,
                "mixes numbers and lists",
            ),
            (
                r#"{"inputs":[{"name":"input","shape":[2,2],"datatype":"FP64","data":[[1,2],3]}]}"#,
                "mixes numbers and lists",
            ),
            (
                r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP64","data":[[[1,2]]]}]}"#,
                "nested deeper",
            ),
            (
                r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP64","data":7}]}"#,
                "a list of numbers",
            ),
            (
                r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP64","data":[1,2]}],"outputs":[{"name":"y"}]}"#,
                "'y'",
            ),
            (
                r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP64","data":[1,2],"parameters":{"binary_data_size":16}}]}"#,
                "binary",
            ),
            (
                r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP64","data":[1,2],"parameters":{"binary_data_size":-1}}]}"#,
                "binary_data_size -1",
            ),
            (
                r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"INT32","data":[1,2.5]}]}"#,
                "value 1 is not an INT32",
            ),
            (
                r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"INT32","data":[1,2147483648]}]}"#,
                "value 1 is not an INT32",
            ),
            (
                r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"BYTES","data":["a","b"]}]}"#,
                "no string columns",
            ),
        ];
        for (body, needle) in cases {
            let message = decode_str(body).unwrap_err().to_string();
            assert!(message.contains(needle), "{body}: {message}");
        }
    }

    /// Decodes `body` with `binary` attached to its one input, as the binary extension does.
    fn decode_binary(body: &str, binary: &[u8]) -> Result<(Vec<f64>, usize), NodeError> {
        let mut request: InferRequest = serde_json::from_str(body).unwrap();
        request.inputs[0].binary = Some(Bytes::copy_from_slice(binary));
        decode(&mut request, &info(), 10)
    }

    fn binary_input(datatype: &str, size: usize) -> String {
        format!(
            r#"{{"inputs":[{{"name":"input","shape":[1,2],"datatype":"{datatype}","parameters":{{"binary_data_size":{size}}}}}]}}"#
        )
    }

    #[test]
    fn binary_data_reads_little_endian_in_every_numeric_type() {
        let fp64 = [0.1f64.to_le_bytes(), (-2.5f64).to_le_bytes()].concat();
        let fp32 = [0.1f32.to_le_bytes(), 3f32.to_le_bytes()].concat();
        let int64 = [(-7i64).to_le_bytes(), (1i64 << 40).to_le_bytes()].concat();
        let int32 = [i32::MIN.to_le_bytes(), 5i32.to_le_bytes()].concat();
        let cases = [
            ("FP64", fp64, vec![0.1, -2.5]),
            ("FP32", fp32, vec![f64::from(0.1f32), 3.0]),
            ("INT64", int64, vec![-7.0, (1i64 << 40) as f64]),
            ("INT32", int32, vec![f64::from(i32::MIN), 5.0]),
        ];
        for (datatype, bytes, want) in cases {
            let body = binary_input(datatype, bytes.len());
            assert_eq!(
                decode_binary(&body, &bytes).unwrap(),
                (want, 1),
                "{datatype}"
            );
        }
    }

    #[test]
    fn bad_binary_data_says_what_is_wrong() {
        let nan = [f64::NAN.to_le_bytes(), 1f64.to_le_bytes()].concat();
        let strings = [&2u32.to_le_bytes()[..], b"ab", &1u32.to_le_bytes(), b"c"].concat();
        let cases = [
            (binary_input("FP64", 8), vec![0u8; 8], "binary_data_size 8"),
            (binary_input("FP32", 16), vec![0u8; 16], "needs 8"),
            (binary_input("FP64", 16), nan, "not a finite number"),
            (binary_input("BYTES", 9), strings, "no string columns"),
            (binary_input("BYTES", 3), vec![1, 0, 0], "4-byte"),
            (binary_input("BYTES", 5), vec![9, 0, 0, 0, b'a'], "9 bytes long"),
            (
                binary_input("BYTES", 5),
                [&1u32.to_le_bytes()[..], b"a"].concat(),
                "1 BYTES elements",
            ),
            (
                r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP64","data":[1,2],"parameters":{"binary_data_size":16}}]}"#.into(),
                vec![0u8; 16],
                "both data and binary_data_size",
            ),
        ];
        for (body, bytes, needle) in cases {
            let message = decode_binary(&body, &bytes).unwrap_err().to_string();
            assert!(message.contains(needle), "{body}: {message}");
        }
    }

    #[test]
    fn strings_are_length_prefixed() {
        let bytes = [&2u32.to_le_bytes()[..], "é".as_bytes(), &0u32.to_le_bytes()].concat();
        assert_eq!(read_strings(&bytes).unwrap(), ["é", ""]);
        assert!(
            read_strings(&[1, 0, 0, 0, 0xff])
                .unwrap_err()
                .contains("UTF-8")
        );
    }

    #[test]
    fn an_outputs_own_binary_data_wins_over_the_requests() {
        let request = |params: &str, output: &str| -> InferRequest {
            serde_json::from_str(&format!(
                r#"{{"parameters":{params},"inputs":[],"outputs":[{output}]}}"#
            ))
            .unwrap()
        };
        let cases = [
            ("{}", r#"{"name":"variable"}"#, false),
            (
                r#"{"binary_data_output":true}"#,
                r#"{"name":"variable"}"#,
                true,
            ),
            (
                r#"{"binary_data_output":true}"#,
                r#"{"name":"variable","parameters":{"binary_data":false}}"#,
                false,
            ),
            (
                "{}",
                r#"{"name":"variable","parameters":{"binary_data":true}}"#,
                true,
            ),
        ];
        for (params, output, want) in cases {
            let got = request(params, output).wants_binary_output(OUTPUT_NAME);
            assert_eq!(got, want, "{params} {output}");
        }
    }

    #[test]
    fn labels_travel_as_binary_in_their_datatypes_layout() {
        let binary = |labels: Vec<ClassLabel>| {
            let mut output =
                OutputTensor::new("label", "X", vec![labels.len()], OutputData::Labels(labels));
            let mut bytes = Vec::new();
            output.move_data_to_binary(&mut bytes);
            assert!(output.data.is_none());
            assert_eq!(
                output.parameters.as_ref().unwrap().binary_data_size,
                bytes.len()
            );
            bytes
        };
        let ints = binary(vec![ClassLabel::Int(-2), ClassLabel::Int(7)]);
        assert_eq!(ints, [(-2i64).to_le_bytes(), 7i64.to_le_bytes()].concat());
        assert_eq!(
            binary(vec![ClassLabel::Bool(true), ClassLabel::Bool(false)]),
            [1, 0]
        );
        let strings = binary(vec![
            ClassLabel::Str("ab".into()),
            ClassLabel::Str(String::new()),
        ]);
        assert_eq!(
            strings,
            [&2u32.to_le_bytes()[..], b"ab", &0u32.to_le_bytes()].concat()
        );
        assert_eq!(read_strings(&strings).unwrap(), ["ab", ""]);
    }
}

//! Open Inference Protocol (KServe V2) wire types and request decoding.
//!
//! A model has one input `input` (`[-1, n_features]`, FP64); a regressor one output
//! `variable` (`[-1, n_targets]`, FP64), a classifier two: `label` (`[-1]`; INT64, BYTES or
//! BOOL as its classes are integers, strings or booleans) and `probabilities`
//! (`[-1, n_classes]`, FP64). Requests may send FP64 or FP32 data (FP32 values are
//! rounded to single precision, as a float32 tensor would hold them), nested or flat.
//! Only the JSON form is supported; the binary tensor extension is refused with a 400.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use onnx_model::ModelInfo;
use onnx_model::contract::{
    ClassLabel, Feature, INPUT_NAME, LABEL_NAME, OUTPUT_NAME, PROBABILITIES_NAME, Task,
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
    /// Supported protocol extensions (none).
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
    pub versions: Vec<&'static str>,
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
            versions: vec![VERSION],
            platform: PLATFORM,
            inputs: vec![TensorMetadata {
                name: INPUT_NAME,
                datatype: "FP64",
                shape: vec![-1, info.feature_names.len() as i64],
            }],
            outputs,
            parameters: ModelParameters {
                task: info.task,
                features: info.features.clone(),
                classes: info.classes.clone(),
            },
        }
    }
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
    /// Request parameters (accepted, unused: skipped without being parsed into memory).
    #[serde(default)]
    pub parameters: Option<IgnoredAny>,
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
    /// Element type (`FP64` or `FP32` here).
    pub datatype: String,
    /// Tensor parameters (`binary_data_size` marks the unsupported binary extension).
    #[serde(default)]
    pub parameters: Option<TensorParameters>,
    /// Row-major values, nested or flat (decoded once the datatype is known to be numeric).
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
}

/// A requested output.
#[derive(Debug, Deserialize)]
pub struct RequestedOutput {
    /// Output name.
    pub name: String,
    /// Output parameters (`binary_data: true` asks for the unsupported binary extension).
    #[serde(default)]
    pub parameters: Option<TensorParameters>,
}

/// The tensor parameters the node reads; any other is skipped without being parsed into
/// memory (a client may send anything there).
#[derive(Debug, Default, Deserialize)]
pub struct TensorParameters {
    /// Size of the input's binary data: present when the data uses the binary extension.
    #[serde(default)]
    pub binary_data_size: Option<IgnoredAny>,
    /// On an output: `true` asks for it as binary data.
    #[serde(default)]
    pub binary_data: Option<Box<RawValue>>,
}

impl TensorParameters {
    fn wants_binary_output(&self) -> bool {
        self.binary_data.as_ref().is_some_and(|v| v.get() == "true")
    }
}

/// `POST /v2/models/{name}/infer` response body.
#[derive(Debug, Serialize)]
pub struct InferResponse {
    /// Model name.
    pub model_name: String,
    /// Model version.
    pub model_version: &'static str,
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
    /// Row-major values.
    pub data: OutputData,
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

/// Checks an infer request against the model and returns its rows (row-major) and count.
pub fn decode(
    request: &mut InferRequest,
    info: &ModelInfo,
    max_rows: usize,
) -> Result<(Vec<f64>, usize), NodeError> {
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
            if output
                .parameters
                .as_ref()
                .is_some_and(TensorParameters::wants_binary_output)
            {
                return Err(bad(
                    "the binary tensor data extension is not supported: request outputs with binary_data=false".into(),
                ));
            }
        }
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
    if input
        .parameters
        .as_ref()
        .is_some_and(|p| p.binary_data_size.is_some())
    {
        return Err(bad(
            "the binary tensor data extension is not supported: send the data as JSON (binary_data=False)".into(),
        ));
    }
    let fp32 = match input.datatype.as_str() {
        "FP64" => false,
        "FP32" => true,
        other => {
            return Err(bad(format!(
                "input '{INPUT_NAME}' has datatype {other}; expected FP64 or FP32"
            )));
        }
    };
    let n_features = info.feature_names.len();
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
    let Some(data) = input.data.take() else {
        return Err(bad(format!("input '{INPUT_NAME}' has no data")));
    };
    let mut values = read_tensor_data(data.get(), &[n_rows, n_features])
        .map_err(|e| bad(format!("input '{INPUT_NAME}' data {e}")))?;
    if values.len() != n_rows * n_features {
        return Err(bad(format!(
            "input '{INPUT_NAME}' has {} values; shape {shape:?} needs {}",
            values.len(),
            n_rows * n_features
        )));
    }
    if fp32 {
        for v in &mut values {
            *v = f64::from(*v as f32);
        }
    }
    if let Some(position) = values.iter().position(|v| !v.is_finite()) {
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
                r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP64","data":[1,2]}],"outputs":[{"name":"variable","parameters":{"binary_data":true}}]}"#,
                "binary",
            ),
        ];
        for (body, needle) in cases {
            let message = decode_str(body).unwrap_err().to_string();
            assert!(message.contains(needle), "{body}: {message}");
        }
    }
}

//! The binary tensor data extension (KServe/Triton `binary_tensor_data`): its framing.
//!
//! Request: the header `Inference-Header-Content-Length: n` says the body's first `n` bytes
//! are the JSON inference request; the rest is tensor data, each input with
//! `"parameters": {"binary_data_size": k}` taking the next `k` bytes, in the order of the
//! inputs. The sizes must add up to the rest exactly ([`split_body`], [`attach`]); how the
//! bytes read as values (and that they fit the shape) is [`super::wire::decode`]'s.
//!
//! Response: outputs asked for as binary (`binary_data` on the output, or
//! `binary_data_output` in the request's parameters) leave the JSON for the bytes after it,
//! with `binary_data_size` in their parameters, the same header, and the content type
//! `application/octet-stream` ([`respond`]).

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::wire::{InferInput, InferRequest, InferResponse};
use crate::error::NodeError;

/// The header giving the size of the JSON part of a body.
pub const HEADER: &str = "inference-header-content-length";

/// Splits a body into its JSON inference request and the binary tensor data after it (`None`
/// when the request has no [`HEADER`]: the whole body is JSON).
pub fn split_body(headers: &HeaderMap, body: Bytes) -> Result<(Bytes, Option<Bytes>), NodeError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok((body, None));
    };
    let Some(json_len) = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
    else {
        return Err(NodeError::BadRequest(format!(
            "Inference-Header-Content-Length is {:?}; expected the size of the JSON part in bytes",
            String::from_utf8_lossy(value.as_bytes())
        )));
    };
    if json_len > body.len() {
        return Err(NodeError::BadRequest(format!(
            "Inference-Header-Content-Length is {json_len}, but the body has only {} bytes",
            body.len()
        )));
    }
    let mut json = body;
    let binary = json.split_off(json_len);
    Ok((json, Some(binary)))
}

/// Hands each input with `binary_data_size` its bytes of `binary`, in order. The sizes must
/// add up to `binary`'s length exactly; a mismatch is a 400 naming the input.
pub fn attach(inputs: &mut [InferInput], mut binary: Bytes) -> Result<(), NodeError> {
    let total = binary.len();
    let mut last = None;
    for input in inputs.iter_mut() {
        let Some(size) = input.binary_data_size()? else {
            continue;
        };
        if size > binary.len() {
            return Err(NodeError::BadRequest(format!(
                "input '{}' has binary_data_size {size}, but only {} bytes of binary data are left ({total} follow the JSON)",
                input.name,
                binary.len()
            )));
        }
        input.binary = Some(binary.split_to(size));
        last = Some(&input.name);
    }
    if binary.is_empty() {
        return Ok(());
    }
    Err(NodeError::BadRequest(match last {
        Some(name) => format!(
            "{} bytes of binary data are left after input '{name}', the last with binary_data_size: the sizes add up to {}, but {total} bytes follow the JSON",
            binary.len(),
            total - binary.len()
        ),
        None => format!(
            "{total} bytes follow the JSON (Inference-Header-Content-Length), but no input has binary_data_size"
        ),
    }))
}

/// The answer to `request`: JSON, or, when some output is asked for as binary, the JSON
/// (without those outputs' `data`) followed by their bytes, in output order.
pub fn respond(request: &InferRequest, mut response: InferResponse) -> Result<Response, NodeError> {
    let mut binary = Vec::new();
    let mut any = false;
    for output in &mut response.outputs {
        if request.wants_binary_output(output.name) {
            output.move_data_to_binary(&mut binary);
            any = true;
        }
    }
    if !any {
        return Ok(Json(response).into_response());
    }
    let mut body = serde_json::to_vec(&response)
        .map_err(|e| NodeError::Inference(format!("cannot encode the response: {e}")))?;
    let json_len = body.len();
    body.extend_from_slice(&binary);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static(HEADER),
                HeaderValue::from(json_len),
            ),
        ],
        body,
    )
        .into_response())
}

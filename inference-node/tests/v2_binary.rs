//! The Open Inference Protocol's binary tensor data extension against a real node: binary
//! inputs answer as their JSON form does, binary outputs when asked, and every malformed body
//! gets a 400 naming the problem.

mod common;

use common::{assert_close, client, config, default_node, golden, spawn_node};
use serde_json::{Value, json};

const HEADER: &str = "Inference-Header-Content-Length";

/// A binary-extension body: `request` as JSON, then `binary`; and the JSON part's length.
fn binary_body(request: &Value, binary: &[u8]) -> (usize, Vec<u8>) {
    let mut body = serde_json::to_vec(request).unwrap();
    let json_len = body.len();
    body.extend_from_slice(binary);
    (json_len, body)
}

/// The golden hold-out rows, row-major.
fn golden_rows() -> (usize, Vec<f64>) {
    let golden = golden();
    let rows = golden["holdout"]["rows"].as_array().unwrap();
    let flat = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    (rows.len(), flat)
}

/// An answer: status, headers and body bytes.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The JSON part and the binary part of a binary-extension answer.
    fn split(&self) -> (Value, &[u8]) {
        let json_len: usize = self.headers[HEADER].to_str().unwrap().parse().unwrap();
        let (json, binary) = self.body.split_at(json_len);
        (serde_json::from_slice(json).unwrap(), binary)
    }
}

/// What a case sends: the header's value (none: a JSON body), and the body.
type Sent = (Option<usize>, Vec<u8>);

async fn post(url: &str, header_len: Option<usize>, body: Vec<u8>) -> Answer {
    let mut request = client().post(url).body(body);
    if let Some(len) = header_len {
        request = request
            .header(HEADER, len)
            .header("content-type", "application/octet-stream");
    } else {
        request = request.header("content-type", "application/json");
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await.unwrap().to_vec(),
    }
}

/// The JSON path's predictions for `rows` sent as `datatype`.
async fn json_predictions(url: &str, n_rows: usize, rows: &[f64], datatype: &str) -> Vec<f64> {
    let request = json!({"inputs": [{"name": "input", "shape": [n_rows, 4], "datatype": datatype, "data": rows}]});
    let answer = post(url, None, serde_json::to_vec(&request).unwrap()).await;
    assert_eq!(answer.status, 200);
    answer.json()["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn f64s(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[tokio::test]
async fn binary_inputs_answer_as_their_json_form() {
    let node = default_node().await;
    let url = node.url("/v2/models/RandomForest/infer");
    let (n_rows, rows) = golden_rows();
    let want = json_predictions(&url, n_rows, &rows, "FP64").await;
    let golden = golden();
    let sklearn = golden["models"]["RandomForest"]["predictions"]
        .as_array()
        .unwrap();
    for (i, (got, want)) in want.iter().zip(sklearn).enumerate() {
        assert_close(*got, want[0].as_f64().unwrap(), &format!("row {i}"));
    }

    let fp64: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
    let fp32: Vec<u8> = rows
        .iter()
        .flat_map(|v| (*v as f32).to_le_bytes())
        .collect();
    let want32 = json_predictions(&url, n_rows, &rows, "FP32").await;
    for (datatype, bytes, want) in [("FP64", fp64, &want), ("FP32", fp32, &want32)] {
        let request = json!({
            "id": "bin-1",
            "inputs": [{"name": "input", "shape": [n_rows, 4], "datatype": datatype,
                        "parameters": {"binary_data_size": bytes.len()}}],
            "outputs": [{"name": "variable", "parameters": {"binary_data": false}}]
        });
        let (len, body) = binary_body(&request, &bytes);
        let answer = post(&url, Some(len), body).await;
        assert_eq!(answer.status, 200, "{datatype}");
        assert_eq!(answer.headers["content-type"], "application/json");
        assert!(!answer.headers.contains_key(HEADER), "{datatype}");
        let json = answer.json();
        assert_eq!(json["id"], "bin-1");
        let got: Vec<f64> = json["outputs"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(&got, want, "{datatype}: binary and JSON inputs differ");
    }

    // Integer inputs: the same values as FP64 give the same answers.
    let ints = [50000i64, 5, 2, 3];
    let as_f64: Vec<f64> = ints.iter().map(|v| *v as f64).collect();
    let want = json_predictions(&url, 1, &as_f64, "FP64").await;
    let int64: Vec<u8> = ints.iter().flat_map(|v| v.to_le_bytes()).collect();
    let int32: Vec<u8> = ints
        .iter()
        .flat_map(|v| (*v as i32).to_le_bytes())
        .collect();
    for (datatype, bytes) in [("INT64", int64), ("INT32", int32)] {
        let request = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": datatype,
                                         "parameters": {"binary_data_size": bytes.len()}}]});
        let (len, body) = binary_body(&request, &bytes);
        let answer = post(&url, Some(len), body).await;
        assert_eq!(answer.status, 200, "{datatype}");
        assert_eq!(
            answer.json()["outputs"][0]["data"],
            json!(want),
            "{datatype}"
        );
    }
}

#[tokio::test]
async fn binary_outputs_when_asked() {
    let node = default_node().await;
    let url = node.url("/v2/models/LinearRegression/infer");
    let (n_rows, rows) = golden_rows();
    let want = json_predictions(&url, n_rows, &rows, "FP64").await;
    let input = json!({"name": "input", "shape": [n_rows, 4], "datatype": "FP64", "data": rows});
    let asks = [
        json!({"parameters": {"binary_data_output": true}, "inputs": [input]}),
        json!({"inputs": [input], "outputs": [{"name": "variable", "parameters": {"binary_data": true}}]}),
    ];
    for request in asks {
        let answer = post(&url, None, serde_json::to_vec(&request).unwrap()).await;
        assert_eq!(answer.status, 200, "{request}");
        assert_eq!(answer.headers["content-type"], "application/octet-stream");
        let (json, binary) = answer.split();
        let output = &json["outputs"][0];
        assert_eq!(output["name"], "variable");
        assert_eq!(output["datatype"], "FP64");
        assert_eq!(output["shape"], json!([n_rows, 1]));
        assert_eq!(output["parameters"]["binary_data_size"], json!(n_rows * 8));
        assert!(output.get("data").is_none(), "{json}");
        assert_eq!(f64s(binary), want, "binary and JSON outputs differ");
    }

    // Binary in, binary out.
    let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
    let request = json!({
        "parameters": {"binary_data_output": true},
        "inputs": [{"name": "input", "shape": [n_rows, 4], "datatype": "FP64",
                    "parameters": {"binary_data_size": bytes.len()}}]
    });
    let (len, body) = binary_body(&request, &bytes);
    let answer = post(&url, Some(len), body).await;
    assert_eq!(answer.status, 200);
    let (_, binary) = answer.split();
    assert_eq!(f64s(binary), want);

    // The extension is announced.
    let server: Value = client()
        .get(node.url("/v2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(server["extensions"], json!(["binary_tensor_data"]));
}

#[tokio::test]
async fn malformed_binary_bodies_get_a_named_400() {
    let node = spawn_node(config(&["--max-body-bytes", "4096"])).await;
    let url = node.url("/v2/models/LinearRegression/infer");
    let row: Vec<u8> = [50000.0f64, 5.2, 2.1, 2.3]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let input = |datatype: &str, shape: Value, size: Value| {
        json!({"inputs": [{"name": "input", "shape": shape, "datatype": datatype,
                           "parameters": {"binary_data_size": size}}]})
    };
    let good = input("FP64", json!([1, 4]), json!(32));
    let (good_len, good_body) = binary_body(&good, &row);
    let with_len = |len: usize| (Some(len), good_body.clone());
    let body = |request: &Value, binary: &[u8]| {
        let (len, body) = binary_body(request, binary);
        (Some(len), body)
    };
    let cases: Vec<(&str, Sent, &str)> = vec![
        (
            "header longer than the body",
            with_len(good_body.len() + 1),
            "Inference-Header-Content-Length is",
        ),
        (
            "header shorter than the JSON",
            with_len(good_len - 1),
            "invalid inference request",
        ),
        (
            "sizes above the binary data",
            body(&input("FP64", json!([1, 4]), json!(40)), &row),
            "input 'input' has binary_data_size 40, but only 32 bytes",
        ),
        (
            "sizes below the binary data",
            body(&good, &[row.as_slice(), &[0u8; 8]].concat()),
            "8 bytes of binary data are left after input 'input'",
        ),
        (
            "binary data but no binary input",
            body(
                &json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}),
                &row,
            ),
            "no input has binary_data_size",
        ),
        (
            "size not matching the shape",
            body(&input("FP64", json!([2, 4]), json!(32)), &row),
            "input 'input' has binary_data_size 32; shape [2, 4] of FP64 needs 64",
        ),
        (
            "size of another datatype",
            body(&input("FP32", json!([1, 4]), json!(32)), &row),
            "needs 16",
        ),
        (
            "unknown datatype",
            body(&input("FP16", json!([1, 4]), json!(32)), &row),
            "input 'input' has datatype FP16",
        ),
        (
            "size not a byte count",
            body(&input("FP64", json!([1, 4]), json!("32")), &row),
            "input 'input' has binary_data_size \"32\"",
        ),
        (
            "strings for a model without string columns",
            body(
                &input("BYTES", json!([1, 4]), json!(20)),
                &[[1u8, 0, 0, 0, b'a']; 4].concat(),
            ),
            "no string columns",
        ),
        (
            "binary_data_size without the header",
            (None, serde_json::to_vec(&good).unwrap()),
            "no Inference-Header-Content-Length header",
        ),
        (
            "non-finite values",
            body(&good, &[f64::INFINITY.to_le_bytes(); 4].concat()),
            "not a finite number",
        ),
    ];
    for (name, (len, body), needle) in cases {
        let answer = post(&url, len, body).await;
        assert_eq!(answer.status, 400, "{name}");
        let json = answer.json();
        let error = json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {json}"));
        assert!(error.contains(needle), "{name}: {error}");
    }

    // A header that is not a number.
    let response = client()
        .post(&url)
        .header(HEADER, "lots")
        .body(good_body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let json: Value = response.json().await.unwrap();
    assert!(
        json["error"].as_str().unwrap().contains("\"lots\""),
        "{json}"
    );

    // The whole body, binary part included, is under the body limit.
    let big = vec![0u8; 4096];
    let request = input("FP64", json!([128, 4]), json!(big.len()));
    let (len, body) = binary_body(&request, &big);
    let answer = post(&url, Some(len), body).await;
    assert_eq!(answer.status, 413);
    assert!(answer.json()["error"].is_string());

    // None of that took the node down.
    let (len, body) = binary_body(&good, &row);
    assert_eq!(post(&url, Some(len), body).await.status, 200);
}

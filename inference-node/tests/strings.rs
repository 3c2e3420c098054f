//! String columns served end to end (issue 18): the shipped `VoteChoice` pipeline (numbers and
//! strings, every column nullable through its imputers) on a real node with real ONNX
//! Runtime, through the seed's `/predict` and V2 (JSON and binary BYTES), compared with
//! sklearn's answers in `models/gdp_growth_rate/classifiers-golden.json`; bad values are named
//! 422s (seed) and 400s (V2); dynamic batching merges string rows without mixing them up.

mod common;

use common::{classifier_golden, client, config, default_node, model_info, post_json, spawn_node};
use serde_json::{Value, json};

const MODEL: &str = "VoteChoice";
const NUMBERS: [&str; 5] = ["popul", "TVnews", "selfLR", "age", "income"];
const STRINGS: [&str; 2] = ["party", "education"];

/// The README's body for VoteChoice and sklearn's answer to it.
fn golden() -> (Value, Value) {
    let golden = classifier_golden()["models"][MODEL].clone();
    let body: Value = serde_json::from_str(golden["body"].as_str().unwrap()).unwrap();
    (body, golden)
}

fn assert_matches_golden(labels: &Value, probabilities: &Value, golden: &Value) {
    assert_eq!(labels, &golden["labels"]);
    let got = probabilities.as_array().unwrap();
    let want = golden["probabilities"].as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        for (a, b) in g.as_array().unwrap().iter().zip(w.as_array().unwrap()) {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((a - b).abs() <= 1e-9, "{g} vs {w}");
        }
    }
}

fn url(node: &common::TestNode) -> String {
    node.url(&format!("/predict?model={MODEL}"))
}

#[tokio::test]
async fn seed_rows_with_strings_and_nulls_answer_as_sklearn() {
    let node = default_node().await;
    let (body, golden) = golden();
    let answer = post_json(&client(), &url(&node), &body).await;
    assert_matches_golden(&answer["prediction"], &answer["probabilities"], &golden);
    assert_eq!(answer["classes"], golden["classes"]);
    assert_eq!(answer["model"], MODEL);
    // The input is echoed with its strings, and null where a value was missing.
    assert_eq!(answer["input"][0]["party"], "weak Republican");
    assert_eq!(answer["input"][1]["education"], Value::Null);
    assert_eq!(answer["input"][1]["income"], Value::Null);
    assert_eq!(answer["input"][0]["popul"], 190.0);
    // One row alone answers as inside the batch.
    let one = post_json(&client(), &url(&node), &body[1]).await;
    assert_eq!(one["prediction"], json!([golden["labels"][1]]));

    let info = model_info(&node, MODEL).await;
    assert_eq!(info["task"], "classification");
    let types: Vec<(&str, &str, bool)> = info["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap(),
                f["type"].as_str().unwrap(),
                f["nullable"].as_bool().unwrap(),
            )
        })
        .collect();
    let mut want: Vec<(&str, &str, bool)> = NUMBERS.iter().map(|n| (*n, "number", true)).collect();
    want.extend(STRINGS.iter().map(|n| (*n, "string", true)));
    assert_eq!(types, want);
}

#[tokio::test]
async fn wrong_types_are_422s_naming_the_field_and_value() {
    let node = default_node().await;
    let (body, _) = golden();
    let mut bad = body.clone();
    bad[0]["party"] = json!(3);
    bad[1]["age"] = json!("old");
    bad[1]["education"] = json!("");
    let response = client().post(url(&node)).json(&bad).send().await.unwrap();
    assert_eq!(response.status(), 422);
    let detail: Value = response.json().await.unwrap();
    let errors: Vec<(Value, &str, Value)> = detail["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["loc"].clone(),
                e["type"].as_str().unwrap(),
                e["input"].clone(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (json!(["body", 0, "party"]), "string_type", json!(3)),
            (json!(["body", 1, "age"]), "float_parsing", json!("old")),
            (
                json!(["body", 1, "education"]),
                "string_too_short",
                json!("")
            ),
        ]
    );
    // A 422 stays bounded however many rows are bad.
    let rows: Vec<Value> = (0..1000).map(|_| bad[0].clone()).collect();
    let detail = post_json(&client(), &url(&node), &rows).await;
    assert_eq!(detail["detail"].as_array().unwrap().len(), 101);
}

/// A V2 request for VoteChoice: the numeric columns in `input`, the strings in `input_strings`.
fn v2_request(body: &Value) -> Value {
    let rows = body.as_array().unwrap();
    let numbers: Vec<Value> = rows
        .iter()
        .map(|r| json!(NUMBERS.map(|n| r[n].as_f64().unwrap_or(f64::NAN))))
        .collect();
    let strings: Vec<Value> = rows
        .iter()
        .map(|r| json!(STRINGS.map(|n| r[n].as_str().unwrap_or("").to_string())))
        .collect();
    json!({
        "inputs": [
            {"name": "input", "shape": [rows.len(), NUMBERS.len()], "datatype": "FP64", "data": numbers},
            {"name": "input_strings", "shape": [rows.len(), STRINGS.len()], "datatype": "BYTES", "data": strings},
        ]
    })
}

fn outputs(answer: &Value) -> (Value, Value) {
    let find = |name: &str| {
        answer["outputs"]
            .as_array()
            .unwrap_or_else(|| panic!("{answer}"))
            .iter()
            .find(|o| o["name"] == name)
            .unwrap()["data"]
            .clone()
    };
    let probabilities: Vec<Value> = find("probabilities")
        .as_array()
        .unwrap()
        .chunks(2)
        .map(|c| json!(c))
        .collect();
    (find("label"), json!(probabilities))
}

#[tokio::test]
async fn v2_takes_string_columns_as_bytes_in_json_and_binary() {
    let node = default_node().await;
    let (body, golden) = golden();
    let infer = node.url(&format!("/v2/models/{MODEL}/infer"));
    let meta: Value = client()
        .get(node.url(&format!("/v2/models/{MODEL}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["inputs"],
        json!([
            {"name": "input", "datatype": "FP64", "shape": [-1, 5]},
            {"name": "input_strings", "datatype": "BYTES", "shape": [-1, 2]},
        ])
    );
    // Only the rows without missing numbers go as JSON (JSON has no NaN).
    let complete = json!([body[0].clone()]);
    let answer = post_json(&client(), &infer, &v2_request(&complete)).await;
    let (labels, probabilities) = outputs(&answer);
    let first =
        json!({"labels": [golden["labels"][0]], "probabilities": [golden["probabilities"][0]]});
    assert_matches_golden(&labels, &probabilities, &first);

    // Binary: FP64 with NaN for the missing numbers, BYTES length-prefixed ("" = missing).
    let rows = body.as_array().unwrap();
    let mut binary = Vec::new();
    for r in rows {
        for n in NUMBERS {
            binary.extend_from_slice(&r[n].as_f64().unwrap_or(f64::NAN).to_le_bytes());
        }
    }
    let numbers_len = binary.len();
    for r in rows {
        for n in STRINGS {
            let s = r[n].as_str().unwrap_or("");
            binary.extend_from_slice(&(s.len() as u32).to_le_bytes());
            binary.extend_from_slice(s.as_bytes());
        }
    }
    let request = json!({"inputs": [
        {"name": "input", "shape": [2, 5], "datatype": "FP64", "parameters": {"binary_data_size": numbers_len}},
        {"name": "input_strings", "shape": [2, 2], "datatype": "BYTES", "parameters": {"binary_data_size": binary.len() - numbers_len}},
    ]});
    let mut sent = serde_json::to_vec(&request).unwrap();
    let json_len = sent.len();
    sent.extend_from_slice(&binary);
    let response = client()
        .post(&infer)
        .header("Inference-Header-Content-Length", json_len)
        .header("content-type", "application/octet-stream")
        .body(sent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let (labels, probabilities) = outputs(&answer);
    assert_matches_golden(&labels, &probabilities, &golden);
}

#[tokio::test]
async fn bad_v2_string_inputs_are_named_400s() {
    let node = default_node().await;
    let (body, _) = golden();
    let infer = node.url(&format!("/v2/models/{MODEL}/infer"));
    let good = v2_request(&json!([body[0].clone()]));
    let with = |f: &dyn Fn(&mut Value)| {
        let mut request = good.clone();
        f(&mut request);
        request
    };
    let cases = [
        (
            with(&|r| {
                r["inputs"].as_array_mut().unwrap().pop();
            }),
            "'input_strings' (BYTES [N, 2]: party, education)",
        ),
        (
            with(&|r| r["inputs"][1]["datatype"] = json!("FP64")),
            "expected BYTES",
        ),
        (
            with(&|r| r["inputs"][1]["data"] = json!([["a", 1]])),
            "not a string",
        ),
        (
            with(&|r| r["inputs"][1]["shape"] = json!([1, 3])),
            "expected [N, 2]",
        ),
        (
            with(&|r| r["inputs"][0]["datatype"] = json!("BYTES")),
            "go in 'input_strings'",
        ),
        (
            with(&|r| r["inputs"][1]["name"] = json!("strings")),
            "unexpected inference input 'strings'",
        ),
        (
            with(&|r| r["inputs"][0]["shape"] = json!([2, 5])),
            "nested unlike the shape",
        ),
        (
            with(&|r| {
                r["inputs"][1]["shape"] = json!([2, 2]);
                r["inputs"][1]["data"] = json!([["a", "b"], ["c", "d"]]);
            }),
            "they must have the same",
        ),
    ];
    for (request, needle) in cases {
        let response = client().post(&infer).json(&request).send().await.unwrap();
        assert_eq!(response.status(), 400, "{request}");
        let answer: Value = response.json().await.unwrap();
        let message = answer["error"].as_str().unwrap();
        assert!(message.contains(needle), "{request}: {message}");
    }
}

#[tokio::test]
async fn batched_string_rows_keep_their_own_answers() {
    // A wait long enough that concurrent requests are merged into one ONNX Runtime call.
    let node = spawn_node(config(&["--batch-max-wait", "20ms"])).await;
    let http = client();
    const PARTIES: [&str; 5] = [
        "strong Democrat",
        "weak Democrat",
        "independent",
        "weak Republican",
        "strong Republican",
    ];
    let row = |i: usize| {
        json!({"popul": i * 10, "TVnews": i % 8, "selfLR": 1 + i % 7, "age": 20 + i, "income": 1 + i % 24,
               "party": PARTIES[i % PARTIES.len()], "education": if i.is_multiple_of(3) { Value::Null } else { json!("high school") }})
    };
    // Each row's answer alone, then all at once, concurrently.
    let mut alone = Vec::new();
    for i in 0..24 {
        alone.push(post_json(&http, &url(&node), &row(i)).await);
    }
    let together = futures_join(
        (0..24)
            .map(|i| {
                let http = http.clone();
                let url = url(&node);
                let body = row(i);
                async move { post_json(&http, &url, &body).await }
            })
            .collect(),
    )
    .await;
    for (a, t) in alone.iter().zip(&together) {
        assert_eq!(a["prediction"], t["prediction"]);
        // Batched, ONNX Runtime may sum in another order: equal to the last few bits.
        let (pa, pt) = (&a["probabilities"][0], &t["probabilities"][0]);
        for k in 0..2 {
            let (x, y) = (pa[k].as_f64().unwrap(), pt[k].as_f64().unwrap());
            assert!((x - y).abs() <= 1e-12, "{pa} vs {pt}");
        }
        assert_eq!(a["input"], t["input"]);
    }
    let labels: Vec<&Value> = together.iter().map(|t| &t["prediction"][0]).collect();
    assert!(labels.contains(&&json!("Clinton")) && labels.contains(&&json!("Dole")));
}

async fn futures_join<F: std::future::Future<Output = Value> + Send + 'static>(
    futures: Vec<F>,
) -> Vec<Value> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

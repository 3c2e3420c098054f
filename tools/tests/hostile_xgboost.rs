//! Hostile XGBoost inputs: UBJSON with oversized declared lengths and counts, deeply nested
//! JSON and UBJSON, absurd tree and feature counts, truncated files, wrong-typed fields, broken
//! trees, and pickles whose booster bytes are not what their header says. Each must be refused
//! quickly with an error naming the field or limit involved, never a panic or an allocation the
//! bytes do not justify.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{Value as Json, json};
use tools::pickle::{self, Limits};
use tools::sklearn;
use tools::xgboost;

/// A small valid model: 2 features, 2 trees, reg:squarederror, as `save_model` writes it.
fn model() -> Json {
    let tree = |id: i64, threshold: f64| {
        json!({
            "base_weights": [0.0, 0.0, 0.0], "categories": [], "categories_nodes": [],
            "categories_segments": [], "categories_sizes": [],
            "default_left": [1, 0, 0], "id": id,
            "left_children": [1, -1, -1], "loss_changes": [1.0, 0.0, 0.0],
            "parents": [2147483647, 0, 0], "right_children": [2, -1, -1],
            "split_conditions": [threshold, -0.5, 0.75], "split_indices": [id, 0, 0],
            "split_type": [0, 0, 0], "sum_hessian": [2.0, 1.0, 1.0],
            "tree_param": {"num_deleted": "0", "num_feature": "2", "num_nodes": "3",
                           "size_leaf_vector": "1"}
        })
    };
    json!({
        "learner": {
            "attributes": {},
            "feature_names": ["a", "b"],
            "feature_types": ["float", "float"],
            "gradient_booster": {
                "model": {
                    "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": "2"},
                    "iteration_indptr": [0, 1, 2],
                    "tree_info": [0, 0],
                    "trees": [tree(0, 0.5), tree(1, 1.5)]
                },
                "name": "gbtree"
            },
            "learner_model_param": {"base_score": "[5E-1]", "boost_from_average": "1",
                                    "num_class": "0", "num_feature": "2", "num_target": "1"},
            "objective": {"name": "reg:squarederror", "reg_loss_param": {"scale_pos_weight": "1"}}
        },
        "version": [3, 2, 0]
    })
}

/// UBJSON as XGBoost writes it: `L` lengths, `L` integers, `d` floats, keys without `S`.
fn ubjson(v: &Json) -> Vec<u8> {
    fn len(out: &mut Vec<u8>, n: usize) {
        out.push(b'L');
        out.extend_from_slice(&(n as i64).to_be_bytes());
    }
    fn put(out: &mut Vec<u8>, v: &Json) {
        match v {
            Json::Null => out.push(b'Z'),
            Json::Bool(b) => out.push(if *b { b'T' } else { b'F' }),
            Json::Number(n) if n.is_i64() => {
                out.push(b'L');
                out.extend_from_slice(&n.as_i64().unwrap().to_be_bytes());
            }
            Json::Number(n) => {
                out.push(b'd');
                out.extend_from_slice(&(n.as_f64().unwrap() as f32).to_be_bytes());
            }
            Json::String(s) => {
                out.push(b'S');
                len(out, s.len());
                out.extend_from_slice(s.as_bytes());
            }
            Json::Array(items) => {
                out.push(b'[');
                for item in items {
                    put(out, item);
                }
                out.push(b']');
            }
            Json::Object(entries) => {
                out.push(b'{');
                for (k, v) in entries {
                    len(out, k.len());
                    out.extend_from_slice(k.as_bytes());
                    put(out, v);
                }
                out.push(b'}');
            }
        }
    }
    let mut out = Vec::new();
    put(&mut out, v);
    out
}

/// The error `read_native` gives `bytes`, within a second.
fn refusal(bytes: &[u8]) -> String {
    let start = Instant::now();
    let result = xgboost::read_native(bytes);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
    match result {
        Ok(model) => panic!("accepted {}", model.kind),
        Err(e) => e.to_string(),
    }
}

/// `model()` changed by `edit`, refused as JSON and as UBJSON with `needle` in the message.
fn refused(edit: impl Fn(&mut Json), needle: &str) {
    let mut m = model();
    edit(&mut m);
    let json = refusal(m.to_string().as_bytes());
    assert!(json.contains(needle), "JSON: {json}");
    let ubj = refusal(&ubjson(&m));
    assert!(ubj.contains(needle), "UBJSON: {ubj}");
}

#[test]
fn the_reference_model_is_accepted_in_both_encodings() {
    for bytes in [model().to_string().into_bytes(), ubjson(&model())] {
        let m = xgboost::read_native(&bytes).unwrap();
        assert_eq!((m.n_features, m.n_targets), (2, 1));
        assert!(m.kind.contains("reg:squarederror"), "{}", m.kind);
    }
}

#[test]
fn oversized_ubjson_lengths_and_counts_are_refused_before_allocating() {
    let head = ubjson(&model());
    // `{` + the first key: replace what follows with a huge declared length of each kind.
    let key = &head[..1 + 9 + "learner".len()];
    let cases: [(&[u8], &str); 5] = [
        (b"S", "declares"),    // a string of i64::MAX bytes
        (b"[#", "declares"),   // an array of i64::MAX elements
        (b"[$d#", "declares"), // a typed array of i64::MAX floats
        (b"{#", "declares"),   // an object of i64::MAX entries
        (b"[$L#", "declares"), // a typed array of i64::MAX int64
    ];
    for (marker, needle) in cases {
        let mut bytes = key.to_vec();
        bytes.extend_from_slice(marker);
        bytes.push(b'L');
        bytes.extend_from_slice(&i64::MAX.to_be_bytes());
        bytes.extend_from_slice(&[0; 64]);
        let err = refusal(&bytes);
        assert!(err.contains(needle), "{marker:?}: {err}");
    }
    // A negative length, and an object key longer than the file.
    let mut bytes = key.to_vec();
    bytes.extend_from_slice(b"SL");
    bytes.extend_from_slice(&(-1i64).to_be_bytes());
    assert!(refusal(&bytes).contains("length -1"));
    let mut bytes = b"{L".to_vec();
    bytes.extend_from_slice(&(1i64 << 40).to_be_bytes());
    bytes.extend_from_slice(b"learner");
    assert!(refusal(&bytes).contains("declares"));
}

#[test]
fn deep_nesting_is_refused() {
    let mut json = br#"{"learner":"#.to_vec();
    json.extend(std::iter::repeat_n(b'[', 1_000_000));
    assert!(refusal(&json).contains("nested deeper than 64"));
    let mut ubj = ubjson(&json!({"learner": 0}));
    ubj.truncate(ubj.len() - 10); // drop the value `L 0` and `}`
    ubj.extend(std::iter::repeat_n(b'[', 1_000_000));
    assert!(refusal(&ubj).contains("nested deeper than 64"));
}

#[test]
fn absurd_counts_are_refused() {
    let model_param = |key: &'static str, value: &'static str| {
        move |m: &mut Json| {
            m["learner"]["gradient_booster"]["model"]["gbtree_model_param"][key] = json!(value)
        }
    };
    refused(model_param("num_trees", "99999999999"), "num_trees");
    refused(model_param("num_trees", "3"), "3");
    refused(
        |m| m["learner"]["learner_model_param"]["num_feature"] = json!("4000000000"),
        "num_feature",
    );
    refused(
        |m| m["learner"]["learner_model_param"]["num_class"] = json!("-3"),
        "num_class",
    );
    // A tree count the data does not hold: 1000 trees declared, 2 present.
    refused(
        |m| {
            m["learner"]["gradient_booster"]["model"]["gbtree_model_param"]["num_trees"] =
                json!("1000")
        },
        "2 trees, gbtree_model_param.num_trees says 1000",
    );
}

#[test]
fn wrong_typed_fields_are_refused_by_name() {
    let set = |path: &'static [&'static str], value: Json| {
        move |m: &mut Json| {
            let mut at = &mut *m;
            for key in path {
                at = match key.parse::<usize>() {
                    Ok(i) => &mut at[i],
                    Err(_) => &mut at[*key],
                };
            }
            *at = value.clone();
        }
    };
    const TREE: [&str; 5] = ["learner", "gradient_booster", "model", "trees", "1"];
    let field = |name: &'static str| -> &'static [&'static str] {
        let mut v = TREE.to_vec();
        v.push(name);
        Box::leak(v.into_boxed_slice())
    };
    refused(
        set(field("split_conditions"), json!("0.5")),
        "trees[1].split_conditions",
    );
    refused(
        set(field("left_children"), json!([1.5, -1, -1])),
        "trees[1].left_children",
    );
    refused(
        set(field("split_indices"), json!([7, 0, 0])),
        "splits on feature 7",
    );
    refused(
        set(field("left_children"), json!([0, -1, -1])),
        "reached twice",
    );
    refused(
        set(field("right_children"), json!([5, -1, -1])),
        "has child 5",
    );
    refused(
        set(field("default_left"), json!([1, 0])),
        "2 entries for 3 nodes",
    );
    refused(
        set(field("split_type"), json!([1, 0, 0])),
        "categorical splits",
    );
    refused(
        set(
            &["learner", "learner_model_param", "base_score"],
            json!("[nan]"),
        ),
        "base_score",
    );
    refused(
        set(
            &["learner", "learner_model_param", "base_score"],
            json!(0.5),
        ),
        "base_score",
    );
    refused(
        set(&["learner", "gradient_booster", "name"], json!("gblinear")),
        "booster gblinear",
    );
    refused(
        set(&["learner", "gradient_booster", "name"], json!("dart")),
        "booster dart",
    );
    refused(
        set(&["learner", "objective", "name"], json!("rank:pairwise")),
        "objective rank:pairwise",
    );
    refused(
        set(
            &["learner", "learner_model_param", "num_target"],
            json!("2"),
        ),
        "2 targets",
    );
    refused(
        set(&["learner", "feature_types"], json!(["float", "c"])),
        "categorical features",
    );
    refused(set(&["version"], json!("3.2.0")), "version");
    refused(
        set(
            &["learner", "gradient_booster", "model", "tree_info"],
            json!([0, 5]),
        ),
        "tree_info",
    );
}

#[test]
fn truncated_files_are_refused_at_every_length() {
    for bytes in [model().to_string().into_bytes(), ubjson(&model())] {
        for n in 0..bytes.len() {
            assert!(
                xgboost::read_native(&bytes[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
    }
}

#[test]
fn old_binary_models_and_other_json_are_refused() {
    assert!(refusal(b"binf\0\0\0\0").contains("old binary model format"));
    assert!(refusal(br#"{"feature_names": ["a"], "models": {}}"#).contains("neither"));
    assert!(refusal(b"").contains("neither"));
}

// --- pickles whose booster bytes are not what their header says ---------------------------------

/// A protocol-3 pickle of `XGBRegressor` whose `_Booster.handle` is `bytearray(handle)`.
fn wrapper_pickle(handle: &[u8]) -> Vec<u8> {
    fn unicode(out: &mut Vec<u8>, s: &str) {
        out.push(b'X');
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut p = vec![0x80, 3];
    p.extend_from_slice(b"cxgboost.sklearn\nXGBRegressor\n)\x81}(");
    unicode(&mut p, "_Booster");
    p.extend_from_slice(b"cxgboost.core\nBooster\n)\x81}(");
    unicode(&mut p, "handle");
    p.extend_from_slice(b"cbuiltins\nbytearray\nB");
    p.extend_from_slice(&(handle.len() as u32).to_le_bytes());
    p.extend_from_slice(handle);
    p.extend_from_slice(b"\x85Rub");
    unicode(&mut p, "missing");
    p.push(b'G');
    p.extend_from_slice(&f64::NAN.to_be_bytes());
    p.extend_from_slice(b"ub.");
    p
}

fn extract(bytes: &[u8]) -> Result<tools::estimator::Model, String> {
    let graph =
        pickle::read_bytes(bytes, "m.pkl", &Limits::default()).map_err(|e| e.to_string())?;
    sklearn::extract(&graph).map_err(|e| e.to_string())
}

#[test]
fn a_booster_whose_bytes_are_not_a_model_is_refused() {
    // The reference snapshot reads (a saved model in place of `{"Config", "Model"}` too).
    let snapshot = json!({"Config": {}, "Model": model()});
    assert_eq!(
        extract(&wrapper_pickle(&ubjson(&snapshot)))
            .unwrap()
            .n_features,
        2
    );
    let err = extract(&wrapper_pickle(b"import os; os.system('x')")).unwrap_err();
    assert!(
        err.contains("model._Booster.handle") && err.contains("neither"),
        "{err}"
    );
    let err = extract(&wrapper_pickle(b"binf\x01\x02")).unwrap_err();
    assert!(err.contains("old binary model format"), "{err}");
    // A UBJSON header (`{` and the key `learner`) over JSON text.
    let mut lying = ubjson(&json!({"learner": 0}));
    lying.truncate(1 + 9 + "learner".len());
    lying.extend_from_slice(model().to_string().as_bytes());
    let err = extract(&wrapper_pickle(&lying)).unwrap_err();
    assert!(err.contains("UBJSON at byte"), "{err}");
    // A JSON header over UBJSON bytes.
    let mut lying = br#"{"learner":"#.to_vec();
    lying.extend_from_slice(&ubjson(&model())[1..]);
    let err = extract(&wrapper_pickle(&lying)).unwrap_err();
    assert!(err.contains("JSON at byte"), "{err}");
    // `missing` other than NaN is refused by name.
    let mut p = wrapper_pickle(&ubjson(&snapshot));
    let at = p.len() - 12; // `G`, 8 bytes, `ub.`
    p[at + 1..at + 9].copy_from_slice(&0.0f64.to_be_bytes());
    let err = extract(&p).unwrap_err();
    assert!(err.contains("missing=0"), "{err}");
}

// --- random mutations of the real fixtures -----------------------------------------------------

fn fixtures(extension: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fixtures-xgboost");
    let mut out = Vec::new();
    for generation in std::fs::read_dir(&dir).unwrap().flatten() {
        for file in std::fs::read_dir(generation.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = file.path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.extension().is_some_and(|e| e == extension)
                && !name.contains("expected")
                && !name.starts_with("rows-")
                && name != "manifest.json"
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn mutated_models_never_panic(
        ubj in any::<bool>(),
        seed in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let files = fixtures(if ubj { "ubj" } else { "json" });
        prop_assume!(!files.is_empty());
        let mut bytes = std::fs::read(seed.get(&files)).unwrap();
        for (at, byte) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = if ubj { *byte } else { b"0123456789-[]{},:\"eE."[usize::from(*byte) % 21] };
        }
        let start = Instant::now();
        if let Ok(model) = xgboost::read_native(&bytes) {
            let source = tools::onnx::Source { file_name: "m.json".into(), sha256: String::new() };
            let _ = tools::onnx::encode(&model, &source);
        }
        prop_assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    }

    #[test]
    fn mutated_xgboost_pickles_never_panic(
        seed in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let files = fixtures("pkl");
        prop_assume!(!files.is_empty());
        let mut bytes = std::fs::read(seed.get(&files)).unwrap();
        for (at, byte) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *byte;
        }
        let start = Instant::now();
        let _ = extract(&bytes);
        prop_assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    }
}

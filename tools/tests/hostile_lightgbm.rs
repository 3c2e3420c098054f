//! Hostile LightGBM inputs: text models with absurd declared sizes, truncated or mismatched
//! arrays, broken trees, enormous lines, and pickles whose booster text is not a LightGBM model.
//! Each must be refused quickly with an error naming the key, tree or limit involved, never a
//! panic or an allocation the bytes do not justify.

use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use tools::lightgbm::{self, LightGbmError};
use tools::pickle::{self, Limits};
use tools::sklearn;

/// A small valid model: 2 features, 2 trees (a split on a NaN-missing feature and a
/// categorical split), regression.
fn model() -> String {
    "tree
version=v4
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=1
objective=regression
feature_names=a b
feature_infos=[0:1] 1:2:3
tree_sizes=1 1

Tree=0
num_leaves=3
num_cat=0
split_feature=0 0
split_gain=1 1
threshold=0.5 1.5
decision_type=10 8
left_child=-1 -2
right_child=1 -3
leaf_value=1 2 3
leaf_weight=1 1 1
leaf_count=1 1 1
internal_value=0 0
internal_weight=0 0
internal_count=2 1
is_linear=0
shrinkage=1


Tree=1
num_leaves=2
num_cat=1
split_feature=1
split_gain=1
threshold=0
decision_type=1
left_child=-1
right_child=-2
leaf_value=10 20
cat_boundaries=0 1
cat_threshold=6
is_linear=0
shrinkage=1


end of trees

parameters:
[boosting: gbdt]
end of parameters

pandas_categorical:null
"
    .to_string()
}

/// Parses and converts `text` as a native model; the error text, or `None` if accepted.
fn refusal(text: &[u8]) -> Option<String> {
    let start = Instant::now();
    let result = lightgbm::native_model(text).and_then(|model| {
        let source = tools::onnx::Source {
            file_name: "m.txt".into(),
            sha256: String::new(),
        };
        tools::onnx::encode(&model, &source)
            .map(|_| ())
            .map_err(|e| LightGbmError::Unsupported(e.to_string()))
    });
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    result.err().map(|e| e.to_string())
}

fn refused(text: &str, needle: &str) {
    let err = refusal(text.as_bytes()).unwrap_or_else(|| panic!("accepted: {needle}"));
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
}

#[test]
fn the_reference_model_is_accepted() {
    assert_eq!(refusal(model().as_bytes()), None);
}

#[test]
fn absurd_declared_sizes_are_refused_before_allocating() {
    let m = model();
    refused(
        &m.replace("Tree=0\nnum_leaves=3", "Tree=0\nnum_leaves=999999999999"),
        "tree 0, key num_leaves: 999999999999 is outside 0..=131072",
    );
    refused(
        &m.replace("Tree=0\nnum_leaves=3", "Tree=0\nnum_leaves=131072"),
        "tree 0, key leaf_value: has 3 values, expected 131072",
    );
    refused(
        &m.replace("max_feature_idx=1", "max_feature_idx=4000000000"),
        "key max_feature_idx: 4000000000 is outside 0..1000000",
    );
    refused(
        &m.replace("num_class=1", "num_class=99999999"),
        "key num_class: 99999999 is outside 0..=10000",
    );
    refused(
        &m.replace("num_cat=1", "num_cat=-5"),
        "tree 1, key num_cat: -5 is outside",
    );
    refused(
        &m.replace("cat_boundaries=0 1", "cat_boundaries=0 100000000"),
        "exceed 1000000 words in all",
    );
    let sizes = vec!["1"; 100_001].join(" ");
    refused(
        &m.replace("tree_sizes=1 1", &format!("tree_sizes={sizes}")),
        "lists more than 100000 trees",
    );
    refused(
        &m.replace("tree_sizes=1 1", "tree_sizes=1 1 1"),
        "tree_sizes: lists 3 trees, the file has 2",
    );
}

#[test]
fn array_length_mismatches_name_the_tree_and_key() {
    let m = model();
    refused(
        &m.replace("leaf_value=1 2 3", "leaf_value=1 2"),
        "tree 0, key leaf_value: has 2 values, expected 3",
    );
    refused(
        &m.replace("threshold=0.5 1.5", "threshold=0.5 1.5 2.5"),
        "tree 0, key threshold: has more than 2 values",
    );
    refused(
        &m.replace("split_feature=0 0", "split_feature=0"),
        "tree 0, key split_feature: has 1 values, expected 2",
    );
    refused(
        &m.replace("cat_boundaries=0 1", "cat_boundaries=0 2"),
        "tree 1, key cat_threshold: has 1 values, expected 2",
    );
    refused(
        &m.replace("cat_boundaries=0 1", "cat_boundaries=0"),
        "tree 1, key cat_boundaries: has 1 values, expected 2",
    );
    refused(
        &m.replace("feature_names=a b", "feature_names=a b c"),
        "key feature_names: has 3+ names for 2 features",
    );
    refused(
        &m.replace("leaf_value=10 20\n", ""),
        "tree 1: has no `leaf_value`",
    );
}

#[test]
fn broken_trees_are_refused() {
    let m = model();
    refused(
        &m.replace("left_child=-1 -2", "left_child=0 -2"),
        "tree 0: node 0 has child node 0, not after it",
    );
    refused(
        &m.replace("left_child=-1 -2", "left_child=-1 -3"),
        "tree 0: leaf 1 is the child of 0 nodes",
    );
    refused(
        &m.replace("right_child=1 -3", "right_child=5 -3"),
        "tree 0, key right_child: holds 5, outside -3..=1",
    );
    refused(
        &m.replace("split_feature=0 0", "split_feature=0 2"),
        "tree 0, key split_feature: holds 2, outside 0..=1",
    );
    refused(
        &m.replace("decision_type=10 8", "decision_type=10 12"),
        "tree 0, key decision_type: holds 12",
    );
    refused(
        &m.replace("leaf_value=1 2 3", "leaf_value=1 nan 3"),
        "tree 0, key leaf_value: holds NaN",
    );
    refused(
        &m.replace("threshold=0.5 1.5", "threshold=0.5 nan"),
        "tree 0, key threshold: node 1 has a NaN threshold",
    );
    refused(
        &m.replace("threshold=0\n", "threshold=3\n"),
        "tree 1, key threshold: categorical node 0 names bitset 3 of 1",
    );
    refused(
        &m.replace("cat_threshold=6", "cat_threshold=-6"),
        "tree 1, key cat_threshold: holds -6, not a u32",
    );
    refused(
        &m.replace("leaf_value=1 2 3", "leaf_value=1 2 1e999x"),
        "tree 0, key leaf_value: `1e999x` is not a number",
    );
    refused(
        &m.replace("Tree=1", "Tree=7"),
        "expected `Tree=1`, found `Tree=7`",
    );
    refused(
        &m.replace("num_cat=0\n", "num_cat=0\nnum_cat=0\n"),
        "tree 0: repeats the key `num_cat`",
    );
}

#[test]
fn unsupported_models_are_refused_by_name() {
    let m = model();
    for (objective, needle) in [
        ("lambdarank", "ranking objective lambdarank"),
        ("regression sqrt", "objective regression with reg_sqrt"),
        ("custom_thing", "objective `custom_thing`"),
        (
            "binary sigmoid:-1",
            "`binary` needs a positive `sigmoid:` value",
        ),
        (
            "multiclass num_class:3",
            "`multiclass num_class:3` does not fit num_class=1",
        ),
    ] {
        refused(
            &m.replace("objective=regression", &format!("objective={objective}")),
            needle,
        );
    }
    refused(
        &m.replace("objective=regression\n", ""),
        "records no objective",
    );
    refused(
        &m.replace("[boosting: gbdt]", "[linear_tree: 1]"),
        "linear trees",
    );
    refused(
        &m.replace("label_index=0", "label_index=0\naverage_output"),
        "random-forest boosting",
    );
    refused(
        &m.replace(
            "pandas_categorical:null",
            r#"pandas_categorical:[["a","b"]]"#,
        ),
        "pandas category columns",
    );
    refused(
        &m.replace("version=v4", "version=v2"),
        "version `v2` is not supported",
    );
}

#[test]
fn truncated_files_are_refused_at_every_length() {
    let m = model();
    let bytes = m.as_bytes();
    let end = m.find("end of trees").unwrap();
    for len in 0..end {
        let err = refusal(&bytes[..len]).unwrap_or_else(|| panic!("accepted {len} bytes"));
        assert!(err.contains("LightGBM"), "{len} bytes: {err}");
    }
    // The real fixtures too (every 61st length).
    for path in native_fixtures() {
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let end = text.find("end of trees").unwrap();
        for len in (0..end).step_by(61) {
            assert!(
                refusal(&bytes[..len]).is_some(),
                "{} accepted at {len} bytes",
                path.display()
            );
        }
    }
}

#[test]
fn huge_lines_and_binary_garbage_are_refused_quickly() {
    let m = model();
    let long = "1 ".repeat(33 << 20); // 66 MiB, over the 64 MiB line cap
    refused(
        &m.replace("leaf_value=1 2 3", &format!("leaf_value={long}")),
        "is longer than 67108864 bytes",
    );
    let many = "1 ".repeat(1 << 20);
    refused(
        &m.replace("leaf_value=1 2 3", &format!("leaf_value={many}")),
        "tree 0, key leaf_value: has more than 3 values",
    );
    let mut bytes = m.clone().into_bytes();
    bytes[40] = 0xff;
    let err = refusal(&bytes).expect("refused");
    assert!(err.contains("is not UTF-8 text"), "{err}");
    assert!(refusal(b"").is_some());
    assert!(refusal(b"tree\nversion=v4").is_some());
}

// --- pickles whose booster text is not a LightGBM model ---------------------------------------

/// A protocol-2 pickle of `LGBMRegressor` whose `_Booster` holds `state` (key, text) pairs.
fn wrapper_pickle(booster_state: &[(&str, &str)]) -> Vec<u8> {
    fn unicode(out: &mut Vec<u8>, s: &str) {
        out.push(b'X');
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut p = vec![0x80, 2];
    p.extend_from_slice(b"clightgbm.sklearn\nLGBMRegressor\n)\x81}(");
    unicode(&mut p, "_Booster");
    p.extend_from_slice(b"clightgbm.basic\nBooster\n)\x81}(");
    for (key, value) in booster_state {
        unicode(&mut p, key);
        unicode(&mut p, value);
    }
    p.extend_from_slice(b"ub");
    unicode(&mut p, "_n_features");
    p.extend_from_slice(b"K\x02ub.");
    p
}

fn extract_error(bytes: &[u8]) -> String {
    let graph = pickle::read_bytes(bytes, "m.pkl", &Limits::default()).expect("the pickle reads");
    match sklearn::extract(&graph) {
        Ok(model) => panic!("accepted {}", model.kind),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_booster_whose_text_is_not_a_model_is_refused() {
    let err = extract_error(&wrapper_pickle(&[("_handle", "import os; os.system('x')")]));
    assert!(
        err.contains("model._Booster._handle") && err.contains("starts with the lines `tree`"),
        "{err}"
    );
    let err = extract_error(&wrapper_pickle(&[(
        "handle",
        &model().replace("Tree=1", "Tree=9"),
    )]));
    assert!(
        err.contains("model._Booster.handle") && err.contains("expected `Tree=1`"),
        "{err}"
    );
    let err = extract_error(&wrapper_pickle(&[("params", "x")]));
    assert!(err.contains("keeps no model text"), "{err}");
    let binary = model().replace("objective=regression", "objective=binary sigmoid:1");
    let err = extract_error(&wrapper_pickle(&[("_handle", &binary)]));
    assert!(
        err.contains("LGBMRegressor with the classification objective binary"),
        "{err}"
    );
    // The reference model reads.
    let graph = pickle::read_bytes(
        &wrapper_pickle(&[("_handle", &model())]),
        "m.pkl",
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(sklearn::extract(&graph).unwrap().n_features, 2);
}

// --- random mutations of the real fixtures -----------------------------------------------------

/// The fixtures of one kind (`txt`, `pkl`, `joblib`), all generations.
fn fixtures(extension: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fixtures-lightgbm");
    let mut out = Vec::new();
    for generation in std::fs::read_dir(&dir).unwrap().flatten() {
        for file in std::fs::read_dir(generation.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = file.path();
            if path.extension().is_some_and(|e| e == extension) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn native_fixtures() -> Vec<std::path::PathBuf> {
    fixtures("txt")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn mutated_text_models_never_panic(
        seed in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let fixtures = native_fixtures();
        prop_assume!(!fixtures.is_empty());
        let mut bytes = std::fs::read(seed.get(&fixtures)).unwrap();
        for (at, byte) in &edits {
            let i = at.index(bytes.len());
            // Mostly digits, signs and separators, so numbers stay numbers of another size.
            bytes[i] = b"0123456789- \n=.e"[usize::from(*byte) % 16];
        }
        let _ = refusal(&bytes);
    }

    #[test]
    fn mutated_lightgbm_pickles_never_panic(
        seed in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let pickles = fixtures("pkl");
        prop_assume!(!pickles.is_empty());
        let mut bytes = std::fs::read(seed.get(&pickles)).unwrap();
        for (at, byte) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *byte;
        }
        let start = Instant::now();
        if let Ok(graph) = pickle::read_bytes(&bytes, "mutated.pkl", &Limits::default()) {
            let _ = sklearn::extract(&graph);
        }
        prop_assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    }
}

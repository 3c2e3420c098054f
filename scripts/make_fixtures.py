#!/usr/bin/env python3
"""Write the cross-version pickle/joblib fixtures for convert-models' fidelity tests.

Run once per scikit-learn/numpy generation (scripts/make-fixtures.sh does that with one venv
per generation). Writes tools/tests/data/fixtures/<sklearn>-np<numpy>/:

    <model>.<form>                 the fitted model in one container form (see FORMS)
    <model>.expected.json          sklearn's own predictions for test rows (see write_expected)
    unsupported_kneighbors.p4.pkl  a model convert-models must refuse (no expected file)
    manifest.json                  versions, and for each model its expected file and forms

Models are small (forests <= 10 trees, depth <= 6, boosting <= 20 stages) and trained on the
same real macrodata features as scripts/train_models.py. The generation directory is deleted
and rewritten on each run. Everything is seeded: a rerun with the same pinned versions writes
byte-identical files (joblib's gzip header has mtime 0).

Usage: python scripts/make_fixtures.py [--out-root tools/tests/data/fixtures]
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import re
import shutil
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import (
    ARDRegression,
    BayesianRidge,
    ElasticNet,
    ElasticNetCV,
    HuberRegressor,
    Lars,
    Lasso,
    LassoCV,
    LassoLars,
    LinearRegression,
    LogisticRegression,
    Ridge,
    RidgeCV,
    SGDRegressor,
)
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from statsmodels.datasets import macrodata

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures_hist import write_hist_fixtures  # noqa: E402
from make_fixtures_pre import write_pre_fixtures  # noqa: E402
from train_models import FEATURES, TARGET, load_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SEED = 0
N_REAL_ROWS = 30
N_THRESHOLDS = 40
NAN_FRACTION = 0.15

# Container forms: suffix -> writer. The model file is "<model>.<suffix>".
FORMS = {
    "p2.pkl": lambda m, p: _pickle(m, p, 2),
    "p3.pkl": lambda m, p: _pickle(m, p, 3),
    "p4.pkl": lambda m, p: _pickle(m, p, 4),
    "p5.pkl": lambda m, p: _pickle(m, p, 5),
    "joblib": lambda m, p: joblib.dump(m, p),
    "p2.joblib": lambda m, p: joblib.dump(m, p, protocol=2),
    "p5.joblib": lambda m, p: joblib.dump(m, p, protocol=5),
    "zlib.joblib": lambda m, p: joblib.dump(m, p, compress=("zlib", 3)),
    "gz.joblib": lambda m, p: joblib.dump(m, p, compress=("gzip", 3)),
    "bz2.joblib": lambda m, p: joblib.dump(m, p, compress=("bz2", 3)),
    "xz.joblib": lambda m, p: joblib.dump(m, p, compress=("xz", 3)),
    "lzma.joblib": lambda m, p: joblib.dump(m, p, compress=("lzma", 3)),
    "lz4.joblib": lambda m, p: joblib.dump(m, p, compress=("lz4", 3)),
}
SHORT_FORMS = ["p4.pkl", "joblib"]
# Models written in every form; the rest get SHORT_FORMS only.
ALL_FORMS_MODELS = {"linear", "random_forest", "gb_squared_error", "pipeline_scaler_ridge"}

# First bytes of each form, checked after writing (raw pickle, zlib, gzip, bz2, xz, lzma, lz4).
MAGIC = {
    "pkl": b"\x80",
    "joblib": b"\x80",
    "zlib.joblib": b"\x78",
    "gz.joblib": b"\x1f\x8b",
    "bz2.joblib": b"BZh",
    "xz.joblib": b"\xfd7zXZ\x00",
    "lzma.joblib": b"\x5d\x00\x00",
    "lz4.joblib": b"\x04\x22\x4d\x18",
}


def _pickle(model: object, path: Path, protocol: int) -> None:
    with open(path, "wb") as f:
        pickle.dump(model, f, protocol=protocol)


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


def load_data() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features (DataFrame) and two real targets: gdp_growth_rate and inflation (infl)."""
    table = load_dataset()
    raw = macrodata.load_pandas().data
    infl = pd.DataFrame({"year": raw["year"].astype(int), "quarter": raw["quarter"].astype(int), "infl": raw["infl"]})
    table = table.merge(infl, on=["year", "quarter"], how="left", validate="one_to_one")
    assert not table["infl"].isna().any()
    return table[FEATURES].astype(np.float64), table[[TARGET, "infl"]].astype(np.float64)


def make_models(x: pd.DataFrame, y: pd.DataFrame) -> dict[str, object]:
    """Fitted fixture models by name. `x_np` fits record no feature names."""
    y1 = y[TARGET]
    x_np = x.to_numpy()
    tree = {"max_depth": 6, "random_state": SEED}
    forest = {"n_estimators": 10, **tree}
    boost = {"n_estimators": 20, "max_depth": 3, "learning_rate": 0.1, "random_state": SEED}
    specs = {
        "linear": (LinearRegression(), x, y1),
        "linear_2t": (LinearRegression(), x, y),
        "linear_numpy": (LinearRegression(), x_np, y1.to_numpy()),
        "ridge": (Ridge(alpha=1.0), x, y1),
        "lasso": (Lasso(alpha=0.1, max_iter=100_000), x, y1),
        "elastic_net": (ElasticNet(alpha=0.1, l1_ratio=0.5, max_iter=100_000), x, y1),
        "decision_tree": (DecisionTreeRegressor(**tree), x, y1),
        "random_forest": (RandomForestRegressor(**forest), x, y1),
        "random_forest_2t": (RandomForestRegressor(**forest), x, y),
        "extra_trees": (ExtraTreesRegressor(**forest), x, y1),
        "gb_squared_error": (GradientBoostingRegressor(loss="squared_error", **boost), x, y1),
        "gb_absolute_error": (GradientBoostingRegressor(loss="absolute_error", **boost), x, y1),
        "gb_init_zero": (GradientBoostingRegressor(init="zero", **boost), x, y1),
        "pipeline_scaler_ridge": (Pipeline([("scaler", StandardScaler()), ("ridge", Ridge(alpha=1.0))]), x, y1),
        "pipeline_scaler_rf": (
            Pipeline([("scaler", StandardScaler()), ("forest", RandomForestRegressor(**forest))]),
            x,
            y1,
        ),
        "pipeline_scaler_nomean_ridge": (
            Pipeline([("scaler", StandardScaler(with_mean=False)), ("ridge", Ridge(alpha=1.0))]),
            x,
            y1,
        ),
        # The rest of the linear family (issue 18): coef_ + intercept_ like LinearRegression.
        "pipeline_scaler_sgd": (
            Pipeline([("scaler", StandardScaler()), ("sgd", SGDRegressor(random_state=SEED))]),
            x,
            y1,
        ),
        "huber": (HuberRegressor(max_iter=10_000), x, y1),
        "bayesian_ridge": (BayesianRidge(), x, y1),
        "ard": (ARDRegression(), x, y1),
        "pipeline_scaler_linear_svr": (
            Pipeline([("scaler", StandardScaler()), ("svr", LinearSVR(random_state=SEED, max_iter=100_000))]),
            x,
            y1,
        ),
        "ridge_cv": (RidgeCV(), x, y1),
        "lasso_cv": (LassoCV(cv=3, max_iter=100_000), x, y1),
        "elastic_net_cv": (ElasticNetCV(cv=3, max_iter=100_000), x, y1),
        "lars": (Lars(), x, y1),
        "lasso_lars": (LassoLars(alpha=0.01), x, y1),
        # Fitted on float32 data: float32 coef_/intercept_, float64 predictions for float64 rows.
        "linear_float32": (LinearRegression(), x.astype(np.float32), y1.astype(np.float32)),
        "ridge_float32": (Ridge(alpha=1.0), x.astype(np.float32), y1.astype(np.float32)),
    }
    models = {}
    for name, (model, features, target) in specs.items():
        models[name] = model.fit(features, target)

    # Trees fit with missing values (sklearn >= 1.3 for DT, later for forests): NaN routing
    # then follows each node's learnt missing_go_to_left.
    rng = np.random.RandomState(SEED)
    x_nan = x.mask(rng.rand(*x.shape) < NAN_FRACTION)
    for name, model in {
        "decision_tree_nan": DecisionTreeRegressor(**tree),
        "random_forest_nan": RandomForestRegressor(**forest),
        "extra_trees_nan": ExtraTreesRegressor(**forest),
    }.items():
        try:
            models[name] = model.fit(x_nan, y1)
        except ValueError as e:
            print(f"  skip {name}: sklearn {sklearn.__version__} cannot fit with NaN ({str(e).splitlines()[0]})")
    return models


def estimator_name(model: object) -> str:
    if isinstance(model, Pipeline):
        return "Pipeline(" + ", ".join(type(step).__name__ for _, step in model.steps) + ")"
    return type(model).__name__


def split_nodes(
    model: object, data: np.ndarray, columns: list[str] = FEATURES
) -> tuple[list[tuple[int, float, np.ndarray]], np.ndarray, np.ndarray]:
    """For tree models: split nodes as (feature, threshold, a real row reaching that node),
    plus (scale, mean) mapping the trees' input space back to the model's input space
    (x = v * scale + mean; identity unless the model is a scaler pipeline).

    The row is the first row of `data` whose decision path (as sklearn routes it) passes
    through the node, so moving its feature across the threshold changes the path there.
    """
    n = data.shape[1]
    inputs, scale, mean = data, np.ones(n), np.zeros(n)
    if isinstance(model, Pipeline):
        scaler, model = model.steps[0][1], model.steps[-1][1]
        inputs = scaler.transform(pd.DataFrame(data, columns=columns))
        if scaler.with_std:
            scale = scaler.scale_
        if scaler.with_mean:
            mean = scaler.mean_
    if isinstance(model, (DecisionTreeRegressor, DecisionTreeClassifier)):
        trees = [model.tree_]
    elif isinstance(model, (RandomForestRegressor, ExtraTreesRegressor, RandomForestClassifier, ExtraTreesClassifier)):
        trees = [e.tree_ for e in model.estimators_]
    elif isinstance(model, (GradientBoostingRegressor, GradientBoostingClassifier)):
        trees = [e.tree_ for e in model.estimators_.ravel()]
    else:
        return [], scale, mean
    inputs32 = np.ascontiguousarray(inputs, dtype=np.float32)
    nodes = {}
    for tree in trees:
        paths = tree.decision_path(inputs32).tocsc()
        for node, (feature, threshold) in enumerate(zip(tree.feature, tree.threshold)):
            if feature < 0 or not np.isfinite(threshold):
                continue  # leaf, or a "missing values only" split (threshold +inf)
            reaching = paths[:, node].nonzero()[0]
            base = data[reaching[0]] if len(reaching) else data[node % len(data)]
            nodes.setdefault((int(feature), float(threshold)), base)
    return [(f, t, base) for (f, t), base in sorted(nodes.items(), key=lambda kv: kv[0])], scale, mean


def threshold_rows(model: object, data: np.ndarray, columns: list[str] = FEATURES) -> list[list[float]]:
    """Rows placed on and around sampled split thresholds; other features from a real row.

    For each threshold t (feature f): t*(1-1e-9), t, t*(1+1e-9), and the float32 neighbours
    of t (largest float32 <= t, smallest float32 > t), as float64. For a scaler pipeline these
    values are placed in the scaled space the trees see and mapped back to inputs.
    """
    nodes, scale, mean = split_nodes(model, data, columns)
    if not nodes:
        return []
    rng = np.random.RandomState(SEED)
    picked = sorted(rng.choice(len(nodes), size=min(N_THRESHOLDS, len(nodes)), replace=False))
    rows = []
    for index in picked:
        feature, t, base = nodes[index]
        t32 = np.float32(t)
        below = float(t32) if float(t32) <= t else float(np.nextafter(t32, np.float32(-np.inf)))
        above = float(np.nextafter(np.float32(below), np.float32(np.inf)))
        for value in (t * (1 - 1e-9), t, t * (1 + 1e-9), below, above):
            row = base.copy()
            row[feature] = value * float(scale[feature]) + float(mean[feature])
            rows.append(row.tolist())
    return rows


def nan_rows(real: np.ndarray) -> np.ndarray:
    """Real rows with NaN in each single feature, in pairs of features, and everywhere."""
    return nan_rows_of(real, 8)


def nan_rows_of(real: np.ndarray, count: int) -> np.ndarray:
    n = real.shape[1]
    rows = []
    for i in range(count):
        base = real[(i * 3) % len(real)]
        for feature in range(n):
            row = base.copy()
            row[feature] = np.nan
            rows.append(row)
        row = base.copy()
        row[[i % n, (i + 1) % n]] = np.nan
        rows.append(row)
    rows.append(np.full(n, np.nan))
    return np.array(rows)


def predict(model: object, rows: np.ndarray, named: bool) -> list[list[float]]:
    x = pd.DataFrame(rows, columns=FEATURES) if named else rows
    out = np.asarray(model.predict(x))
    assert out.dtype == np.float64, out.dtype
    return out.reshape(len(rows), -1).tolist()


def write_expected(path: Path, model: object, real: np.ndarray, data: np.ndarray) -> dict[str, object]:
    names = getattr(model, "feature_names_in_", None)
    named = names is not None
    rows = real.tolist() + threshold_rows(model, data)
    predictions = predict(model, np.array(rows), named)
    expected = {
        "estimator": estimator_name(model),
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "n_features": int(model.n_features_in_),
        "n_targets": len(predictions[0]),
        "feature_names": [str(n) for n in names] if named else None,
        "n_real_rows": len(real),
        "rows": rows,
        "predictions": predictions,
    }
    missing = nan_rows(real)
    try:
        nan_predictions = predict(model, missing, named)
    except ValueError:
        pass  # this estimator/version rejects NaN input
    else:
        expected["nan_rows"] = [[repr(float(v)) for v in row] for row in missing]
        expected["nan_predictions"] = nan_predictions
    path.write_text(to_json(expected))
    return expected


def to_json(value: object) -> str:
    """Indented JSON with each innermost list kept on one line (floats as repr)."""
    text = json.dumps(value, indent=1, allow_nan=False)
    text = re.sub(r"\[[^\[\]{}]*\]", lambda m: re.sub(r"\n\s*", "", m.group(0)).replace(",", ", "), text)
    return text + "\n"


def write_forms(model: object, out: Path, name: str, forms: list[str], expected: dict | None = None) -> list[str]:
    """Write `model` in each form, check the magic bytes, and check that loading the file back
    reproduces the expected predictions exactly."""
    files = []
    for form in forms:
        path = out / f"{name}.{form}"
        FORMS[form](model, path)
        magic = MAGIC.get(form, MAGIC["pkl"] if form.endswith(".pkl") else MAGIC["joblib"])
        head = path.read_bytes()[: len(magic)]
        assert head == magic, f"{path.name}: starts with {head!r}, expected {magic!r}"
        if form.endswith(".pkl"):
            assert path.read_bytes()[1] == int(form[1]), f"{path.name}: wrong protocol"
        loaded = joblib.load(path) if form.endswith("joblib") else pickle.loads(path.read_bytes())
        assert type(loaded) is type(model)
        if expected is not None and expected.get("task") == "classification":
            rows = pd.DataFrame(np.array(expected["rows"]), columns=expected["feature_names"])
            assert classifier_rows(loaded, rows) == expected["predictions"], path.name
        elif expected is not None:
            named = expected["feature_names"] is not None
            assert predict(loaded, np.array(expected["rows"]), named) == expected["predictions"], path.name
        files.append(path.name)
    return files


# === classifiers (issue 18) ===
#
# Fitted on datasets shipped inside scikit-learn (iris, breast cancer, wine: real
# measurements), every 4th row held out. Labels: integers as loaded, iris's class names
# (strings), breast cancer's `target == 1` (booleans).

HOLDOUT_EVERY = 4


class ClassifierData:
    """A dataset's training and held-out rows (DataFrames) and labels."""

    def __init__(self, features: pd.DataFrame, labels: np.ndarray):
        held = np.arange(len(features)) % HOLDOUT_EVERY == 0
        self.columns = [str(c) for c in features.columns]
        self.x_train, self.y_train = features[~held], labels[~held]
        self.x_test = features[held]


def classifier_datasets() -> dict[str, ClassifierData]:
    iris = load_iris(as_frame=True)
    cancer = load_breast_cancer(as_frame=True)
    wine = load_wine(as_frame=True)
    iris_x = iris.data.astype(np.float64)
    cancer_x = cancer.data.astype(np.float64)
    return {
        "iris_int": ClassifierData(iris_x, iris.target.to_numpy()),
        "iris_str": ClassifierData(iris_x, np.asarray(iris.target_names)[iris.target.to_numpy()]),
        "cancer_int": ClassifierData(cancer_x, cancer.target.to_numpy()),
        "cancer_bool": ClassifierData(cancer_x, cancer.target.to_numpy() == 1),
        "wine_int": ClassifierData(wine.data.astype(np.float64), wine.target.to_numpy()),
    }


def make_classifiers() -> dict[str, tuple[object, ClassifierData]]:
    """Fitted fixture classifiers by name: small (<= 5 trees of depth <= 4, <= 10 stages)."""
    data = classifier_datasets()
    tree = {"max_depth": 4, "random_state": SEED}
    forest = {"n_estimators": 5, **tree}
    boost = {"n_estimators": 10, "max_depth": 2, "learning_rate": 0.1, "random_state": SEED}

    def scaled_logistic(**kwargs: object) -> Pipeline:
        return Pipeline([("scaler", StandardScaler()), ("logistic", LogisticRegression(max_iter=10_000, **kwargs))])

    specs = {
        "logistic_binary_bool": (scaled_logistic(), "cancer_bool"),
        "logistic_multinomial_str": (LogisticRegression(max_iter=10_000), "iris_str"),
        "logistic_wine": (scaled_logistic(), "wine_int"),
        "decision_tree_classifier": (DecisionTreeClassifier(**tree), "wine_int"),
        "random_forest_classifier_str": (RandomForestClassifier(**forest), "iris_str"),
        "extra_trees_classifier_bool": (ExtraTreesClassifier(**forest), "cancer_bool"),
        "gb_classifier_binary": (GradientBoostingClassifier(**boost), "cancer_int"),
        "gb_classifier_multiclass": (GradientBoostingClassifier(**boost), "iris_int"),
        "pipeline_scaler_rf_classifier": (
            Pipeline([("scaler", StandardScaler()), ("forest", RandomForestClassifier(**forest))]),
            "wine_int",
        ),
    }
    if version_tuple(sklearn.__version__) < (1, 5):
        # multi_class is a parameter until sklearn 1.7 (deprecated from 1.5).
        specs["logistic_ovr"] = (LogisticRegression(multi_class="ovr", max_iter=10_000), "iris_int")
        specs["logistic_binary_multinomial"] = (scaled_logistic(multi_class="multinomial"), "cancer_int")
    models = {}
    for name, (model, key) in specs.items():
        models[name] = (model.fit(data[key].x_train, data[key].y_train), data[key])
    return models


def json_label(label: object) -> object:
    """A class label as JSON: numpy ints and bools become Python ones, strings stay."""
    if isinstance(label, (bool, np.bool_)):
        return bool(label)
    if isinstance(label, (int, np.integer)):
        return int(label)
    return str(label)


def classifier_rows(model: object, rows: pd.DataFrame) -> list[list[float]]:
    """Per row: the index of sklearn's `predict` in `classes_`, then `predict_proba`."""
    labels = model.predict(rows)
    probabilities = np.asarray(model.predict_proba(rows))
    assert probabilities.dtype == np.float64, probabilities.dtype
    classes = list(model.classes_)
    return [[float(classes.index(label)), *row] for label, row in zip(labels, probabilities.tolist())]


def write_classifier_expected(path: Path, model: object, data: ClassifierData) -> dict[str, object]:
    """Like write_expected, for a classifier: `predictions` rows are `[label index, p_0, ...]`
    (the node's row format), `labels` sklearn's `predict` as JSON, `classes` its `classes_`."""
    real = data.x_test.to_numpy()
    rows = real.tolist() + threshold_rows(model, real, data.columns)
    frame = pd.DataFrame(np.array(rows), columns=data.columns)
    expected = {
        "estimator": estimator_name(model),
        "task": "classification",
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "n_features": int(model.n_features_in_),
        "n_targets": len(model.classes_) + 1,
        "feature_names": data.columns,
        "classes": [json_label(c) for c in model.classes_],
        "n_real_rows": len(real),
        "rows": rows,
        "labels": [json_label(label) for label in model.predict(frame)],
        "predictions": classifier_rows(model, frame),
    }
    missing = nan_rows_of(real, 2)
    try:
        nan_predictions = classifier_rows(model, pd.DataFrame(missing, columns=data.columns))
    except ValueError:
        pass  # this estimator/version rejects NaN input
    else:
        expected["nan_rows"] = [[repr(float(v)) for v in row] for row in missing]
        expected["nan_predictions"] = nan_predictions
    path.write_text(to_json(expected))
    return expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-root", type=Path, default=ROOT / "tools" / "tests" / "data" / "fixtures")
    args = parser.parse_args()
    generation = f"{sklearn.__version__}-np{np.__version__}"
    out = args.out_root / generation
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    print(f"writing fixtures for scikit-learn {sklearn.__version__}, numpy {np.__version__}, joblib {joblib.__version__} to {out}")

    x, y = load_data()
    real = x.to_numpy()[np.linspace(0, len(x) - 1, N_REAL_ROWS).astype(int)]
    manifest: dict[str, object] = {
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "joblib_version": joblib.__version__,
        "pandas_version": pd.__version__,
        "python_version": platform.python_version(),
        "models": {},
    }
    for name, model in make_models(x, y).items():
        forms = list(FORMS) if name in ALL_FORMS_MODELS else SHORT_FORMS
        expected = f"{name}.expected.json"
        predictions = write_expected(out / expected, model, real, x.to_numpy())
        files = write_forms(model, out, name, forms, predictions)
        manifest["models"][name] = {"estimator": estimator_name(model), "expected": expected, "files": files}
        print(f"  {name:<30} {estimator_name(model):<48} {len(files)} forms")

    for name, (model, data) in make_classifiers().items():
        expected = f"{name}.expected.json"
        predictions = write_classifier_expected(out / expected, model, data)
        files = write_forms(model, out, name, SHORT_FORMS, predictions)
        manifest["models"][name] = {"estimator": estimator_name(model), "expected": expected, "files": files}
        print(f"  {name:<30} {estimator_name(model):<48} {len(files)} forms")

    knn = KNeighborsRegressor(n_neighbors=3).fit(x, y[TARGET])
    files = write_forms(knn, out, "unsupported_kneighbors", ["p4.pkl"])
    manifest["models"]["unsupported_kneighbors"] = {"estimator": "KNeighborsRegressor", "expected": None, "files": files}
    (out / "manifest.json").write_text(to_json(manifest))
    # HistGradientBoosting: a sibling tree with its own manifest (tools/tests/fidelity_hist.rs).
    write_hist_fixtures(args.out_root.parent / "fixtures-hist" / generation, to_json, write_forms)
    # Preprocessing pipelines: a sibling tree with its own manifest (tools/tests/fidelity_pre.rs).
    write_pre_fixtures(args.out_root.parent / "fixtures-pre" / generation, to_json, write_forms)
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"wrote {len(list(out.iterdir()))} files, {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()

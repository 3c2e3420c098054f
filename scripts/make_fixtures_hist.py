"""HistGradientBoosting fixtures for convert-models (called by scripts/make_fixtures.py).

Writes tools/tests/data/fixtures-hist/<sklearn>-np<numpy>/ (deleted and rewritten on each run):
HistGradientBoostingRegressor/Classifier models fitted on
real data bundled with statsmodels (no network): the `fair` survey (affairs; marriage rating
and occupations are coded categories) and the `anes96` election study (vote, party id;
education and income are coded categories). Missing values are injected at random into the
training rows and the held-out rows, one feature has NaN only in held-out rows, one category
of each coded feature is left out of training (so held-out rows have unseen categories), and
extra held-out rows carry out-of-range codes (-1, 2.5, 200, ...).

Categorical features are declared with `categorical_features=[indices]`. scikit-learn >= 1.4
then pickles an OrdinalEncoder preprocessor (a ColumnTransformer whose FunctionTransformer
holds a `functools.partial`), which the safe reader refuses: such a generation gets the model
as `hgb_*_categorical_refused` (expected to be refused by the reader) and the others fitted
without categories.

Files: hist_manifest.json {"sklearn_version", "numpy_version", "models": {NAME: {"estimator",
"expected": NAME.expected.json | null, "refused": substring of the refusal | null, "files"}}};
NAME.expected.json {"estimator", "task": "regression" | "classification", "n_features",
"feature_names", "categorical" (feature indices), "classes" (classification), "rows" (repr
strings, "nan" for missing), "predictions" ([N, 1], regression) or "labels" (index into
classes of predict) and "probabilities" (predict_proba)}.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from statsmodels.datasets import anes96, fair

SEED = 0
N_HELD_OUT = 150
TRAIN_NAN = 0.10
HELD_OUT_NAN = 0.15
FORMS = ["p4.pkl", "joblib"]
PARTY = ["strong Democrat", "weak Democrat", "independent Democrat", "independent",
         "independent Republican", "weak Republican", "strong Republican"]


def fair_data() -> tuple[pd.DataFrame, pd.Series, list[str], str]:
    data = fair.load_pandas().data.astype(np.float64)
    x = data.drop(columns=["affairs"])
    # categorical: marriage rating (1-5), wife's and husband's occupation (1-6)
    return x, data["affairs"], ["rate_marriage", "occupation", "occupation_husb"], "children"


def anes_data(target: str) -> tuple[pd.DataFrame, pd.Series, list[str], str]:
    data = anes96.load_pandas().data.astype(np.float64)
    features = ["popul", "TVnews", "selfLR", "ClinLR", "DoleLR", "age", "educ", "income"]
    if target == "vote":
        features.insert(5, "PID")
        y = data["vote"].astype(int)
    else:
        y = data["PID"].astype(int).map(dict(enumerate(PARTY)))
    # categorical: education (1-7), income bracket (1-24)
    return data[features], y, ["educ", "income"], "TVnews"


def prepare(x: pd.DataFrame, y: pd.Series, categorical: list[str], test_only_nan: str):
    """Train/held-out split with NaN injected, one unseen category per categorical feature and
    extra held-out rows with out-of-range category codes."""
    rng = np.random.RandomState(SEED)
    order = rng.permutation(len(x))
    test, train = order[:N_HELD_OUT], order[N_HELD_OUT:]
    x_train, y_train = x.iloc[train].copy(), y.iloc[train].copy()
    x_test = x.iloc[test].copy()
    # One real category per categorical feature is never seen in training.
    for column in categorical:
        counts = x_train[column].value_counts()
        rare = counts.index[counts.argmin()]
        keep = (x_train[column] != rare).to_numpy()
        x_train, y_train = x_train[keep], y_train[keep]
        if not (x_test[column] == rare).any():
            x_test.iloc[0, x_test.columns.get_loc(column)] = rare
    train_mask = rng.rand(*x_train.shape) < TRAIN_NAN
    train_mask[:, x.columns.get_loc(test_only_nan)] = False
    x_train = x_train.mask(train_mask)
    x_test = x_test.mask(rng.rand(*x_test.shape) < HELD_OUT_NAN)
    extra = []
    for i, column in enumerate(categorical):
        for j, code in enumerate([-1.0, -0.5, 0.0, 2.5, 7.0, 30.0, 200.0, 255.0, 255.5]):
            row = x_test.iloc[(3 * i + j) % len(x_test)].copy()
            row[column] = code
            extra.append(row)
    x_test = pd.concat([x_test, pd.DataFrame(extra)], ignore_index=True)
    assert x_train[test_only_nan].notna().all() and x_test[test_only_nan].isna().any()
    return x_train, y_train, x_test


def specs():
    boost = {"max_iter": 20, "max_leaf_nodes": 8, "learning_rate": 0.2,
             "early_stopping": False, "random_state": SEED}
    return {
        "hgb_regressor": (HistGradientBoostingRegressor, {"loss": "squared_error", **boost}, fair_data()),
        "hgb_poisson": (HistGradientBoostingRegressor, {"loss": "poisson", **boost}, fair_data()),
        "hgb_binary": (HistGradientBoostingClassifier, boost, anes_data("vote")),
        "hgb_multiclass": (HistGradientBoostingClassifier, {**boost, "max_iter": 10}, anes_data("PID")),
    }


def fit(cls, params, x_train, y_train, categorical):
    model = cls(**params, categorical_features=categorical)
    return model.fit(x_train, y_train)


def expected(model, x_test: pd.DataFrame, categorical: list[int]) -> dict:
    out = {
        "estimator": type(model).__name__,
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "n_features": int(model.n_features_in_),
        "feature_names": [str(n) for n in model.feature_names_in_],
        "categorical": categorical,
        "rows": [[repr(float(v)) for v in row] for row in x_test.to_numpy()],
    }
    if isinstance(model, HistGradientBoostingRegressor):
        out["task"] = "regression"
        out["predictions"] = np.asarray(model.predict(x_test), dtype=np.float64).reshape(-1, 1).tolist()
    else:
        out["task"] = "classification"
        classes = model.classes_.tolist()
        out["classes"] = classes
        out["labels"] = [classes.index(label) for label in model.predict(x_test).tolist()]
        out["probabilities"] = model.predict_proba(x_test).tolist()
    return out


def same_predictions(a, b, x_test) -> bool:
    if isinstance(a, HistGradientBoostingRegressor):
        return np.array_equal(a.predict(x_test), b.predict(x_test))
    return np.array_equal(a.predict_proba(x_test), b.predict_proba(x_test))


def write_hist_fixtures(out: Path, to_json, write_forms) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    manifest = {"sklearn_version": sklearn.__version__, "numpy_version": np.__version__, "models": {}}
    for name, (cls, params, (x, y, categorical, test_only_nan)) in specs().items():
        x_train, y_train, x_test = prepare(x, y, categorical, test_only_nan)
        indices = [x.columns.get_loc(c) for c in categorical]
        model = fit(cls, params, x_train, y_train, indices)
        if getattr(model, "_preprocessor", None) is not None:
            # sklearn >= 1.4: categories go through an OrdinalEncoder the reader refuses.
            refused = f"{name}_categorical_refused"
            files = write_forms(model, out, refused, ["p4.pkl"])
            manifest["models"][refused] = {"estimator": type(model).__name__, "expected": None,
                                           "refused": "not on the allow-list", "files": files}
            print(f"  {refused:<30} {type(model).__name__:<48} refused (OrdinalEncoder preprocessor)")
            indices = []
            model = fit(cls, params, x_train, y_train, None)
        file = f"{name}.expected.json"
        (out / file).write_text(to_json(expected(model, x_test, indices)))
        files = write_forms(model, out, name, FORMS)
        for f in files:
            path = out / f
            loaded = joblib.load(path) if f.endswith("joblib") else pickle.loads(path.read_bytes())
            assert same_predictions(model, loaded, x_test), f
        manifest["models"][name] = {"estimator": type(model).__name__, "expected": file,
                                    "refused": None, "files": files}
        print(f"  {name:<30} {type(model).__name__:<48} {len(files)} forms, categorical {indices}")
    (out / "hist_manifest.json").write_text(to_json(manifest))
    json.loads((out / "hist_manifest.json").read_text())

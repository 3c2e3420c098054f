"""Preprocessing pipeline fixtures for convert-models (called by scripts/make_fixtures.py).

Writes tools/tests/data/fixtures-pre/<sklearn>-np<numpy>/ (deleted and rewritten on each run):
Pipelines of scalers (StandardScaler, MinMaxScaler with clip, RobustScaler, MaxAbsScaler),
SimpleImputer (every strategy, add_indicator, a column empty in training) and ColumnTransformer
(columns by name and by index, remainder drop / passthrough / a transformer, nested Pipelines)
before supported regressors and classifiers, fitted on real data bundled with statsmodels
(`fair`, `anes96`) and scikit-learn (`diabetes`, `wine`), no network.

Missing values: 10% of the training cells of the columns a model imputes (or whose estimator
accepts NaN), and 15% of the held-out cells of every column the fitted model accepts NaN in
(found by asking sklearn: a column is nullable iff `predict` succeeds with NaN there). Extra
held-out rows carry values far outside the training range (MinMaxScaler's clip).

Files: pre_manifest.json {"sklearn_version", "numpy_version", "models": {NAME: {"estimator",
"expected": NAME.expected.json | null, "refused": substring of the refusal | null, "files"}}};
NAME.expected.json {"estimator", "task", "n_features", "feature_names", "nullable" (per
feature, from sklearn), "rows" (repr strings, "nan" for missing), "predictions" ([N, 1],
regression) or "classes", "labels" (index into classes of predict) and "probabilities"}.
"""

from __future__ import annotations

import pickle
import shutil
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_wine
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    PolynomialFeatures,
    RobustScaler,
    StandardScaler,
)
from sklearn.tree import DecisionTreeClassifier
from statsmodels.datasets import anes96, fair

SEED = 0
N_HELD_OUT = 120
TRAIN_NAN = 0.10
HELD_OUT_NAN = 0.15
FORMS = ["p4.pkl", "joblib"]
ANES = ["popul", "TVnews", "selfLR", "ClinLR", "DoleLR", "PID", "age", "educ", "income"]


def fair_data():
    data = fair.load_pandas().data.astype(np.float64)
    x = data.drop(columns=["affairs"])
    return x, data["affairs"]


def fair_with_empty():
    """fair plus a column that is all NaN in training (SimpleImputer drops it)."""
    x, y = fair_data()
    x.insert(2, "empty", np.nan)
    return x, y


def anes_data(target: str):
    data = anes96.load_pandas().data.astype(np.float64)
    features = [f for f in ANES if f != target]
    return data[features], data[target].astype(int)


def sklearn_data(loader, named: bool):
    """A dataset bundled with scikit-learn, with its column names or unnamed (numpy input)."""
    bunch = loader()
    return pd.DataFrame(bunch.data, columns=bunch.feature_names if named else None), pd.Series(bunch.target)


def imputed(strategy="mean", **kwargs):
    return SimpleImputer(strategy=strategy, **kwargs)


def specs():
    """name -> (model, data, columns with NaN in training (None: all))."""
    forest = {"n_estimators": 10, "max_depth": 6, "random_state": SEED}
    return {
        "fair_impute_standard_ridge": (
            Pipeline([("impute", imputed("mean", add_indicator=True)), ("scale", StandardScaler()),
                      ("ridge", Ridge(alpha=1.0))]),
            fair_with_empty(), None),
        "fair_median_minmax_clip_forest": (
            Pipeline([("impute", imputed("median")), ("scale", MinMaxScaler(feature_range=(-1, 2), clip=True)),
                      ("forest", RandomForestRegressor(**forest))]),
            fair_data(), None),
        "fair_columns_by_name_hgb": (
            Pipeline([
                ("columns", ColumnTransformer([
                    ("rate", Pipeline([("impute", imputed("most_frequent", add_indicator=True)),
                                       ("robust", RobustScaler())]), ["rate_marriage", "religious"]),
                    ("years", Pipeline([("impute", imputed("constant", fill_value=-1.0)),
                                        ("maxabs", MaxAbsScaler())]), ["age", "yrs_married"]),
                    ("unused", "drop", ["educ"]),
                ], remainder="passthrough")),
                ("hgb", HistGradientBoostingRegressor(max_iter=20, max_leaf_nodes=8, random_state=SEED)),
            ]),
            fair_data(), None),
        "diabetes_columns_by_index_gb": (
            Pipeline([
                ("columns", ColumnTransformer([
                    ("standard", StandardScaler(), [0, 2, 3]),
                    ("imputed", Pipeline([("impute", imputed("mean", add_indicator=True)),
                                          ("minmax", MinMaxScaler())]), [4, 5, 6]),
                    ("last", RobustScaler(with_centering=False), [-1]),
                ], remainder="drop")),
                ("gb", GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=SEED)),
            ]),
            sklearn_data(load_diabetes, True), [4, 5, 6]),
        "anes_vote_columns_logistic": (
            Pipeline([
                ("columns", ColumnTransformer([
                    ("num", Pipeline([("impute", imputed("mean", add_indicator=True)),
                                      ("standard", StandardScaler())]), ["popul", "TVnews", "age"]),
                    ("lr", Pipeline([("impute", imputed("median")), ("minmax", MinMaxScaler(clip=True))]),
                     ["selfLR", "ClinLR", "DoleLR", "PID"]),
                ], remainder=RobustScaler())),
                ("logistic", LogisticRegression(max_iter=5000)),
            ]),
            anes_data("vote"), ["popul", "TVnews", "age", "selfLR", "ClinLR", "DoleLR", "PID"]),
        "anes_pid_impute_forest": (
            Pipeline([("impute", imputed("most_frequent", add_indicator=True)),
                      ("forest", RandomForestClassifier(**forest))]),
            anes_data("PID"), None),
        "wine_chain_gb": (
            Pipeline([("impute", imputed("constant", fill_value=0.0, add_indicator=True)),
                      ("maxabs", MaxAbsScaler()), ("robust", RobustScaler()),
                      ("gb", GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=SEED))]),
            sklearn_data(load_wine, False), None),
        "wine_minmax_then_impute_tree": (
            Pipeline([("minmax", MinMaxScaler()), ("impute", imputed("median")),
                      ("tree", DecisionTreeClassifier(max_depth=5, random_state=SEED))]),
            sklearn_data(load_wine, True), None),
    }


def refused_specs():
    """name -> (model, data, substring of the refusal)."""
    x, y = fair_data()
    return {
        "refused_polynomial": (Pipeline([("poly", PolynomialFeatures()), ("ridge", Ridge())]), (x, y),
                               "PolynomialFeatures"),
        "refused_log": (Pipeline([("log", FunctionTransformer(np.log1p)), ("ridge", Ridge())]), (x, y), "log1p"),
        "refused_missing_minus_one": (Pipeline([("impute", SimpleImputer(missing_values=-1.0)), ("ridge", Ridge())]),
                                      (x, y), "missing_values"),
    }


def split(x: pd.DataFrame, y: pd.Series, nan_columns, rng):
    order = rng.permutation(len(x))
    test, train = order[:N_HELD_OUT], order[N_HELD_OUT:]
    x_train, y_train, x_test = x.iloc[train].copy(), y.iloc[train].copy(), x.iloc[test].copy()
    columns = list(x.columns) if nan_columns is None else list(nan_columns)
    mask = np.zeros(x_train.shape, dtype=bool)
    for c in columns:
        j = c if isinstance(c, int) else x.columns.get_loc(c)
        mask[:, j] = rng.rand(len(x_train)) < TRAIN_NAN
    return x_train.mask(mask), y_train, x_test


def nullable(model, row: pd.DataFrame) -> list[bool]:
    """Per column: whether sklearn's predict accepts NaN there."""
    out = []
    for j in range(row.shape[1]):
        probe = row.copy()
        probe.iloc[0, j] = np.nan
        try:
            model.predict(probe)
        except ValueError:
            out.append(False)
        else:
            out.append(True)
    return out


def held_out(model, x_train: pd.DataFrame, x_test: pd.DataFrame, rng):
    """The held-out rows with NaN in the nullable columns, plus out-of-range rows."""
    full = x_test.fillna(x_train.median()).fillna(0.0)
    flags = nullable(model, full.iloc[:1])
    mask = rng.rand(*full.shape) < HELD_OUT_NAN
    mask[:, ~np.array(flags)] = False
    rows = full.mask(mask)
    extreme = full.iloc[:6].copy() * np.array([3.0, -2.0, 10.0, 0.5, -0.1, 100.0])[:, None]
    return pd.concat([rows, extreme], ignore_index=True), flags


def expected(model, x_test: pd.DataFrame, flags: list[bool]) -> dict:
    out = {
        "estimator": "Pipeline(" + ", ".join(type(s).__name__ for _, s in model.steps) + ")",
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "n_features": int(model.n_features_in_),
        # as the converter records them: feature_names_in_, or x0, x1, ... (fitted on numpy)
        "feature_names": [str(c) for c in getattr(model, "feature_names_in_", [])]
        or [f"x{i}" for i in range(x_test.shape[1])],
        "nullable": flags,
        "rows": [[repr(float(v)) for v in row] for row in x_test.to_numpy()],
    }
    if hasattr(model, "predict_proba"):
        classes = model.classes_.tolist()
        out["task"] = "classification"
        out["classes"] = classes
        out["labels"] = [classes.index(label) for label in model.predict(x_test).tolist()]
        out["probabilities"] = np.asarray(model.predict_proba(x_test), dtype=np.float64).tolist()
    else:
        out["task"] = "regression"
        out["predictions"] = np.asarray(model.predict(x_test), dtype=np.float64).reshape(-1, 1).tolist()
    return out


def write_pre_fixtures(out: Path, to_json, write_forms) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the all-NaN column, convergence
        write_models(out, to_json, write_forms)


def write_models(out: Path, to_json, write_forms) -> None:
    manifest = {"sklearn_version": sklearn.__version__, "numpy_version": np.__version__, "models": {}}
    for name, (model, (x, y), nan_columns) in specs().items():
        rng = np.random.RandomState(SEED)
        x_train, y_train, x_test = split(x, y, nan_columns, rng)
        model.fit(x_train, y_train)
        x_test, flags = held_out(model, x_train, x_test, rng)
        file = f"{name}.expected.json"
        exp = expected(model, x_test, flags)
        (out / file).write_text(to_json(exp))
        files = write_forms(model, out, name, FORMS)
        for f in files:
            path = out / f
            loaded = joblib.load(path) if f.endswith("joblib") else pickle.loads(path.read_bytes())
            assert expected(loaded, x_test, flags) == exp, f
        manifest["models"][name] = {"estimator": exp["estimator"], "expected": file, "refused": None, "files": files}
        print(f"  {name:<32} {exp['estimator']:<60} nullable {sum(flags)}/{len(flags)}")
    for name, (model, (x, y), needle) in refused_specs().items():
        model.fit(x.fillna(0.0), y)
        files = write_forms(model, out, name, ["p4.pkl"])
        manifest["models"][name] = {"estimator": type(model).__name__, "expected": None, "refused": needle,
                                    "files": files}
        print(f"  {name:<32} refused ({needle})")
    (out / "pre_manifest.json").write_text(to_json(manifest))

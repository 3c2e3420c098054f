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
feature, from sklearn), "types" ("number" / "string" per feature), "refuses_unknown" (per
feature, from sklearn: a value never seen in training raises), "rows" (the numeric features,
repr strings, "nan" for missing), "strings" (the string features, "" for missing; only with
string features), "predictions" ([N, 1], regression) or "classes", "labels" (index into
classes of predict) and "probabilities"}.

A column no transformer reads is recorded as a (nullable) number: the pickle does not say
its type, so the string models read every string column they are given.

String columns (anes96's party and education, fair's occupations, as strings): the rarest
category of each is left out of training, held-out rows carry it and strings never seen
anywhere (where sklearn accepts unknown values); missing values are NaN for sklearn and "" in
the expected file (contract v2).
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
    OneHotEncoder,
    OrdinalEncoder,
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


PARTY = ["strong Democrat", "weak Democrat", "independent Democrat", "independent",
         "independent Republican", "weak Republican", "strong Republican"]


def as_strings(codes: pd.Series, prefix: str) -> pd.Series:
    """Coded categories as strings (`prefix` + code), NaN kept."""
    return codes.map(lambda v: v if pd.isna(v) else f"{prefix}{int(v)}").astype(object)


def anes_strings(target: str):
    """anes96 with party id and education as strings (target "vote", or "PID" as party names)."""
    data = anes96.load_pandas().data
    x = data[["popul", "TVnews", "selfLR", "age", "income"]].astype(np.float64)
    if target == "vote":
        x.insert(3, "party", data["PID"].astype(int).map(dict(enumerate(PARTY))).astype(object))
        y = data["vote"].astype(int)
    else:
        y = data["PID"].astype(int).map(dict(enumerate(PARTY)))
    x.insert(1, "educ", as_strings(data["educ"], "educ level "))
    if target != "vote":
        x["income_bracket"] = as_strings(data["income"], "bracket ")
    return x, y


def fair_strings():
    x, y = fair_data()
    x["occupation"] = as_strings(x["occupation"], "occupation ")
    x["occupation_husb"] = as_strings(x["occupation_husb"], "occupation ")
    return x, y


def dense_onehot(**kwargs):
    return OneHotEncoder(sparse_output=False, **kwargs)


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
        # String columns (contract v2's input_strings): unseen categories in held-out rows.
        "anes_vote_strings_logistic": (
            Pipeline([
                ("columns", ColumnTransformer([
                    ("num", Pipeline([("impute", imputed()), ("standard", StandardScaler())]),
                     ["popul", "TVnews", "selfLR", "age"]),
                    ("party", Pipeline([("impute", imputed("most_frequent")),
                                        ("onehot", dense_onehot(handle_unknown="ignore"))]), ["party"]),
                    ("educ", dense_onehot(handle_unknown="infrequent_if_exist", min_frequency=60), ["educ"]),
                    ("income", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), ["income"]),
                ], remainder="drop")),
                ("logistic", LogisticRegression(max_iter=5000)),
            ]),
            anes_strings("vote"), ["popul", "TVnews", "age", "party", "educ"]),
        "fair_strings_hgb": (
            Pipeline([
                ("columns", ColumnTransformer([
                    ("occupations", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                                   encoded_missing_value=-2), ["occupation", "occupation_husb"]),
                    ("rate", dense_onehot(drop="first"), ["rate_marriage"]),
                ], remainder="passthrough")),
                ("hgb", HistGradientBoostingRegressor(max_iter=20, max_leaf_nodes=8, random_state=SEED)),
            ]),
            fair_strings(), ["occupation", "occupation_husb", "age", "yrs_married", "children"]),
        "anes_pid_strings_forest": (
            Pipeline([
                ("columns", ColumnTransformer([
                    ("educ", dense_onehot(handle_unknown="infrequent_if_exist", max_categories=4), ["educ"]),
                    ("income", Pipeline([("impute", imputed("constant", fill_value="not asked")),
                                         ("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value",
                                                                    unknown_value=-1))]), ["income_bracket"]),
                    ("income_code", dense_onehot(handle_unknown="ignore", drop="if_binary"), ["income"]),
                ], remainder=Pipeline([("impute", imputed("median")), ("robust", RobustScaler())]))),
                ("forest", RandomForestClassifier(**forest)),
            ]),
            anes_strings("PID"), ["educ", "income_bracket", "popul", "TVnews", "selfLR", "age"]),
    }


def refused_specs():
    """name -> (model, data, substring of the refusal)."""
    x, y = fair_data()
    strings, _ = fair_strings()
    return {
        "refused_polynomial": (Pipeline([("poly", PolynomialFeatures()), ("ridge", Ridge())]), (x, y),
                               "PolynomialFeatures"),
        "refused_log": (Pipeline([("log", FunctionTransformer(np.log1p)), ("ridge", Ridge())]), (x, y), "log1p"),
        "refused_missing_minus_one": (Pipeline([("impute", SimpleImputer(missing_values=-1.0)), ("ridge", Ridge())]),
                                      (x, y), "missing_values"),
        "refused_sparse_onehot": (Pipeline([("onehot", OneHotEncoder()), ("ridge", Ridge())]), (x[["occupation"]], y),
                                  "sparse output"),
        "refused_sparse_columns": (
            Pipeline([("columns", ColumnTransformer([("onehot", OneHotEncoder(), ["age", "yrs_married"])])),
                      ("ridge", Ridge())]), (x, y), "sparse output"),
        "refused_strings_outside_columns": (
            Pipeline([("ordinal", OrdinalEncoder()), ("ridge", Ridge())]), (strings[["occupation"]], y),
            "only supported inside the first step"),
        "refused_empty_string_category": (
            Pipeline([("columns", ColumnTransformer([("onehot", dense_onehot(), ["occupation"])])), ("ridge", Ridge())]),
            (strings.assign(occupation=strings["occupation"].replace("occupation 1", "")), y), "empty string"),
    }


def split(x: pd.DataFrame, y: pd.Series, nan_columns, rng):
    order = rng.permutation(len(x))
    test, train = order[:N_HELD_OUT], order[N_HELD_OUT:]
    x_train, y_train, x_test = x.iloc[train].copy(), y.iloc[train].copy(), x.iloc[test].copy()
    # The rarest category of each string column is never seen in training.
    for column in string_columns(x):
        counts = x_train[column].value_counts()
        keep = (x_train[column] != counts.index[counts.argmin()]).to_numpy()
        x_train, y_train = x_train[keep], y_train[keep]
    columns = list(x.columns) if nan_columns is None else list(nan_columns)
    mask = np.zeros(x_train.shape, dtype=bool)
    for c in columns:
        j = c if isinstance(c, int) else x.columns.get_loc(c)
        mask[:, j] = rng.rand(len(x_train)) < TRAIN_NAN
    return x_train.mask(mask), y_train, x_test


def string_columns(x: pd.DataFrame) -> list[str]:
    return [c for c in x.columns if x[c].dtype == object]


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
    strings = string_columns(x_test)
    numbers = [c for c in x_test.columns if c not in strings]
    full = x_test.copy()
    full[numbers] = full[numbers].fillna(x_train[numbers].median()).fillna(0.0)
    for c in strings:
        full[c] = full[c].fillna(x_train[c].mode()[0])
    flags = nullable(model, full.iloc[:1])
    mask = rng.rand(*full.shape) < HELD_OUT_NAN
    mask[:, ~np.array(flags)] = False
    rows = full.mask(mask)
    extreme = full.iloc[:6].copy()
    # Far outside the training range, in the columns that accept any number.
    wide = [c for c in numbers if accepts(model, full.iloc[:1], c, 1e6)]
    extreme[wide] = extreme[wide] * np.array([3.0, -2.0, 10.0, 0.5, -0.1, 100.0])[:, None]
    # Strings never seen anywhere, where the model accepts unknown values.
    for j, c in enumerate(strings):
        if accepts(model, full.iloc[:1], c, "never seen"):
            extreme.iloc[j % len(extreme), extreme.columns.get_loc(c)] = "never seen"
    return pd.concat([rows, extreme], ignore_index=True), flags


def accepts(model, row: pd.DataFrame, column: str, value: object) -> bool:
    probe = row.copy()
    probe[column] = value
    try:
        model.predict(probe)
    except ValueError:
        return False
    return True


def refuses_unknown(model, row: pd.DataFrame) -> list[bool]:
    """Per column: whether sklearn refuses a value never seen in training there."""
    return [not accepts(model, row, c, "never seen" if row[c].dtype == object else 12345.5) for c in row.columns]


def expected(model, x_test: pd.DataFrame, flags: list[bool], refused: list[bool]) -> dict:
    strings = string_columns(x_test)
    numbers = [c for c in x_test.columns if c not in strings]
    out = {
        "estimator": "Pipeline(" + ", ".join(type(s).__name__ for _, s in model.steps) + ")",
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "n_features": int(model.n_features_in_),
        # as the converter records them: feature_names_in_, or x0, x1, ... (fitted on numpy)
        "feature_names": [str(c) for c in getattr(model, "feature_names_in_", [])]
        or [f"x{i}" for i in range(x_test.shape[1])],
        "nullable": flags,
        "types": ["string" if c in strings else "number" for c in x_test.columns],
        "refuses_unknown": refused,
        "rows": [[repr(float(v)) for v in row] for row in x_test[numbers].to_numpy()],
    }
    if strings:
        out["strings"] = [["" if pd.isna(v) else str(v) for v in row] for row in x_test[strings].to_numpy()]
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
        refused = refuses_unknown(model, x_test.fillna(x_test.mode().iloc[0]).iloc[:1])
        file = f"{name}.expected.json"
        exp = expected(model, x_test, flags, refused)
        (out / file).write_text(to_json(exp))
        files = write_forms(model, out, name, FORMS)
        for f in files:
            path = out / f
            loaded = joblib.load(path) if f.endswith("joblib") else pickle.loads(path.read_bytes())
            assert expected(loaded, x_test, flags, refused) == exp, f
        manifest["models"][name] = {"estimator": exp["estimator"], "expected": file, "refused": None, "files": files}
        print(f"  {name:<32} {exp['estimator']:<60} nullable {sum(flags)}/{len(flags)}")
    for name, (model, (x, y), needle) in refused_specs().items():
        model.fit(x.fillna(0.0) if "strings" not in name and "string" not in name else x, y)
        files = write_forms(model, out, name, ["p4.pkl"])
        manifest["models"][name] = {"estimator": type(model).__name__, "expected": None, "refused": needle,
                                    "files": files}
        print(f"  {name:<32} refused ({needle})")
    (out / "pre_manifest.json").write_text(to_json(manifest))

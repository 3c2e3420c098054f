"""XGBoost fixtures for convert-models (run by scripts/make-fixtures-xgboost.sh).

Writes tools/tests/data/fixtures-xgboost/<xgboost version>/ (deleted and rewritten on each
run): XGBRegressor / XGBClassifier / XGBRFRegressor / XGBRFClassifier models, one per
objective, fitted on real data bundled with statsmodels (no network): the `fair` survey
(affairs, years married) and the `anes96` election study (vote, party id). 10% of the training
values and 15% of the held-out values are NaN, and one feature is NaN only in held-out rows.

Each model is saved as a pickle (`.pkl`, protocol 4), a joblib file (`.joblib`), and native
files from the wrapper's `save_model` (`.json`, `.ubj`; they carry the wrapper's
`scikit_learn` attribute, so `predict` semantics follow the wrapper). The early-stopped model
also has `_booster.json`: `get_booster().save_model`, a plain Booster file whose expected
outputs are `Booster.predict`'s (every tree). Every file is loaded back and must predict the
same bits as the fitted model, or the script fails.

Files: manifest.json {"xgboost_version", "numpy_version", "sklearn_version", "models": {NAME:
{"files": [...], "expected": NAME.expected.json}}}; rows-<data>.json {"feature_names",
"rows" (repr strings, "nan" for missing)}; NAME.expected.json {"estimator", "objective",
"task", "rows": rows file, "n_features", "classes" (classifiers), "margins" ([N, K] float32
values as repr of the exact double), "predictions" ([N, 1], regressors: `predict`), "labels"
(classifiers: `predict`), "probabilities" (classifiers: `predict_proba`)}.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn
import xgboost as xgb
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from statsmodels.datasets import anes96, fair

SEED = 0
N_HELD_OUT = 200
TRAIN_NAN = 0.10
HELD_OUT_NAN = 0.15
MAJOR = int(xgb.__version__.split(".")[0])
PARAMS = dict(n_estimators=20, max_depth=4, learning_rate=0.3, random_state=SEED, n_jobs=1)


def nan_split(x: pd.DataFrame, test_only_nan: str):
    rng = np.random.RandomState(SEED)
    order = rng.permutation(len(x))
    test, train = order[:N_HELD_OUT], order[N_HELD_OUT:]
    x = x.copy()
    values = x.to_numpy(dtype=np.float64, copy=True)
    train_mask = rng.rand(len(train), values.shape[1]) < TRAIN_NAN
    test_mask = rng.rand(len(test), values.shape[1]) < HELD_OUT_NAN
    col = list(x.columns).index(test_only_nan)
    train_mask[:, col] = False
    block = values[train]
    block[train_mask] = np.nan
    values[train] = block
    block = values[test]
    block[test_mask] = np.nan
    values[test] = block
    x = pd.DataFrame(values, columns=x.columns)
    return x.iloc[train].reset_index(drop=True), x.iloc[test].reset_index(drop=True), train, test


def fair_data():
    data = fair.load_pandas().data.astype(np.float64)
    x = data.drop(columns=["affairs"])
    x_train, x_test, train, test = nan_split(x, "children")
    return x_train, x_test, data.iloc[train].reset_index(drop=True)


def anes_data():
    data = anes96.load_pandas().data.astype(np.float64)
    features = ["popul", "TVnews", "selfLR", "ClinLR", "DoleLR", "age", "educ", "income"]
    x_train, x_test, train, test = nan_split(data[features], "TVnews")
    return x_train, x_test, data.iloc[train].reset_index(drop=True)


def f32_repr(values) -> list:
    out = np.asarray(values)
    assert out.dtype == np.float32, out.dtype
    return [[repr(float(v)) for v in np.atleast_1d(row)] for row in out.reshape(len(out), -1)]


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and (a.view(np.uint8) == b.view(np.uint8)).all()


def outputs(model, x, classifier: bool) -> dict:
    margins = model.predict(x, output_margin=True)
    out = {"margins": f32_repr(margins)}
    if classifier:
        out["labels"] = [int(v) for v in model.predict(x)]
        out["probabilities"] = f32_repr(model.predict_proba(x))
    else:
        out["predictions"] = f32_repr(model.predict(x))
    return out


def booster_outputs(booster, x) -> dict:
    d = xgb.DMatrix(x)
    return {
        "margins": f32_repr(booster.predict(d, output_margin=True)),
        "predictions": f32_repr(booster.predict(d)),
    }


def main() -> None:
    version = xgb.__version__
    out = Path(__file__).resolve().parent.parent / "tools/tests/data/fixtures-xgboost" / version
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    manifest = {"xgboost_version": version, "numpy_version": np.__version__,
                "sklearn_version": sklearn.__version__, "models": {}}

    fx_train, fx_test, fair_train = fair_data()
    ax_train, ax_test, anes_train = anes_data()
    for name, x in [("fair", fx_test), ("anes", ax_test)]:
        rows = [[repr(float(v)) if not np.isnan(v) else "nan" for v in row] for row in x.to_numpy()]
        (out / f"rows-{name}.json").write_text(json.dumps({"feature_names": list(x.columns), "rows": rows}))
    affairs = fair_train["affairs"].to_numpy()
    years = fair_train["yrs_married"].to_numpy()
    share = fair_train["rate_marriage"].to_numpy() / 5.0
    cheated = (affairs > 0).astype(int)
    vote = anes_train["vote"].to_numpy().astype(int)
    party = anes_train["PID"].to_numpy().astype(int)
    x_es, y_es = fx_train.iloc[:4000], affairs[:4000]
    x_val, y_val = fx_train.iloc[4000:], affairs[4000:]

    cases = [
        # name, data, estimator, classifier, fit kwargs
        ("reg_squarederror", "fair", xgb.XGBRegressor(**PARAMS), affairs),
        ("reg_squaredlogerror", "fair", xgb.XGBRegressor(objective="reg:squaredlogerror", **PARAMS), affairs),
        ("reg_absoluteerror", "fair", xgb.XGBRegressor(objective="reg:absoluteerror", **PARAMS), affairs),
        ("reg_pseudohubererror", "fair", xgb.XGBRegressor(objective="reg:pseudohubererror", **PARAMS), affairs),
        ("count_poisson", "fair", xgb.XGBRegressor(objective="count:poisson", **PARAMS), affairs),
        ("reg_tweedie", "fair", xgb.XGBRegressor(objective="reg:tweedie", tweedie_variance_power=1.3, **PARAMS), affairs),
        ("reg_gamma", "fair", xgb.XGBRegressor(objective="reg:gamma", **PARAMS), years),
        ("reg_logistic", "fair", xgb.XGBRegressor(objective="reg:logistic", base_score=0.3, **PARAMS), share),
        ("binary_logitraw", "fair", xgb.XGBRegressor(objective="binary:logitraw", **PARAMS), cheated),
        ("clf_binary", "anes", xgb.XGBClassifier(**PARAMS), vote),
        ("clf_softprob", "anes", xgb.XGBClassifier(**{**PARAMS, "n_estimators": 8}), party),
        ("clf_softmax", "anes", xgb.XGBClassifier(objective="multi:softmax", **{**PARAMS, "n_estimators": 8}), party),
        ("rf_regressor", "fair", xgb.XGBRFRegressor(n_estimators=8, max_depth=4, random_state=SEED, n_jobs=1), affairs),
        ("rf_classifier", "anes", xgb.XGBRFClassifier(n_estimators=8, max_depth=4, random_state=SEED, n_jobs=1), vote),
        ("pipeline", "fair", Pipeline([("scale", StandardScaler()), ("xgb", xgb.XGBRegressor(**PARAMS))]), affairs),
    ]
    if MAJOR >= 2:
        cases.append(("reg_quantileerror", "fair",
                      xgb.XGBRegressor(objective="reg:quantileerror", quantile_alpha=0.8, **PARAMS), affairs))
    data = {"fair": (fx_train, fx_test), "anes": (ax_train, ax_test)}
    fitted = []
    for name, dname, est, y in cases:
        x_train, x_test = data[dname]
        est.fit(x_train, y)
        fitted.append((name, dname, est, x_test))
    es = xgb.XGBRegressor(early_stopping_rounds=3, **{**PARAMS, "n_estimators": 200})
    es.fit(x_es, y_es, eval_set=[(x_val, y_val)], verbose=False)
    assert es.best_iteration + 1 < 200, "early stopping did not stop"
    fitted.append(("early_stopped", "fair", es, fx_test))

    for name, dname, est, x_test in fitted:
        final = est[-1] if isinstance(est, Pipeline) else est
        classifier = isinstance(final, xgb.XGBClassifier)
        expected = {"estimator": type(est).__name__, "objective": final.objective,
                    "task": "classification" if classifier else "regression",
                    "rows": f"rows-{dname}.json", "n_features": int(x_test.shape[1])}
        if classifier:
            expected["classes"] = [int(c) for c in final.classes_]
        expected.update(outputs(est, x_test, classifier))
        files = [f"{name}.pkl", f"{name}.joblib"]
        with open(out / files[0], "wb") as f:
            pickle.dump(est, f, protocol=4)
        joblib.dump(est, out / files[1])
        for file in files:
            loaded = pickle.load(open(out / file, "rb")) if file.endswith(".pkl") else joblib.load(out / file)
            check(name, file, outputs(loaded, x_test, classifier), expected)
        if not isinstance(est, Pipeline):
            for ext in ["json", "ubj"]:
                file = f"{name}.{ext}"
                est.save_model(out / file)
                loaded = type(est)()
                loaded.load_model(out / file)
                check(name, file, outputs(loaded, x_test, classifier), expected)
                files.append(file)
        (out / f"{name}.expected.json").write_text(json.dumps(expected))
        manifest["models"][name] = {"files": files, "expected": f"{name}.expected.json"}
        if name == "early_stopped":
            booster = est.get_booster()
            booster.save_model(out / "early_stopped_booster.json")
            loaded = xgb.Booster(model_file=str(out / "early_stopped_booster.json"))
            b_expected = {"estimator": "Booster", "objective": est.objective, "task": "regression",
                          "rows": f"rows-{dname}.json", "n_features": int(x_test.shape[1]),
                          **booster_outputs(booster, x_test)}
            check(name, "early_stopped_booster.json", booster_outputs(loaded, x_test),
                  {k: b_expected[k] for k in ["margins", "predictions"]})
            assert b_expected["predictions"] != expected["predictions"], "best_iteration changed nothing"
            (out / "early_stopped_booster.expected.json").write_text(json.dumps(b_expected))
            manifest["models"]["early_stopped_booster"] = {
                "files": ["early_stopped_booster.json"], "expected": "early_stopped_booster.expected.json"}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"wrote {len(manifest['models'])} models to {out}")


def check(name: str, file: str, got: dict, expected: dict) -> None:
    for key, value in got.items():
        if value != expected[key]:
            sys.exit(f"{name}: {file} reloaded predicts other {key} than the fitted model")


if __name__ == "__main__":
    main()

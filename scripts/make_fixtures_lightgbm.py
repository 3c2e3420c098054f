"""LightGBM fixtures for convert-models (run by scripts/make-fixtures-lightgbm.sh).

Writes tools/tests/data/fixtures-lightgbm/<lightgbm version>/ (deleted and rewritten on each
run): LGBMRegressor / LGBMClassifier models, one per objective and missing-value convention,
fitted on real data bundled with statsmodels (no network): the `fair` survey (regressors;
target `affairs`, shifted or thresholded where an objective needs it; marriage rating and
occupations are coded categories) and the `anes96` election study (classifiers: `vote`, and
`PID` as 7 party names; education and income are coded categories). NaN is injected into the
training and held-out rows, one feature has NaN only in held-out rows (LightGBM gives it
missing type None), one category of each coded feature is left out of training, and extra
held-out rows carry exact zeros, values around LightGBM's zero threshold (1e-35f) and
out-of-range, negative and fractional category codes.

Every model is written three ways: pickle (protocol 4), joblib, and LightGBM's own text
model (`booster_.save_model`, `NAME.txt`). The expected answers are LightGBM's own:
`predict` / `predict_proba` of the unpickled wrapper, checked equal to the fitted model's and
to `lightgbm.Booster(model_file=NAME.txt).predict` (binary: the probability of class 1).

Files: manifest.json {"lightgbm_version", "sklearn_version", "numpy_version", "models":
{NAME: {"estimator", "objective", "expected": NAME.expected.json, "pickles": [...], "native":
NAME.txt, or null for the pipeline (whose booster alone reads scaled rows) and the
cross_entropy classifier (whose booster alone is a cross_entropy regressor)}}}; NAME.expected.json {"estimator", "objective", "task", "n_features",
"feature_names" (the names the converted model records; x0… when LightGBM has Column_N),
"categorical" (feature indices), "missing_types" (the node missing types the trees use),
"best_iteration", "rows" (repr strings, "nan" for missing), and "predictions" ([N, 1]) or
"classes", "labels" (index into classes of predict) and "probabilities" (predict_proba)}.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import warnings
from pathlib import Path

import joblib
import lightgbm
import numpy as np
import pandas as pd
import sklearn
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from statsmodels.datasets import anes96, fair

ROOT = Path(__file__).resolve().parent.parent
SEED = 0
N_HELD_OUT = 150
TRAIN_NAN = 0.10
HELD_OUT_NAN = 0.15
PARTY = ["strong Democrat", "weak Democrat", "independent Democrat", "independent",
         "independent Republican", "weak Republican", "strong Republican"]
ZERO_THRESHOLD = float(np.float32(1e-35))
SPECIAL_NUMBERS = [0.0, -0.0, 1e-36, -1e-36, ZERO_THRESHOLD, -ZERO_THRESHOLD, 2e-35, -2e-35,
                   1e300, -1e300]
SPECIAL_CODES = [-1.0, -0.5, -0.0, 0.0, 0.5, 2.5, 7.0, 30.0, 200.0, 255.5, 1e10, -1e10]
BOOST = {"n_estimators": 20, "num_leaves": 8, "learning_rate": 0.2, "random_state": SEED,
         "min_child_samples": 10, "verbose": -1}


def fair_data():
    data = fair.load_pandas().data.astype(np.float64)
    x = data.drop(columns=["affairs"])
    return x, data["affairs"], ["rate_marriage", "occupation", "occupation_husb"], "children"


def anes_data(target: str):
    data = anes96.load_pandas().data.astype(np.float64)
    features = ["popul", "TVnews", "selfLR", "ClinLR", "DoleLR", "age", "educ", "income"]
    if target == "vote":
        y = data["vote"].map({0.0: "Clinton", 1.0: "Dole"})
    elif target == "vote_int":
        y = data["vote"].astype(int)
    else:
        y = data["PID"].astype(int).map(dict(enumerate(PARTY)))
    return data[features], y, ["educ", "income"], "TVnews"


def prepare(x: pd.DataFrame, y: pd.Series, categorical: list[str], test_only_nan: str):
    """Train/held-out split with NaN injected, one unseen category per categorical feature,
    and extra held-out rows with special numbers and category codes."""
    rng = np.random.RandomState(SEED)
    order = rng.permutation(len(x))
    test, train = order[:N_HELD_OUT], order[N_HELD_OUT:]
    x_train, y_train = x.iloc[train].copy(), y.iloc[train].copy()
    x_test = x.iloc[test].copy()
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
    numeric = [c for c in x.columns if c not in categorical]
    for i, column in enumerate(numeric):
        for j, value in enumerate(SPECIAL_NUMBERS):
            row = x_test.iloc[(5 * i + j) % len(x_test)].copy()
            row[column] = value
            extra.append(row)
    for i, column in enumerate(categorical):
        for j, code in enumerate(SPECIAL_CODES + [np.nan]):
            row = x_test.iloc[(3 * i + j) % len(x_test)].copy()
            row[column] = code
            extra.append(row)
    x_test = pd.concat([x_test, pd.DataFrame(extra)], ignore_index=True)
    assert x_train[test_only_nan].notna().all() and x_test[test_only_nan].isna().any()
    return x_train, y_train, x_test


def specs():
    """NAME: (estimator class, params, data, target transform, fit on a DataFrame, extra)."""
    shift = {
        "mape": lambda y: y + 1.0,
        "gamma": lambda y: y + 0.5,
        "cross_entropy": lambda y: (y > 0).astype(np.float64),
    }
    out = {}
    for objective in ["regression", "regression_l1", "huber", "fair", "quantile", "mape",
                      "poisson", "gamma", "tweedie", "cross_entropy"]:
        params = {**BOOST, "objective": objective}
        if objective == "quantile":
            params["alpha"] = 0.7
        out[f"lgbm_{objective}"] = (LGBMRegressor, params, fair_data(),
                                    shift.get(objective, lambda y: y), False, {})
    out["lgbm_zero_as_missing"] = (LGBMRegressor, {**BOOST, "zero_as_missing": True},
                                   fair_data(), lambda y: y, True, {})
    out["lgbm_no_missing"] = (LGBMRegressor, {**BOOST, "use_missing": False}, fair_data(),
                              lambda y: y, False, {})
    out["lgbm_early_stopping"] = (LGBMRegressor, {**BOOST, "n_estimators": 200,
                                                  "learning_rate": 0.1},
                                  fair_data(), lambda y: y, False, {"early_stopping": True})
    out["lgbm_pipeline"] = (LGBMRegressor, BOOST, fair_data(), lambda y: y, True,
                            {"pipeline": True})
    out["lgbm_binary"] = (LGBMClassifier, BOOST, anes_data("vote"), lambda y: y, True, {})
    out["lgbm_binary_sigmoid"] = (LGBMClassifier, {**BOOST, "sigmoid": 0.5},
                                  anes_data("vote_int"), lambda y: y, False, {})
    out["lgbm_binary_cross_entropy"] = (LGBMClassifier, {**BOOST, "objective": "cross_entropy"},
                                        anes_data("vote_int"), lambda y: y, False,
                                        {"no_native": True})
    out["lgbm_multiclass"] = (LGBMClassifier, {**BOOST, "n_estimators": 10}, anes_data("PID"),
                              lambda y: y, True, {})
    out["lgbm_multiclassova"] = (LGBMClassifier, {**BOOST, "n_estimators": 10,
                                                  "objective": "multiclassova"},
                                 anes_data("PID"), lambda y: y, False, {})
    return out


def missing_types(booster) -> list[str]:
    names = {0: "None", 1: "Zero", 2: "NaN"}
    found = set()
    for tree in booster.dump_model()["tree_info"]:
        stack = [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_index" in node:
                if node["decision_type"] == "==":
                    found.add("categorical")
                else:
                    found.add(node["missing_type"])
                stack += [node["left_child"], node["right_child"]]
    return sorted(found, key=str)


def answers(model, x_test):
    if isinstance(model, Pipeline) or not hasattr(model, "predict_proba"):
        return np.asarray(model.predict(x_test), dtype=np.float64).reshape(-1, 1), None, None
    return None, model.predict(x_test), np.asarray(model.predict_proba(x_test), dtype=np.float64)


def same(a, b) -> bool:
    return all((u is None and v is None) or np.array_equal(u, v) for u, v in zip(a, b))


def to_json(value) -> str:
    def default(v):
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, (np.floating,)):
            return float(v)
        if isinstance(v, np.bool_):
            return bool(v)
        raise TypeError(type(v))
    return json.dumps(value, default=default, allow_nan=False) + "\n"


def main() -> None:
    warnings.filterwarnings("ignore", category=UserWarning)
    out = ROOT / "tools/tests/data/fixtures-lightgbm" / lightgbm.__version__
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    manifest = {"lightgbm_version": lightgbm.__version__, "sklearn_version": sklearn.__version__,
                "numpy_version": np.__version__, "models": {}}
    for name, (cls, params, (x, y, categorical, test_only_nan), target, frame, extra) in specs().items():
        x_train, y_train, x_test = prepare(x, y, categorical, test_only_nan)
        y_train = target(y_train)
        indices = [x.columns.get_loc(c) for c in categorical]
        fit = {"categorical_feature": indices}
        if extra.get("early_stopping"):
            cut = len(x_train) * 4 // 5
            fit.update(eval_set=[(x_train.iloc[cut:].to_numpy(), y_train.iloc[cut:].to_numpy())],
                       callbacks=[lightgbm.early_stopping(3, verbose=False)])
            x_train, y_train = x_train.iloc[:cut], y_train.iloc[:cut]
        x_fit, x_pred = (x_train, x_test) if frame else (x_train.to_numpy(), x_test.to_numpy())
        estimator = cls(**params)
        if extra.get("pipeline"):
            model = Pipeline([("scale", StandardScaler()), ("lgbm", estimator)])
            model.fit(x_fit, y_train.to_numpy(), lgbm__categorical_feature=[])
            booster = model[-1].booster_
        else:
            model = estimator.fit(x_fit, y_train.to_numpy(), **fit)
            booster = model.booster_
        expected_answers = answers(model, x_pred)

        pickles = [f"{name}.pkl", f"{name}.joblib"]
        (out / pickles[0]).write_bytes(pickle.dumps(model, protocol=4))
        joblib.dump(model, out / pickles[1])
        assert same(answers(pickle.loads((out / pickles[0]).read_bytes()), x_pred), expected_answers)
        assert same(answers(joblib.load(out / pickles[1]), x_pred), expected_answers)
        # A pipeline's booster alone reads scaled rows, and a cross_entropy classifier's
        # booster alone is a cross_entropy regressor (as lgbm_cross_entropy): no native form.
        native = None if extra.get("pipeline") or extra.get("no_native") else f"{name}.txt"
        predictions, labels, probabilities = expected_answers
        if native is None:
            pass
        else:
            booster.save_model(str(out / native))
            raw = lightgbm.Booster(model_file=str(out / native)).predict(x_test.to_numpy())
        if native is None:
            pass
        elif predictions is not None:
            assert np.array_equal(raw.reshape(-1, 1), predictions), name
        elif probabilities.shape[1] == 2:
            assert np.array_equal(raw, probabilities[:, 1]), name
        else:
            assert np.array_equal(raw, probabilities), name

        names = booster.feature_name()
        if names == [f"Column_{i}" for i in range(len(names))]:
            names = [f"x{i}" for i in range(len(names))]
        if extra.get("pipeline"):
            names = [str(n) for n in x.columns]
        objective = booster.dump_model()["objective"].split(" ")[0]
        record = {
            "estimator": "Pipeline" if extra.get("pipeline") else cls.__name__,
            "objective": objective,
            "lightgbm_version": lightgbm.__version__,
            "n_features": len(names),
            "feature_names": names,
            "categorical": [] if extra.get("pipeline") else indices,
            "missing_types": missing_types(booster),
            "best_iteration": int(booster.best_iteration),
            "n_trees": int(booster.num_trees()),
            "rows": [[repr(float(v)) for v in row] for row in x_test.to_numpy()],
        }
        if predictions is not None:
            record.update(task="regression", predictions=predictions.tolist())
        else:
            classes = model.classes_.tolist()
            record.update(task="classification", classes=classes,
                          labels=[classes.index(label) for label in labels.tolist()],
                          probabilities=probabilities.tolist())
        expected = f"{name}.expected.json"
        (out / expected).write_text(to_json(record))
        manifest["models"][name] = {"estimator": record["estimator"], "objective": objective,
                                    "expected": expected, "pickles": pickles, "native": native}
        print(f"  {name:<24} {record['estimator']:<15} {objective:<14} "
              f"trees {record['n_trees']:>3} (best {record['best_iteration']:>2}) "
              f"missing {record['missing_types']}")
    (out / "manifest.json").write_text(to_json(manifest))
    print(f"wrote {out} ({sum(f.stat().st_size for f in out.iterdir()) // 1024} KiB)",
          file=sys.stderr)


if __name__ == "__main__":
    main()

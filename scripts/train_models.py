#!/usr/bin/env python3
"""Train the GDP-growth regressors the cluster ships.

Data: statsmodels' `macrodata` (US quarterly macro series, 1959Q1-2009Q3), which is
shipped inside the statsmodels wheel, so no network is needed. Features, in this order:

    gdp_per_capita      realgdp * 1e9 / (pop * 1e6)   (realgdp in billions, pop in millions)
    unemployment_rate   unemp
    gdp_growth_rate_lag previous quarter's gdp_growth_rate
    gdp_growth_rate_ma  mean of the 4 previous quarters' gdp_growth_rate (t-1..t-4, not t)

Target: gdp_growth_rate = ((realgdp_t / realgdp_{t-1}) ** 4 - 1) * 100, the annualised
quarter-on-quarter real GDP growth in percent.

The last 20% of quarters (time order, no shuffling) are held out. Every model is fit on a
pandas DataFrame so `feature_names_in_` is recorded, pickled with `pickle.dump` (default
protocol) to models/gdp_growth_rate/<Name>.pkl, and its own predictions on the hold-out go
into models/gdp_growth_rate/golden.json (floats written by Python's json, i.e. repr, so they
round-trip exactly). All randomness is seeded: a rerun writes identical files.

Usage: python scripts/train_models.py [--out-dir models/gdp_growth_rate]
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, Ridge
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor
from statsmodels.datasets import macrodata

FEATURES = ["gdp_per_capita", "unemployment_rate", "gdp_growth_rate_lag", "gdp_growth_rate_ma"]
TARGET = "gdp_growth_rate"
HOLDOUT_FRACTION = 0.2
SEED = 42
ROOT = Path(__file__).resolve().parent.parent


def load_dataset() -> pd.DataFrame:
    """The feature table, one row per quarter that has all features and the target."""
    raw = macrodata.load_pandas().data
    growth = ((raw["realgdp"] / raw["realgdp"].shift(1)) ** 4 - 1) * 100
    past = growth.shift(1)
    table = pd.DataFrame(
        {
            "year": raw["year"].astype(int),
            "quarter": raw["quarter"].astype(int),
            "gdp_per_capita": raw["realgdp"] * 1e9 / (raw["pop"] * 1e6),
            "unemployment_rate": raw["unemp"],
            "gdp_growth_rate_lag": past,
            "gdp_growth_rate_ma": past.rolling(4).mean(),
            TARGET: growth,
        }
    )
    return table.dropna().reset_index(drop=True)


def make_models() -> dict[str, object]:
    """The shipped models, keyed by the name the API uses (and the file name)."""
    return {
        "LinearRegression": LinearRegression(),
        "RandomForest": RandomForestRegressor(n_estimators=100, random_state=SEED),
        "Ridge": Ridge(alpha=1.0, random_state=SEED),
        "Lasso": Lasso(alpha=0.1, max_iter=100_000, random_state=SEED),
        "ElasticNet": ElasticNet(alpha=0.1, l1_ratio=0.5, max_iter=100_000, random_state=SEED),
        "DecisionTree": DecisionTreeRegressor(max_depth=6, random_state=SEED),
        "ExtraTrees": ExtraTreesRegressor(n_estimators=100, random_state=SEED),
        "GradientBoosting": GradientBoostingRegressor(random_state=SEED),
        "ScaledRidge": Pipeline([("scaler", StandardScaler()), ("ridge", Ridge(alpha=1.0, random_state=SEED))]),
    }


def estimator_name(model: object) -> str:
    if isinstance(model, Pipeline):
        return "Pipeline(" + ", ".join(type(step).__name__ for _, step in model.steps) + ")"
    return type(model).__name__


def as_rows(values: np.ndarray) -> list[list[float]]:
    """sklearn output as [n_rows][n_targets] Python floats."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values.reshape(-1, 1)
    return values.tolist()


def to_json(value: object) -> str:
    """Indented JSON with each innermost list of numbers kept on one line."""
    text = json.dumps(value, indent=1)
    text = re.sub(r"\[[^\[\]{}\"]*\]", lambda m: re.sub(r"\s+", "", m.group(0)).replace(",", ", "), text)
    return text + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "models" / "gdp_growth_rate")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)

    data = load_dataset()
    split = int(round(len(data) * (1 - HOLDOUT_FRACTION)))
    train, test = data.iloc[:split], data.iloc[split:]
    x_train, y_train = train[FEATURES], train[TARGET]
    x_test, y_test = test[FEATURES], test[TARGET]
    first, last = test.iloc[0], test.iloc[-1]
    print(
        f"{len(data)} quarters: train {len(train)}, hold-out {len(test)} "
        f"({int(first.year)}Q{int(first.quarter)}-{int(last.year)}Q{int(last.quarter)})"
    )

    golden: dict[str, object] = {
        "feature_names": FEATURES,
        "target": TARGET,
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "holdout": {"rows": x_test.to_numpy(dtype=np.float64).tolist(), "target": y_test.tolist()},
        "models": {},
    }
    print(f"{'model':<18} {'estimator':<34} {'R2':>8} {'MAE':>8} {'train R2':>9} {'train MAE':>10}")
    for name, model in make_models().items():
        model.fit(x_train, y_train)
        predicted = model.predict(x_test)
        fitted = model.predict(x_train)
        entry = {
            "file": f"{name}.pkl",
            "estimator": estimator_name(model),
            "predictions": as_rows(predicted),
            "r2": float(r2_score(y_test, predicted)),
            "mae": float(mean_absolute_error(y_test, predicted)),
            "train_r2": float(r2_score(y_train, fitted)),
            "train_mae": float(mean_absolute_error(y_train, fitted)),
        }
        golden["models"][name] = entry
        with open(args.out_dir / entry["file"], "wb") as f:
            pickle.dump(model, f)
        print(
            f"{name:<18} {entry['estimator']:<34} {entry['r2']:>8.3f} {entry['mae']:>8.3f} "
            f"{entry['train_r2']:>9.3f} {entry['train_mae']:>10.3f}"
        )

    with open(args.out_dir / "golden.json", "w") as f:
        f.write(to_json(golden))
    print(f"wrote {len(golden['models'])} models and golden.json to {args.out_dir}")


if __name__ == "__main__":
    main()

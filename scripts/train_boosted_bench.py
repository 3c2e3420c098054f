#!/usr/bin/env python3
"""Train the 200-tree gradient-boosted models that scripts/bench-boosted.sh serves (issue 19).

Both are regressors fitted on statsmodels' bundled `fair` data (6,366 women surveyed by
Redbook in 1974; no network): the time spent in extramarital affairs from eight numeric
answers (marriage rating, age, years married, children, religiousness, education, her and
her husband's occupation). Regressors, not classifiers, so that the benchmark measures the
tree ensembles themselves: a classifier adds only a sigmoid and a label to the same trees.
10 % of the cells are blanked (seeded), in training and in the benchmark's rows, so every
model routes missing values as its library does.

- BoostXGB: xgboost.XGBRegressor, 200 trees, max_depth 6 (XGBoost's defaults otherwise).
- BoostLGBM: lightgbm.LGBMRegressor, 200 trees, 31 leaves (LightGBM's defaults otherwise).

Writes into --out-dir: NAME.pkl (pickle, as users hand them over), NAME.json (one complete row,
the single-row body), NAME-1000.json (1000 held-out rows with their missing values, the batch
body) for each NAME, and expected.json (each library's own `predict` on the single row,
and the trees' sizes). All randomness is seeded: a rerun writes identical predictions.

Usage: python scripts/train_boosted_bench.py --out-dir DIR
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd
import sklearn
import xgboost
from statsmodels.datasets import fair

SEED = 42
N_TREES = 200
MISSING_FRACTION = 0.10
BATCH_ROWS = 1000


def load() -> tuple[pd.DataFrame, pd.Series]:
    data = fair.load_pandas().data
    x = data.drop(columns=["affairs"]).astype("float64")
    y = data["affairs"].astype("float64")
    rng = np.random.default_rng(SEED)
    x = x.mask(rng.random(x.shape) < MISSING_FRACTION)
    return x, y


def models() -> dict[str, object]:
    return {
        "BoostXGB": xgboost.XGBRegressor(n_estimators=N_TREES, max_depth=6, random_state=SEED),
        "BoostLGBM": lightgbm.LGBMRegressor(n_estimators=N_TREES, num_leaves=31, random_state=SEED,
                                            verbose=-1),
    }


def leaves(name: str, model) -> list[int]:
    """Leaves per tree, as each library reports its trees."""
    if name == "BoostXGB":
        trees = model.get_booster().trees_to_dataframe()
        return trees[trees["Feature"] == "Leaf"].groupby("Tree").size().tolist()
    return [t["num_leaves"] for t in model.booster_.dump_model()["tree_info"]]


def row_json(row: pd.Series) -> dict:
    return {k: (None if np.isnan(v) else (int(v) if float(v).is_integer() else float(v)))
            for k, v in row.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, required=True)
    out = parser.parse_args().out_dir
    out.mkdir(parents=True, exist_ok=True)

    x, y = load()
    # The last 1000 rows are held out: the batch body. The single row is the first of them
    # without a missing value: the Python baseline builds its DataFrame from the JSON rows, and
    # a column of one row that is null comes out as `object`, which XGBoost refuses.
    x_train, y_train, x_held = x.iloc[:-BATCH_ROWS], y.iloc[:-BATCH_ROWS], x.iloc[-BATCH_ROWS:]
    batch = [row_json(r) for _, r in x_held.iterrows()]
    single = next(row for row in batch if None not in row.values())
    expected = {"versions": {"xgboost": xgboost.__version__, "lightgbm": lightgbm.__version__,
                             "scikit-learn": sklearn.__version__},
                "train_rows": len(x_train), "features": list(x.columns), "row": single,
                "missing_in_batch": int(x_held.isna().sum().sum()), "models": {}}
    for name, model in models().items():
        model.fit(x_train, y_train)
        with open(out / f"{name}.pkl", "wb") as f:
            pickle.dump(model, f)
        json.dump(single, open(out / f"{name}.json", "w"))
        json.dump(batch, open(out / f"{name}-1000.json", "w"))
        n_leaves = leaves(name, model)
        expected["models"][name] = {
            "estimator": type(model).__name__,
            "trees": len(n_leaves), "leaves_total": int(sum(n_leaves)), "leaves_max": int(max(n_leaves)),
            "prediction": float(model.predict(pd.DataFrame([single], columns=x.columns, dtype="float64"))[0]),
        }
    json.dump(expected, open(out / "expected.json", "w"), indent=1)
    print(json.dumps(expected["models"], indent=1))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Train the classifier and the mixed-type pipeline the cluster ships beside the GDP regressors.

Both are trained on data bundled in the statsmodels wheel (no network), with the pinned
environment of scripts/requirements-train.txt, and pickled next to the GDP models, so
`convert-models models/` converts them and every node serves them:

- SlowGrowth: RandomForestClassifier (100 trees) on the GDP models' four features
  (statsmodels' `macrodata`, built as scripts/train_models.py builds them); the label is
  `true` when that quarter's annualised real GDP growth is below 1 % (boolean classes).
- VoteChoice: Pipeline(ColumnTransformer(numeric: SimpleImputer(median) + StandardScaler;
  strings: SimpleImputer(most_frequent) + OneHotEncoder(handle_unknown='ignore')),
  LogisticRegression) on statsmodels' `anes96` (1996 US election survey): the vote
  ("Clinton" or "Dole") from population, TV news days, self-placed left-right scale, age,
  income, party identification and education, the last two as strings. 10 % of the training
  cells are blanked (seeded), so the imputers learn something, and the served model accepts
  `null` in every column.

The README's curl bodies are written here (BODIES) and, with sklearn's own `predict` and
`predict_proba` on them, into models/gdp_growth_rate/classifiers-golden.json; the gateway's
test (gateway/tests/classifier.rs) sends those bodies through a real cluster and compares.
All randomness is seeded: a rerun writes identical files.

Usage: python scripts/train_byom_models.py [--out-dir models/gdp_growth_rate]
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from statsmodels.datasets import anes96

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_models import FEATURES, load_dataset  # noqa: E402  (the GDP features, one definition)

ROOT = Path(__file__).resolve().parent.parent
SEED = 42
SLOW_GROWTH_BELOW = 1.0
PARTY = ["strong Democrat", "weak Democrat", "independent Democrat", "independent",
         "independent Republican", "weak Republican", "strong Republican"]
EDUCATION = ["grade school", "high school dropout", "high school", "some college",
             "associate degree", "college degree", "postgraduate"]
VOTE = {0: "Clinton", 1: "Dole"}
VOTE_NUMBERS = ["popul", "TVnews", "selfLR", "age", "income"]
VOTE_STRINGS = ["party", "education"]

# The README's curl bodies: JSON exactly as sent (the README shows the same text).
BODIES = {
    "SlowGrowth": [
        {"gdp_per_capita": 50000, "unemployment_rate": 5.2, "gdp_growth_rate_lag": 2.1,
         "gdp_growth_rate_ma": 2.3},
        {"gdp_per_capita": 44000, "unemployment_rate": 9.0, "gdp_growth_rate_lag": -3.5,
         "gdp_growth_rate_ma": -1.5},
    ],
    "VoteChoice": [
        {"popul": 190, "TVnews": 7, "selfLR": 6, "age": 52, "income": 19,
         "party": "weak Republican", "education": "college degree"},
        {"popul": 0, "TVnews": 2, "selfLR": None, "age": 29, "income": None,
         "party": "independent", "education": None},
    ],
}


def slow_growth() -> tuple[Pipeline | RandomForestClassifier, pd.DataFrame]:
    table = load_dataset()
    x = table[FEATURES]
    y = table["gdp_growth_rate"] < SLOW_GROWTH_BELOW
    model = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=SEED)
    model.fit(x, y)
    return model, x


def vote_data() -> tuple[pd.DataFrame, pd.Series]:
    data = anes96.load_pandas().data
    x = data[VOTE_NUMBERS].astype(np.float64)
    x["party"] = data["PID"].astype(int).map(dict(enumerate(PARTY))).astype(object)
    x["education"] = data["educ"].astype(int).map(dict(enumerate(EDUCATION, start=1))).astype(object)
    rng = np.random.default_rng(SEED)
    for column in x.columns:
        blank = rng.random(len(x)) < 0.10
        x.loc[blank, column] = np.nan
    return x, data["vote"].astype(int).map(VOTE)


def vote_choice() -> tuple[Pipeline, pd.DataFrame]:
    x, y = vote_data()
    model = Pipeline([
        ("columns", ColumnTransformer([
            ("numbers", Pipeline([("impute", SimpleImputer(strategy="median")),
                                  ("scale", StandardScaler())]), VOTE_NUMBERS),
            ("strings", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                                  ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False))]),
             VOTE_STRINGS),
        ])),
        ("logistic", LogisticRegression(max_iter=5000)),
    ])
    model.fit(x, y)
    return model, x


def frame(rows: list[dict], like: pd.DataFrame) -> pd.DataFrame:
    """The JSON rows as sklearn sees them: null is NaN, columns in training order."""
    table = pd.DataFrame([{k: (np.nan if v is None else v) for k, v in r.items()} for r in rows])
    table = table[list(like.columns)]
    for column in like.columns:
        table[column] = table[column].astype(like[column].dtype)
    return table


def plain(value):
    return value.item() if hasattr(value, "item") else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "models" / "gdp_growth_rate")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    golden = {"sklearn_version": sklearn.__version__, "numpy_version": np.__version__, "models": {}}
    for name, train in [("SlowGrowth", slow_growth), ("VoteChoice", vote_choice)]:
        model, x = train()
        with open(args.out_dir / f"{name}.pkl", "wb") as f:
            pickle.dump(model, f)
        body = BODIES[name]
        rows = frame(body, x)
        golden["models"][name] = {
            "estimator": type(model).__name__,
            "body": json.dumps(body, separators=(", ", ": ")),
            "classes": [plain(c) for c in model.classes_],
            "labels": [plain(v) for v in model.predict(rows)],
            "probabilities": [[float(p) for p in row] for row in model.predict_proba(rows)],
        }
        print(f"{name}: {type(model).__name__}, classes {golden['models'][name]['classes']}, "
              f"labels {golden['models'][name]['labels']}")
    path = args.out_dir / "classifiers-golden.json"
    path.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

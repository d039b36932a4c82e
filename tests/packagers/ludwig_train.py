"""Train and save a tiny Ludwig model, and record its own predictions (run with ludwig's python).

Usage: python ludwig_train.py OUT_DIR

Writes OUT_DIR/model (the saved model), OUT_DIR/rows.json (the rows predicted on) and
OUT_DIR/predictions.npz (``LudwigModel.predict``'s columns on those rows, named as the neuropod
outputs are: ``<feature>_predictions``, ``<feature>_probabilities``).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from ludwig.api import LudwigModel

WORDS = ["red", "green", "blue", "fast", "slow", "big", "small", "happy", "sad", "loud"]
COLORS = ["alpha", "beta", "gamma"]


def synthetic(rows: int, seed: int) -> pd.DataFrame:
    """Rows whose outputs depend on the inputs, so that training learns something."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows).astype(np.float32)
    color = rng.choice(COLORS, size=rows)
    text = [" ".join(rng.choice(WORDS, size=rng.integers(2, 6))) for _ in range(rows)]
    flag = rng.random(rows) < 0.5
    label = np.where(x > 0.5, "high", np.where(color == "alpha", "alpha_low", "low"))
    score = 2.0 * x + flag.astype(np.float32) + np.array([len(t) for t in text]) / 10.0
    positive = (x > 0) ^ flag
    return pd.DataFrame(
        {
            "x": x,
            "color": color,
            "words": text,
            "flag": flag,
            "label": label,
            "score": score,
            "positive": positive,
        }
    )


CONFIG = {
    "model_type": "ecd",
    "input_features": [
        {"name": "x", "type": "number"},
        {"name": "color", "type": "category"},
        {"name": "words", "type": "text", "encoder": {"type": "embed", "embedding_size": 8}},
        {"name": "flag", "type": "binary"},
    ],
    "output_features": [
        {"name": "label", "type": "category"},
        {"name": "score", "type": "number"},
        {"name": "positive", "type": "binary"},
    ],
    "combiner": {"type": "concat", "output_size": 16},
    "trainer": {"epochs": 4, "batch_size": 32, "learning_rate": 0.02},
}


def main(out: Path) -> None:
    model = LudwigModel(CONFIG, logging_level=logging.ERROR)
    model.train(
        dataset=synthetic(400, seed=0),
        output_directory=str(out / "results"),
        skip_save_processed_input=True,
        skip_save_progress=True,
        skip_save_log=True,
        skip_save_training_description=True,
        skip_save_training_statistics=True,
        random_seed=0,
    )
    model.save(str(out / "model"))
    rows = synthetic(7, seed=1)
    predicted, _ = model.predict(
        dataset=rows, skip_save_predictions=True, output_directory=str(out / "predict")
    )
    print(predicted.dtypes, predicted.head(), file=sys.stderr)
    columns = {}
    for feature in ("label", "score", "positive"):
        columns[f"{feature}_predictions"] = np.asarray(predicted[f"{feature}_predictions"].tolist())
        if f"{feature}_probabilities" in predicted:
            columns[f"{feature}_probabilities"] = np.asarray(
                predicted[f"{feature}_probabilities"].tolist(), dtype=np.float32
            )
    np.savez(out / "predictions.npz", **columns)
    inputs = {name: rows[name].tolist() for name in ("x", "color", "words", "flag")}
    (out / "rows.json").write_text(json.dumps(inputs), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

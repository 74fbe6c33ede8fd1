"""Steps per second and wall time of MLM pre-training and contrastive fine-tuning at the default settings.

Trains into a temporary results folder (so the book's own models are untouched) and ends
with `RESULT train_speed <pretraining steps/s>`; the fine-tuning figures print above it.

    .venv/bin/python bench/train_speed.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import yaml

from helpers.config import DEFAULT_CONFIG, load_config
from helpers.finetuning import finetuned_model
from helpers.pretraining import pretrained_model


def main() -> None:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        raw["paths"]["results_dir"] = str(Path(tmp) / "results")
        raw["paths"]["data_dir"] = str((DEFAULT_CONFIG.parent / raw["paths"]["data_dir"]).resolve())
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(raw))
        cfg = load_config(path)

        t = time.perf_counter()
        model = pretrained_model(cfg)
        pre_wall = time.perf_counter() - t
        pre = json.loads((model / "training_log.json").read_text())
        pre_rate = pre["steps"] / pre["seconds"]
        print(f"pre-training: {pre['steps']} steps, {pre_rate:.2f} steps/s, training loop {pre['seconds']:.0f} s, "
              f"wall {pre_wall:.0f} s (incl. data loading and geometry tracking)")

        for loss in cfg.finetuning.losses:
            t = time.perf_counter()
            ft = finetuned_model(cfg, loss)
            wall = time.perf_counter() - t
            log = json.loads((ft / "training_log.json").read_text())
            print(f"fine-tuning ({loss}): {log['steps']} steps, {log['steps'] / log['seconds']:.2f} steps/s, "
                  f"trainer {log['seconds']:.0f} s, wall {wall:.0f} s")
    print(f"RESULT train_speed {pre_rate:.3f}")


if __name__ == "__main__":
    main()

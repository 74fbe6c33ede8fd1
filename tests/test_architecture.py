"""The package's shape: data flows one way through ``helpers/``, and chapters show their code.

* Every import between helpers modules, including imports inside functions, goes from a
  higher layer to a lower one (see :data:`LAYERS`), so there is no import circle.
* Each chapter shows at least 60% of its code lines on the page, and no chapter code
  line is longer than 88 characters.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "helpers"

# Bottom to top: a module may import only modules of lower layers.
LAYERS = [
    {"names", "storage", "intervals", "safe_yaml"},
    {"config", "archives", "model_folders"},
    {"chunk_files"},
    {"corpus"},
    {"encoders"},
    {"embeddings", "geometry", "transforms", "packaged"},
    {"shards"},
    {"training", "losses"},
    {"pretraining", "finetuning"},
    {"models"},
    {"analysis", "charts"},
    {"book", "notebooks"},
    {"cli"},
    {"__main__", "__init__"},
]
LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def helper_imports(path: Path) -> set[str]:
    """Names of the helpers modules that ``path`` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("helpers."):
                found.add(node.module.split(".")[1])
            elif node.module == "helpers":
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("helpers."):
                    found.add(alias.name.split(".")[1])
    return found


def import_graph() -> dict[str, set[str]]:
    return {p.stem: helper_imports(p) for p in sorted(PACKAGE.glob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph``, or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_a_function_level_circle(tmp_path):
    (tmp_path / "a.py").write_text("def f():\n    from .b import g\n")
    (tmp_path / "b.py").write_text("from .a import f\n")
    graph = {p.stem: helper_imports(p) for p in tmp_path.glob("*.py")}
    assert find_cycle(graph) in (["a", "b", "a"], ["b", "a", "b"])


def test_helpers_has_no_import_circle():
    assert find_cycle(import_graph()) is None


def test_every_module_has_a_layer():
    assert set(import_graph()) <= set(LAYER_OF), "add new modules to LAYERS"


def test_imports_flow_downwards():
    upward = [
        f"{module} (layer {LAYER_OF[module]}) imports {target} (layer {LAYER_OF[target]})"
        for module, targets in import_graph().items()
        for target in targets
        if target in LAYER_OF and LAYER_OF[target] >= LAYER_OF[module]
    ]
    assert not upward, "\n".join(upward)


# --- chapters show their method --------------------------------------------------------------

CELL = re.compile(r"```\{code-cell\}[^\n]*\n(.*?)```", re.S)
HIDDEN = ("remove-cell", "remove-input", "hide-input")


def code_lines(chapter: Path) -> tuple[int, int]:
    """(visible, hidden) code lines of a chapter; options and blank lines do not count."""
    visible = hidden = 0
    for body in CELL.findall(chapter.read_text()):
        lines = body.splitlines()
        options = [line for line in lines if line.startswith(":")]
        code = [line for line in lines if line.strip() and not line.startswith(":")]
        if any(tag in line for line in options for tag in HIDDEN):
            hidden += len(code)
        else:
            visible += len(code)
    return visible, hidden


CHAPTERS = sorted((ROOT / "chapters").glob("*.md"))


def test_code_lines_counts_hidden_cells(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "```{code-cell} ipython3\nx = 1\n```\n\n"
        "```{code-cell} ipython3\n:tags: [remove-cell]\ny = 2\nz = 3\n```\n"
    )
    assert code_lines(page) == (1, 2)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_shows_most_of_its_code(chapter):
    visible, hidden = code_lines(chapter)
    assert visible / (visible + hidden) >= 0.6, f"{visible} visible, {hidden} hidden"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_code_lines_fit_the_page(chapter):
    long = [
        line
        for body in CELL.findall(chapter.read_text())
        for line in body.splitlines()
        if len(line) > 88
    ]
    assert not long, long


# --- chapters of one sitting --------------------------------------------------------------------

MAX_SECTIONS = 10
MAX_PROSE_WORDS = 4200  # "about 4,000"
FENCE = re.compile(r"^(`{3,})[^\n]*\n.*?^\1\s*$", re.S | re.M)
SOLUTION = re.compile(r"^(`{3,})\{solution\}[^\n]*\n(.*?)^\1\s*$", re.S | re.M)


def prose_words(text: str) -> int:
    """Words of a chapter's Markdown: every fenced block (code, directives) removed."""
    return len(FENCE.sub("", text).split())


def test_prose_words_skip_code_and_directives():
    text = "Two words\n\n```{code-cell} ipython3\nx = 1 + 2\n```\n\n````{only} tag\nin\n````\n"
    assert prose_words(text) == 2


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_fits_one_sitting(chapter):
    text = chapter.read_text()
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert len(sections) <= MAX_SECTIONS, sections
    assert prose_words(text) <= MAX_PROSE_WORDS


def test_solution_finds_code_that_would_not_run():
    text = "````{solution} ex-1\n:class: dropdown\n\n```python\nx = 1\n```\n````\n"
    assert ["```python" in body for _, body in SOLUTION.findall(text)] == [True]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_exercise_solutions_with_code_run_at_build(chapter):
    # Code in a plain {solution} block is never executed; a gated solution
    # ({solution-start} ... {solution-end}) holds code cells that run with the chapter.
    unrun = [body[:60] for _, body in SOLUTION.findall(chapter.read_text()) if "```python" in body]
    assert not unrun, unrun

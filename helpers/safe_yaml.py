"""Read YAML safely: a safe loader that also refuses what no configuration needs.

On top of ``yaml.SafeLoader`` (no Python objects), :func:`parse_yaml` refuses duplicated
keys, recursive aliases, nesting deeper than :data:`MAX_DEPTH`, documents that expand
(through aliases) to more than :data:`MAX_NODES` nodes, a "billion laughs", and values
YAML cannot build (an int of 5000 digits, a 30th of February). Every problem is one
:class:`BadYAMLError` naming the line and column and how to fix it; the caller adds the
file's name. :func:`excerpt` quotes values briefly and safely, for messages.

Example
-------
>>> parse_yaml("paths:\\n  data_dir: corpus\\n")
({'paths': {'data_dir': 'corpus'}}, {('paths',): 1, ('paths', 'data_dir'): 2})
>>> parse_yaml("a: 1\\na: 2\\n")
Traceback (most recent call last):
  ...
helpers.safe_yaml.BadYAMLError: refused YAML at line 2, column 1: key 'a' appears twice (lines 1 and 2). Keep one of them.
"""

from __future__ import annotations

import reprlib
from typing import Any

import yaml

MAX_DEPTH = 20  # a configuration is 3-4 levels deep
MAX_NODES = 100_000  # after expanding aliases; the repository's config.yaml has about 100


class BadYAMLError(ValueError):
    """YAML that is malformed or refused, with where (line, column) and how to fix it."""


# --- short quotes of values ------------------------------------------------------------------------------


class _ShortRepr(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxdict, self.maxset = 3, 4, 4, 4
        self.maxstring, self.maxother, self.fillvalue = 60, 60, "…"

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 64:  # repr() of a huge int is slow, or refused past 4300 digits
            return f"<a {x.bit_length()}-bit int>"
        return repr(x)


def excerpt(value: Any, limit: int = 80) -> str:
    """A one-line ``repr`` of ``value`` of at most ``limit`` characters, cut with "…".

    Safe on huge or deeply shared values: it never builds the full ``repr``.

    >>> excerpt("x" * 1000)[:8], len(excerpt("x" * 1000)) <= 80
    ("'xxxxxxx", True)
    """
    try:
        text = _ShortRepr().repr(value)
    except Exception:  # noqa: BLE001 - an odd object's __repr__ must not hide the real problem
        text = f"<{type(value).__name__}>"
    return cut(text, limit)


def cut(text: str, limit: int = 80, *, keep_end: bool = False) -> str:
    """Plain ``text`` on one line, at most ``limit`` characters; ``keep_end`` cuts the middle (for paths)."""
    text = " ".join(text[: limit * 8].split()) if not keep_end else " ".join(text.split())
    if len(text) <= limit:
        return text
    if keep_end:
        half = limit // 2
        return text[: half - 1] + "…" + text[-half:]
    return text[: limit - 1] + "…"


def key_name(key: Any) -> str:
    """A mapping key as shown in messages: strings as they are, anything else as a short repr."""
    return cut(key, 60) if isinstance(key, str) else excerpt(key, 60)


# --- the loader --------------------------------------------------------------------------------------------


class _Refused(yaml.MarkedYAMLError):
    """YAML that is well-formed but refused (duplicate key, too deep, too big), with its own fix."""

    def __init__(self, problem: str, mark: Any, fix: str) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.fix = fix


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys and nesting deeper than :data:`MAX_DEPTH`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(
                    f"nested more than {MAX_DEPTH} levels deep",
                    self.peek_event().start_mark,
                    "A configuration is a few levels deep; check the brackets and indentation.",
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, Any] = {}
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if key.value in seen:
                        raise _Refused(
                            f"key {key_name(key.value)!r} appears twice (lines {seen[key.value].line + 1} "
                            f"and {key.start_mark.line + 1})",
                            key.start_mark,
                            "Keep one of them.",
                        )
                    seen[key.value] = key.start_mark
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:  # e.g. an int of 5000 digits, a 30th of February
            raise _Refused(
                f"cannot read value {excerpt(getattr(node, 'value', ''))}: {cut(str(exc), 120)}",
                node.start_mark,
                "Write the value differently (quote it to keep it as text).",
            ) from None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse recursive aliases, and documents whose aliases expand to too many nodes or too deep.

    Counts without expanding: a node reached through several aliases is counted once per
    reference, but computed once.
    """
    done: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded node count, expanded height)
    on_path: set[int] = set()
    fix = "Write the values out, or use fewer aliases (*name)."

    def visit(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in on_path:
            raise _Refused("recursive alias (a value that contains itself)", node.start_mark, fix)
        if key not in done:
            if depth > MAX_DEPTH:
                raise _Refused(
                    f"nested more than {MAX_DEPTH} levels deep once aliases are expanded",
                    node.start_mark,
                    fix,
                )
            on_path.add(key)
            sizes = [visit(child, depth + 1) for child in _children(node)]
            on_path.discard(key)
            done[key] = (1 + sum(n for n, _ in sizes), 1 + max((h for _, h in sizes), default=0))
            if done[key][0] > MAX_NODES:  # the first (smallest) value over the limit: point at it
                aliased = done[key][0] > len(done)
                raise _Refused(
                    f"this value holds {done[key][0]:,} nodes"
                    f"{' once its aliases (*name) are expanded, as in a billion laughs' if aliased else ''}; "
                    f"a configuration may hold at most {MAX_NODES:,}",
                    node.start_mark,
                    fix if aliased else "Shorten it: a configuration needs only a few values.",
                )
        count, height = done[key]
        if depth + height - 1 > MAX_DEPTH:
            raise _Refused(
                f"nested more than {MAX_DEPTH} levels deep once aliases are expanded",
                node.start_mark,
                fix,
            )
        return count, height

    visit(root, 1)


def _key_lines(root: yaml.Node | None) -> dict[tuple, int]:
    """Line numbers of the sections and keys (two levels), for messages."""
    lines: dict[tuple, int] = {}
    if not isinstance(root, yaml.MappingNode):
        return lines
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode):
            lines[(key.value,)] = key.start_mark.line + 1
            if isinstance(value, yaml.MappingNode):
                for sub, _ in value.value:
                    if isinstance(sub, yaml.ScalarNode):
                        lines[(key.value, sub.value)] = sub.start_mark.line + 1
    return lines


def _describe(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    if isinstance(exc, _Refused):
        return f"refused YAML{where}: {problem}. {exc.fix}"
    return (
        f"malformed YAML{where}: {cut(str(problem), 200)}. "
        "Fix the indentation or quoting there (values containing ':' or '#' need quotes)."
    )


def parse_yaml(text: str) -> tuple[Any, dict[tuple, int]]:
    """The document in ``text`` (``None`` when empty) and the lines of its keys (two levels).

    Raises :class:`BadYAMLError` for malformed or refused YAML.
    """
    try:
        loader = _Loader(text)  # the reader already refuses control characters here
        try:
            node = loader.get_single_node()
            if node is None:
                return None, {}
            _check_expansion(node)
            return loader.construct_document(node), _key_lines(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise BadYAMLError(_describe(exc)) from None

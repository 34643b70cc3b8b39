"""Managed hosts run the plugins with their distribution's Python, 3.8 and later: every plugin
file must parse with 3.8's grammar (``feature_version``: best effort, this Python's parser) and
use none of the newer library features and runtime typing that 3.8 lacks, so a regression
fails here without an old interpreter. Annotations are never evaluated (``from __future__
import annotations``): ``X | None`` and ``list[int]`` stay allowed there, not elsewhere."""

import ast
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PLUGINS = Path(__file__).resolve().parents[2] / "collections/ansible_collections/weave/fastdp/plugins"
FILES = sorted(PLUGINS.rglob("*.py"))
# keyword arguments newer than 3.8, by the name of the function called
NEW_KEYWORDS = {"dataclass": {"slots": "3.10", "kw_only": "3.10", "match_args": "3.10"},
                "zip": {"strict": "3.10"}}
NEW_METHODS = {"removeprefix": "3.9", "removesuffix": "3.9", "bit_count": "3.10",
               "is_relative_to": "3.9", "randbytes": "3.9", "waitstatus_to_exitcode": "3.9"}
NEW_NAMES = {("typing", "Self"): "3.11", ("typing", "TypeAlias"): "3.10",
             ("functools", "cache"): "3.9", ("itertools", "pairwise"): "3.10",
             ("itertools", "batched"): "3.12", ("datetime", "UTC"): "3.11",
             ("enum", "StrEnum"): "3.11", ("contextlib", "chdir"): "3.11"}
NEW_MODULES = {"tomllib": "3.11", "zoneinfo": "3.9", "graphlib": "3.9"}
# subscripted at run time (outside annotations) only from 3.9 on
GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}


class NewerThan38(ast.NodeVisitor):
    """Collects ``line: what (Python version)`` for each use of a feature newer than 3.8."""

    def __init__(self):
        self.found = []
        self.abc = set()  # names imported from collections.abc: generic only from 3.9 on

    def _note(self, node, what, version):
        self.found.append(f"{node.lineno}: {what} (Python {version})")

    # annotations are strings (PEP 563): what they hold is never run
    def visit_arg(self, node):
        pass

    def visit_AnnAssign(self, node):
        for child in (node.target, node.value):
            if child is not None:
                self.visit(child)

    def visit_FunctionDef(self, node):
        for child in (*node.decorator_list, node.args, *node.body):
            self.visit(child)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_arguments(self, node):
        for default in (*node.defaults, *node.kw_defaults):
            if default is not None:
                self.visit(default)

    def visit_BinOp(self, node):
        if isinstance(node.op, ast.BitOr) and any(
                isinstance(side, ast.Constant) and side.value is None
                for side in (node.left, node.right)):
            self._note(node, "X | None outside an annotation", "3.10")
        self.generic_visit(node)

    def visit_Subscript(self, node):
        name = getattr(node.value, "id", None)
        if name in GENERICS or name in self.abc:
            self._note(node, f"{name}[...] outside an annotation", "3.9")
        self.generic_visit(node)

    def visit_Call(self, node):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        for keyword in node.keywords:
            version = NEW_KEYWORDS.get(name, {}).get(keyword.arg)
            if version:
                self._note(node, f"{name}({keyword.arg}=...)", version)
        if name in ("isinstance", "issubclass") and len(node.args) == 2 and isinstance(
                node.args[1], ast.BinOp) and isinstance(node.args[1].op, ast.BitOr):
            self._note(node, f"{name}(x, A | B)", "3.10")
        self.generic_visit(node)

    def visit_Attribute(self, node):
        if node.attr in NEW_METHODS:
            self._note(node, f".{node.attr}", NEW_METHODS[node.attr])
        if isinstance(node.value, ast.Name) and (node.value.id, node.attr) in NEW_NAMES:
            self._note(node, f"{node.value.id}.{node.attr}", NEW_NAMES[node.value.id, node.attr])
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        if node.module == "collections.abc":
            self.abc.update(alias.asname or alias.name for alias in node.names)
        for alias in node.names:
            if (node.module, alias.name) in NEW_NAMES:
                self._note(node, f"from {node.module} import {alias.name}",
                           NEW_NAMES[node.module, alias.name])
        if node.module and node.module.split(".")[0] in NEW_MODULES:
            self._note(node, f"module {node.module}", NEW_MODULES[node.module.split(".")[0]])

    def visit_Import(self, node):
        for alias in node.names:
            if alias.name.split(".")[0] in NEW_MODULES:
                self._note(node, f"module {alias.name}", NEW_MODULES[alias.name.split(".")[0]])


def newer_than_38(source: str) -> list[str]:
    visitor = NewerThan38()
    visitor.visit(ast.parse(source, feature_version=(3, 8)))
    return visitor.found


def test_there_are_plugins_to_check():
    assert len(FILES) >= 25


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PLUGINS)))
def test_a_plugin_runs_on_python_38(path):
    assert newer_than_38(path.read_text()) == []


@pytest.mark.parametrize(("source", "what"), [
    ("@dataclass(frozen=True, slots=True)\nclass A:\n    x: int\n", "dataclass(slots=...)"),
    ("@dataclasses.dataclass(kw_only=True)\nclass A:\n    x: int\n", "dataclass(kw_only=...)"),
    ("list(zip(a, b, strict=True))", "zip(strict=...)"),
    ("name.removesuffix('_sas')", ".removesuffix"),
    ("from typing import Self", "from typing import Self"),
    ("T = typing.Self", "typing.Self"),
    ("@functools.cache\ndef f(): pass", "functools.cache"),
    ("import tomllib", "module tomllib"),
    ("Peers = list[str] | None", "X | None outside an annotation"),
    ("Peers = dict[str, int]", "dict[...] outside an annotation"),
    ("from collections.abc import Callable\nStep = Callable[[], None]", "Callable[...]"),
    ("ok = isinstance(x, int | str)", "isinstance(x, A | B)"),
    ("@dataclass\nclass A:\n    x: list = field(default_factory=list[int])", "list[...]"),
])
def test_the_check_finds_what_python_38_lacks(source, what):
    found = newer_than_38(source)
    assert any(what in f for f in found), found


ONLY_311 = pytest.mark.skipif(sys.version_info[:2] != (3, 11),
                              reason="later parsers accept it whatever the feature_version")


@pytest.mark.parametrize("source", [
    "match x:\n    case 1: pass",
    "try:\n    pass\nexcept* ValueError:\n    pass",
    "type Peers = list[str]",
    pytest.param("with (open(a) as f, open(b) as g): pass", marks=ONLY_311),
    pytest.param("f'{x['a']}'", marks=ONLY_311),
])
def test_newer_grammar_does_not_parse(source):
    with pytest.raises(SyntaxError):
        newer_than_38(source)


@pytest.mark.parametrize("source", [
    "from __future__ import annotations\ndef f(x: int | None = None) -> list[str]: pass",
    "@dataclass(frozen=True, **SLOTS)\nclass A:\n    x: str | None = None\n",
    "from collections.abc import Iterator\ndef f() -> Iterator[int]:\n    y: dict[str, int] = {}",
    "flags = NLM_F_ACK | NLM_F_CREATE",
    "b''.hex(':')",
])
def test_what_python_38_has_passes(source):
    assert newer_than_38(source) == []

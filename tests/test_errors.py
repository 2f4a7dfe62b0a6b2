"""The error tree: every code is unique, snake_case and documented once.

Codes are a stable interface (clients and auditors match on them), so the
source tree is scanned too: every string literal passed as the code of a
``ledger.errors`` exception anywhere in ``ledger/``, ``contracts/`` or
``node/`` must be a documented code. The scan parses the source with
``ast`` rather than a regex, so line breaks, comments and keyword
arguments cannot hide a call.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import errors
from ledger.errors import ERROR_CODES, LedgerError

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("ledger", "contracts", "node")
SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
ERROR_CLASSES = {
    name: value
    for name, value in vars(errors).items()
    if inspect.isclass(value) and issubclass(value, LedgerError)
}


# --- The table itself ---------------------------------------------------------------------------


def error_codes_literal() -> ast.Dict:
    tree = ast.parse((ROOT / "ledger" / "errors.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "ERROR_CODES" for t in targets):
                assert isinstance(node.value, ast.Dict), "ERROR_CODES should be one dict literal"
                return node.value
    raise AssertionError("ERROR_CODES not found in ledger/errors.py")


def test_error_codes_are_unique_in_the_source() -> None:
    """A repeated key in a dict literal silently overwrites the first; catch it in the source."""
    literal = error_codes_literal()
    keys = [key.value for key in literal.keys if isinstance(key, ast.Constant)]
    assert len(keys) == len(literal.keys), "every key should be a string literal"
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    assert duplicates == []
    assert keys == list(ERROR_CODES)


@pytest.mark.parametrize("code", list(ERROR_CODES))
def test_error_code_is_snake_case(code: str) -> None:
    assert SNAKE_CASE.fullmatch(code), code


@pytest.mark.parametrize("code", list(ERROR_CODES))
def test_error_code_has_a_one_sentence_description(code: str) -> None:
    description = ERROR_CODES[code]
    assert isinstance(description, str)
    assert description == description.strip() and "\n" not in description
    assert description[0].isupper(), description
    assert description.endswith("."), description
    assert re.search(r"[.!?]\s", description) is None, f"more than one sentence: {description!r}"
    assert 3 <= len(description.split()) <= 30, description


def test_descriptions_are_distinct() -> None:
    assert len(set(ERROR_CODES.values())) == len(ERROR_CODES)


# --- The classes --------------------------------------------------------------------------------


def test_error_classes_are_the_documented_tree() -> None:
    # New classes are welcome; each must appear in the tree drawn in the module docstring.
    assert set(ERROR_CLASSES) >= {
        "LedgerError",
        "EncodingError",
        "SignatureError",
        "InvalidTransaction",
        "InvalidBlock",
        "GenesisError",
        "StoreError",
        "StoreCorruption",
        "VerificationFailure",
    }
    assert errors.__doc__ is not None
    for name, cls in ERROR_CLASSES.items():
        assert name in errors.__doc__, f"{name} missing from the tree in the module docstring"
        assert cls.__doc__ and cls.__doc__.strip().endswith("."), name
        assert name in errors.__all__


@pytest.mark.parametrize("name", sorted(ERROR_CLASSES))
def test_unknown_code_is_refused(name: str) -> None:
    cls = ERROR_CLASSES[name]
    for code in ("no_such_code", "", "Bad Code", "invalid_signature "):
        with pytest.raises(AssertionError):
            cls(code)


@pytest.mark.parametrize("name", sorted(ERROR_CLASSES))
def test_known_code_carries_code_detail_and_height(name: str) -> None:
    cls = ERROR_CLASSES[name]
    plain = cls("not_found")
    assert plain.code == "not_found"
    assert plain.detail == ERROR_CODES["not_found"]
    assert plain.height is None
    assert str(plain).startswith("not_found")
    located = cls("wrong_parent", "parent differs", height=12)
    assert (located.code, located.detail, located.height) == ("wrong_parent", "parent differs", 12)
    assert "wrong_parent" in str(located) and "12" in str(located)
    assert isinstance(located, LedgerError) and isinstance(located, Exception)


def test_store_corruption_is_a_store_error() -> None:
    assert issubclass(errors.StoreCorruption, errors.StoreError)


# --- Every code raised in the source is documented ----------------------------------------------


def source_files() -> list[Path]:
    files = sorted(path for folder in SOURCE_DIRS for path in (ROOT / folder).rglob("*.py"))
    assert files, "no source files found"
    return files


def called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def code_argument(call: ast.Call) -> ast.expr | None:
    """The node passed as ``code``: the first positional argument or ``code=``."""
    if call.args:
        return call.args[0]
    for keyword in call.keywords:
        if keyword.arg == "code":
            return keyword.value
    return None


def error_subclasses_in(tree: ast.Module) -> set[str]:
    """Classes in one file that derive from a ledger.errors class."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                base_name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", None)
                if base_name in ERROR_CLASSES:
                    found.add(node.name)
    return found


def code_literals() -> Iterator[tuple[str, int, str, ast.expr]]:
    """(file, line, constructor, code node) for every ledger.errors construction in the source.

    Also covers ``super().__init__(code, ...)`` inside subclasses of those
    classes defined elsewhere, since that is where their code is chosen.
    """
    for path in source_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        relative = str(path.relative_to(ROOT))
        for class_node in [tree, *[n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]]:
            is_error_subclass = isinstance(
                class_node, ast.ClassDef
            ) and class_node.name in error_subclasses_in(tree)
            nodes = ast.walk(class_node) if is_error_subclass else ()
            for node in nodes:
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "__init__"
                    and isinstance(node.func.value, ast.Call)
                    and called_name(node.func.value) == "super"
                ):
                    argument = code_argument(node)
                    if argument is not None:
                        yield relative, node.lineno, f"super() in {class_node.name}", argument
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and called_name(node) in ERROR_CLASSES:
                argument = code_argument(node)
                if argument is not None:
                    yield relative, node.lineno, str(called_name(node)), argument


def test_every_code_literal_in_the_source_is_documented() -> None:
    checked = []
    undocumented = []
    for file, line, constructor, argument in code_literals():
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            checked.append(argument.value)
            if argument.value not in ERROR_CODES:
                undocumented.append(f"{file}:{line} {constructor}({argument.value!r})")
    assert undocumented == []
    # The scan must really have found the raise sites (not silently matched nothing).
    assert len(checked) >= 40, len(checked)
    assert {
        "invalid_signature",
        "insufficient_voting_power",
        "invalid_genesis",
        "store_corrupt",
    } <= set(checked)


def test_no_code_is_built_at_run_time_from_a_format_string() -> None:
    """A code must be a plain literal (or passed through from another error), never an f-string."""
    formatted = [
        f"{file}:{line} {constructor}"
        for file, line, constructor, argument in code_literals()
        if isinstance(argument, ast.JoinedStr)
        or (isinstance(argument, ast.BinOp) and isinstance(argument.op, (ast.Add, ast.Mod)))
    ]
    assert formatted == []


def test_scan_agrees_with_a_plain_regex() -> None:
    """Cross-check the AST scan with the simple textual one: both see the same literal codes."""
    names = "|".join(sorted(ERROR_CLASSES, key=len, reverse=True))
    pattern = re.compile(rf"\b(?:{names})\(\s*(?:code\s*=\s*)?(['\"])([^'\"\n]*)\1")
    by_regex = set()
    for path in source_files():
        by_regex.update(match.group(2) for match in pattern.finditer(path.read_text()))
    by_ast = {
        argument.value
        for _, _, constructor, argument in code_literals()
        if not constructor.startswith("super()") and isinstance(argument, ast.Constant)
    }
    assert by_regex == by_ast
    assert by_regex <= set(ERROR_CODES)

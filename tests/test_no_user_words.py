"""runner/ and storage/ hold facts, not sentences for a Slack user (issue 12 part 2): no string constant there
(docstrings aside) mentions `/train` or carries backticks; bot/texts words the typed errors instead."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _docstrings(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def user_words(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
                and ("/train" in node.value or "`" in node.value)):
            found.append(f"{path.relative_to(root)}:{node.lineno}: {node.value!r}")
    return found


def test_runner_and_storage_speak_no_slack() -> None:
    found = [hit for pkg in ("runner", "storage") for p in sorted((ROOT / pkg).rglob("*.py")) for hit in user_words(p)]
    assert not found, "words for a Slack user below bot/:\n" + "\n".join(found)


def test_the_grep_sees_words_in_a_string_but_not_in_a_docstring(tmp_path: Path) -> None:
    sample = tmp_path / "runner" / "sample.py"  # written here, never into the source tree
    sample.parent.mkdir()
    sample.write_text('"""Say `/train stop`."""\nX = "use `list`"\n')
    assert user_words(sample, tmp_path) == ["runner/sample.py:2: 'use `list`'"]

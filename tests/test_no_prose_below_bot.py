"""runner/ and storage/ hold facts, not words for people (design.md): bot/ words every fact its own way.

The guard walks each module's syntax tree and fails on every string literal that reads as prose (three words or
more in a row, f-strings' pieces included) unless it sits where prose belongs:
- a docstring;
- a log call (`log.warning(...)`, ...), or a line written into a job's log (`print`, `sys.exit`, `.write`);
- an exception's message, given in its class's `__init__` (for logs: front ends word the exception's fields), or a
  builtin exception raised for a bug (`raise ValueError(...)`);
- text matched against another program's output: a regex (an argument of `re.*`, of a parameter named `pattern`,
  or a constant named `*_RE`), an operand of `in`/`==`, an argument of `startswith`/`endswith`;
- text another program runs: SQL, or a constant named `*_CODE` or `*_SCRIPT` (python, a shell script);
- a line that says why it is not for people: `# machine text: <why>` (a shell script, swift's system prompt);
- a script's own `--help` (argparse's `help=`, `description=`, `epilog=`), read by whoever runs it by hand.
"""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Not checked yet, each for its reason; remove a file from here once it holds no words for people.
NOT_YET: set[str] = set()
# Never run in the bot: everything they say goes to the job's log (runner/levers.py reads a lever's line back as a
# typed fact, NotApplied, its words kept as logged).
JOB_LOG_ONLY = {
    "runner/swift_entry.py",  # runs inside swift's own process
    "runner/swift_levers.py",  # runs inside swift's own process (through swift_entry), says why a lever is off
    "runner/token_batches.py",  # runs inside swift's own process (the token_micro_batches lever), says how it split
    "runner/launcher.py",  # its own process between the bot and swift: writes into the job's log only
}

PROSE = re.compile(r"[A-Za-z][a-z']*(?: [a-z][a-z']*){2,}")  # three words in a row: "is held by", "Slurm refused the"
PRAGMA = re.compile(r"#\s*machine text:\s*\S")
SQL = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|PRAGMA|WITH|BEGIN)\b")
LOGGERS = {"log", "logger", "logging", "_log"}
LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
REGEX_FUNCS = {"compile", "search", "match", "fullmatch", "findall", "finditer", "sub", "subn", "split"}
MATCH_METHODS = {"startswith", "endswith", "removeprefix", "removesuffix"}
ARGPARSE_CALLS = {"ArgumentParser", "add_argument", "add_parser", "add_argument_group"}
ARGPARSE_TEXT = {"help", "description", "epilog"}
# a constant of text for another program: a regex, or code and scripts that another interpreter runs
MACHINE_NAMES = re.compile(r"(?i)(^|_)(re|pattern|code|script)$")
BUILTIN_ERRORS = {
    name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException)
}


def prose_literals(source: str, name: str) -> list[str]:
    """`name:line: 'literal'` for each prose literal of `source` that sits nowhere prose belongs."""
    tree = ast.parse(source, name)
    lines = source.splitlines()
    allowed = _allowed(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in allowed:
            continue
        if not PROSE.search(node.value) or SQL.match(node.value):
            continue
        end = node.end_lineno or node.lineno
        if any(PRAGMA.search(line) for line in lines[node.lineno - 1 : end]):
            continue
        found.append(f"{name}:{node.lineno}: {node.value!r}")
    return found


def _allowed(tree: ast.AST) -> set[int]:
    """The ids of every string node in a place where prose belongs."""
    ids: set[int] = set()
    patterns = _pattern_functions(tree)
    for node in ast.walk(tree):
        for place in _places(node, patterns):
            ids.update(id(n) for n in ast.walk(place))
    return ids


def _places(node: ast.AST, patterns: set[str]) -> list[ast.AST]:
    """The subtrees of `node` where prose belongs."""
    places: list[ast.AST] = []
    if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        first = node.body[0] if node.body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            places.append(first)
    if isinstance(node, ast.FunctionDef) and node.name == "__init__":
        places += [call for call in ast.walk(node) if isinstance(call, ast.Call) and _callee(call.func) == "__init__"]
    if isinstance(node, ast.Call):
        callee = _callee(node.func)
        if _is_log(node.func) or callee in ("print", "exit", "write") or callee in MATCH_METHODS:
            places.append(node)
        elif callee in ARGPARSE_CALLS:
            places += [k.value for k in node.keywords if k.arg in ARGPARSE_TEXT]
        elif (callee in REGEX_FUNCS and _owner(node.func) == "re") or callee in patterns:
            places += [*node.args[:1], *(k.value for k in node.keywords if k.arg == "pattern")]
    if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and _callee(node.exc.func) in BUILTIN_ERRORS:
        places.append(node.exc)
    if isinstance(node, ast.Compare) and all(
        isinstance(op, ast.In | ast.NotIn | ast.Eq | ast.NotEq) for op in node.ops
    ):
        places.append(node)
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if any(isinstance(t, ast.Name) and MACHINE_NAMES.search(t.id) for t in targets):
            places.append(node)
    return places


def _pattern_functions(tree: ast.AST) -> set[str]:
    """This module's functions that take a regex: their first parameter (after self) is named `pattern`."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            params = [a.arg for a in node.args.args if a.arg not in ("self", "cls")]
            if params[:1] == ["pattern"]:
                names.add(node.name)
    return names


def _callee(func: ast.expr) -> str | None:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _owner(func: ast.expr) -> str | None:
    return func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else None


def _is_log(func: ast.expr) -> bool:
    return isinstance(func, ast.Attribute) and func.attr in LOG_METHODS and _owner(func) in LOGGERS


def _modules() -> list[Path]:
    return [p for pkg in ("runner", "storage") for p in sorted((ROOT / pkg).rglob("*.py"))]


def test_runner_and_storage_hold_no_words_for_people() -> None:
    found = [
        hit
        for p in _modules()
        if (name := str(p.relative_to(ROOT))) not in NOT_YET | JOB_LOG_ONLY
        for hit in prose_literals(p.read_text(), name)
    ]
    assert not found, "words for people below bot/ (make them typed facts, worded in bot/):\n" + "\n".join(found)


def test_the_files_not_yet_converted_still_exist() -> None:
    assert all((ROOT / name).is_file() for name in NOT_YET | JOB_LOG_ONLY)


# ---- the guard itself, on samples (nothing is written into the source tree) ----------------------------------


@pytest.mark.parametrize(
    "sample",
    [
        'REASON = "an earlier job is waiting for the same GPU"\n',
        'def why(n: int) -> str:\n    return f"GPU {n} is held by another job"\n',
        "class Refused(Exception):\n    pass\n\n\n"
        'def launch() -> None:\n    raise Refused("the output folder is not writable")\n',
        'def hint() -> str:\n    """Docstring."""\n    return "lower max_length or the batch size"\n',
        'NOTES = {"liger": "Liger fused kernels on"}\n',
        'def check(x: str) -> str:\n    return x if x == "ok" else "that was not ok"\n',
        'import argparse\nap = argparse.ArgumentParser()\nap.add_argument("--device", default="the first free GPU")\n',
    ],
)
def test_the_guard_fails_on_a_prose_literal(sample: str) -> None:
    assert len(prose_literals(sample, "sample.py")) == 1, sample


@pytest.mark.parametrize(
    "sample",
    [
        '"""A module that says what it does in words."""\n',
        'def f() -> None:\n    """Words about what this does."""\n',
        'import logging\nlog = logging.getLogger(__name__)\nlog.warning("cannot ask Slurm about job %s", 5)\n',
        "class Refused(Exception):\n    def __init__(self, path: str) -> None:\n"
        '        super().__init__(f"the folder {path} is not writable")\n        self.path = path\n',
        'def f(n: int) -> None:\n    if n < 1:\n        raise ValueError("nodes must be at least one")\n',
        'import re\nFOUND = re.search(r"Name or service not known|timed out", "x")\n',
        'NETWORK_RE = r"Temporary failure in name resolution"\n',
        '_RELAY_SCRIPT = "for p in $pids; do kill -INT $p; done"\n',
        'def last(pattern: str) -> str:\n    return pattern\n\n\nLINE = last(r"collective operation timeout")\n',
        "def gone(err: str) -> bool:\n"
        '    return "Invalid job id" in err or err.startswith("Batch job submission failed")\n',
        'SQL = "SELECT id, job_id, kind FROM events WHERE job_id = ? ORDER BY id"\n',
        'PROMPT = "You are a helpful assistant."  # machine text: swift\'s system prompt\n',
        'print("[trainbot] started warm: in the process that imported swift", flush=True)\n',
        'CODE = "cuda_oom"\nFLAG = "--exist_ok true"\n',
        'import argparse\nap = argparse.ArgumentParser(description="keeps the kernels of a model")\n'
        'ap.add_argument("model", help="the recipe\'s model folder (its config.json)")\n',
    ],
)
def test_the_guard_lets_prose_be_where_it_belongs(sample: str) -> None:
    assert prose_literals(sample, "sample.py") == [], sample

"""The `/train` grammar over hostile and random input: a command inside the output root or a helpful rejection."""

from __future__ import annotations

import posixpath
import re
import shlex
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.chat.grammar import Command, CreateJob, Rejection, normalise, parse
from tests.grammar_cases import ACCEPTED, CONFIGS, p

HOSTILE = st.sampled_from(
    [
        "llm",
        "vlm",
        "logs",
        "list",
        "help",
        "status",
        "gpu=",
        "out=",
        "=",
        "==",
        "gpu=0",
        "gpu=cpu",
        "out=output/x",
        "lr=",
        "--dry-run",
        "--hold",
        "full",
        "lines=",
        "k3x9q",
        '"',
        "'",
        "“",
        "”",
        "‘",
        "’",
        "\\",
        "\x00",
        "\n",
        "\r\n",
        "\t",
        "\u00a0",
        "\u3000",
        "\u200b",
        "\ufeff",
        "—",
        "..",
        "/",
        "//",
        "~",
        "$HOME",
        "`",
        "*",
        "<!channel>",
        "&amp;",
        "${x}",
        ";",
        "|",
        "&&",
        "#",
        "é",
        "训练",
        "🚀",
        "\U0010ffff",
        "\ud800",
        "-" * 300,
        "9" * 500,
        "a" * 4001,
        " ",
    ]
)
TEXTS = st.one_of(
    st.text(max_size=300),
    st.lists(HOSTILE | st.text(max_size=20), max_size=25).map(" ".join),
    st.lists(HOSTILE, max_size=25).map("".join),
)


def check_result(result: Command | Rejection, output_root: Path, base_dir: Path) -> None:
    if isinstance(result, Rejection):
        assert result.message.strip()
        assert "\n" not in result.message
        assert result.example is not None
        assert not isinstance(parse(result.example, output_root=output_root, base_dir=base_dir), Rejection)
    elif isinstance(result, CreateJob):
        root = Path(posixpath.normpath(base_dir / output_root))
        assert result.output_dir.is_relative_to(root) and result.output_dir != root
        assert ".." not in result.output_dir.parts
        assert str(result.output_dir) == posixpath.normpath(result.output_dir)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXTS, config=st.sampled_from(CONFIGS))
def test_any_text_parses_or_is_rejected_helpfully(text: str, config: tuple[Path, Path]) -> None:
    output_root, base_dir = config
    check_result(parse(text, output_root=output_root, base_dir=base_dir), output_root, base_dir)


SEGMENTS = st.lists(
    st.sampled_from(["a", "b", ".", "..", "", "output", "runs", "my run", "x.y", "训练"]),
    min_size=1,
    max_size=8,
).map("/".join)


@settings(max_examples=300, deadline=None)
@given(path=SEGMENTS, absolute=st.booleans(), config=st.sampled_from(CONFIGS))
def test_out_is_inside_the_root_or_rejected(path: str, absolute: bool, config: tuple[Path, Path]) -> None:
    output_root, base_dir = config
    value = "/" + path if absolute else path
    result = parse(f"llm gpu=0 out={shlex.quote(value)}", output_root=output_root, base_dir=base_dir)
    check_result(result, output_root, base_dir)
    # POSIX keeps a leading `//` apart; the grammar (rightly) reads it as `/`.
    target = posixpath.normpath(re.sub("/+", "/", posixpath.join(str(base_dir), value.strip())))
    root = posixpath.normpath(posixpath.join(str(base_dir), str(output_root)))
    inside = target.startswith(root.rstrip("/") + "/") and target != root
    assert isinstance(result, CreateJob) == (inside and bool(value.strip()))


@settings(max_examples=200, deadline=None)
@given(text=st.sampled_from([t for t, _ in ACCEPTED if not set(t) & set("'\"“”‘’")]))
def test_smart_quotes_mean_plain_quotes(text: str) -> None:
    words = normalise(text).split()
    curly = " ".join(f"“{w}”" if "=" in w else w for w in words)
    assert p(curly) == p(text)


@given(text=st.text(max_size=200))
def test_normalise_is_idempotent(text: str) -> None:
    assert normalise(normalise(text)) == normalise(text)

"""The signal that ended swift, read from its exit status: Popen's -N, a shell's 128+N, the swift wrapper's 256-N."""

from __future__ import annotations

import pytest

from runner.failures import signal_from_returncode


@pytest.mark.parametrize(
    ("returncode", "expected"),
    [
        (None, None),
        (0, None),
        (1, None),
        (255, None),
        (-9, 9),
        (-2, 2),
        (137, 9),
        (139, 11),
        (130, 2),
        (143, 15),
        (247, 9),
        (254, 2),
        (241, 15),
        (245, 11),
    ],
)
def test_signal_from_returncode(returncode: int | None, expected: int | None) -> None:
    assert signal_from_returncode(returncode) == expected

"""What people type, read before the grammar (bot/chat/grammar.py) and the free-text commands
(bot/chat/free_text.py) split it: keyboards' typography undone, a job id checked."""

from __future__ import annotations

import re

from bot.chat.settings import Reject, show
from storage.jobs import ID_ALPHABET, ID_LENGTH

HELP_WORDS = ("help", "--help", "-h", "?")
JOB_ID = re.compile(f"[{ID_ALPHABET}]{{{ID_LENGTH}}}")  # exactly what storage makes
# Slack and phone keyboards "improve" what people type (and Chinese IMEs type full-width signs): undo that.
_TYPOGRAPHY = str.maketrans(
    {
        "“": '"',
        "”": '"',
        "„": '"',
        "‟": '"',
        "‘": "'",
        "’": "'",
        "‚": "'",
        "‛": "'",
        "＝": "=",
        "，": ",",
        "\u200b": None,
        "\u200c": None,
        "\u200d": None,
        "\u2060": None,
        "\ufeff": None,
    }
)
_SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_DASHES = re.compile(r"(?<!\S)[\u2012-\u2015\u2212]+")  # `—dry-run` was `--dry-run` before autocorrect


def normalise(text: str) -> str:
    """Undo smart quotes, odd spaces and auto-dashes that Slack or keyboards put into typed commands."""
    return _DASHES.sub("--", _SPACES.sub(" ", text.translate(_TYPOGRAPHY)))


def read_job_id(word: str) -> str:
    job_id = word.strip("`<>").lower()
    if not JOB_ID.fullmatch(job_id):
        confusable = " Job ids never contain 0, 1, i, l or o." if set(job_id) & set("01ilo") else ""
        raise Reject(
            f"`{show(word)}` is not a job id: ids are {ID_LENGTH} letters and digits like "
            f"`k3x9q`, shown on the job card and by `/train list`.{confusable}",
            ["list"],
        )
    return job_id

"""Speed profiles: how the fixed recipe's steps are computed, never what it learns.

`exact` runs the seed's flags as they are. `fast` (the default) may change only how each optimizer step is
computed (micro-batch vs accumulation at the same 16 samples a step, gradient checkpointing, kernels, loader
settings), and only on a GPU that can take it; every change comes back as a note shown in the dry run and the
job's thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from runner.gpus import Gpu
from runner.recipes import Recipe
from storage.models import Kind

PROFILES = ("fast", "exact")


def apply_profile(recipe: Recipe, profile: str, gpus: Sequence[Gpu]) -> tuple[Recipe, tuple[str, ...]]:
    """The recipe to run for this profile on these GPUs (NVML-probed; empty where unknown), and what changed."""
    if profile == "exact" or recipe.kind is not Kind.LLM or not gpus:
        return recipe, ()
    return recipe, ()

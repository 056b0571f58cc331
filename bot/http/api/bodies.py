"""The request bodies of the HTTP API, with the seed's field names: a job's creation (strict types) and its note.
The responses are bot/http/api/schemas.py."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from runner.job_request import (
    FLOAT_LIMITS,
    INT_LIMITS,
    MAX_GPU_INDEX,
    MAX_GPUS,
    MAX_JOB_NAME,
    MAX_NOTE,
    MAX_OUT_LEN,
    MAX_SOURCE_LEN,
)

GpuText = Annotated[str, Field(min_length=1, max_length=100, examples=["0", "0,1", "cpu"])]
GpuNumber = Annotated[int, Field(ge=0, le=MAX_GPU_INDEX)]
Source = Annotated[str, Field(min_length=1, max_length=MAX_SOURCE_LEN)]
DatasetItem = Annotated[str, Field(min_length=1, max_length=MAX_SOURCE_LEN, pattern="^[^,]*$")]


def _whole(key: str) -> Any:
    return Field(None, ge=1, le=INT_LIMITS[key], description=f"a whole number from 1 to {INT_LIMITS[key]}")


def _above_zero(key: str) -> Any:
    return Field(None, gt=0, le=FLOAT_LIMITS[key], description=f"a number above 0, at most {FLOAT_LIMITS[key]:g}")


class LLMJobCreate(BaseModel):
    """The seed's `LLMTrainingJobCreateRequest`: only the GPUs and the output folder; the recipe is fixed. Types
    are strict (a boolean is not a number, a number is not a string, a string is not a boolean): each value is
    taken as sent, or refused with its field named."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"gpu_id": "0", "output_dir": "output/llm_test"}]}
    )
    gpu_id: GpuText | GpuNumber = Field(
        description=f'GPU numbers as a string: "0", or "0,1" (at most {MAX_GPUS}, '
        f'each 0-{MAX_GPU_INDEX}, each once), or "cpu"; or one GPU number'
    )
    output_dir: str = Field(
        min_length=1,
        max_length=MAX_OUT_LEN,
        description=(
            "a folder inside the output root (`[paths] output_root`), relative to trainbot's base folder or absolute. "
            "Taken byte for byte: no character is changed; a control character, or a path that leads outside the root "
            "(`..` or a symbolic link, followed on disk) or to the root itself, is refused"
        ),
    )
    name: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_JOB_NAME,
        description=(
            "what people call the job, shown beside its id everywhere: any Unicode, no control character, not only "
            "spaces; taken as sent. Without it, the job's name is its output folder's last part"
        ),
        examples=["lr sweep 3"],
    )
    profile: Literal["fast", "exact"] | None = Field(
        None, description='"fast" (default) or "exact" (the seed\'s command as it is)'
    )
    start: bool = Field(False, description="true: create and start in one call (the seed creates, then starts)")


class VLMJobCreate(LLMJobCreate):
    """A VLM job: the VLM recipe with the overrides it allows. Types are strict, as for an LLM job."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"gpu_id": "0", "output_dir": "output/vl", "num_train_epochs": 2}]},
    )
    model: Annotated[
        Source | None,
        Field(
            description=(
                "a hub id (e.g. Qwen/Qwen2.5-VL-7B-Instruct) or a local folder inside `[paths] model_roots` "
                "(symbolic links followed)"
            )
        ),
    ] = None
    dataset: Annotated[
        Source | list[DatasetItem] | None,
        Field(
            description=(
                'hub ids (e.g. "AI-ModelScope/LaTeX_OCR#500": `#N` uses N samples) or local paths inside '
                "`[paths] data_roots`, as a list or one comma-separated string"
            )
        ),
    ] = None
    num_train_epochs: Annotated[float | None, _above_zero("epochs")] = None
    learning_rate: Annotated[float | None, _above_zero("learning_rate")] = None
    lora_rank: Annotated[int | None, _whole("lora_rank")] = None
    lora_alpha: Annotated[int | None, _whole("lora_alpha")] = None
    max_length: Annotated[int | None, _whole("max_length")] = None
    batch_size: Annotated[int | None, _whole("batch_size")] = None
    max_pixels: Annotated[int | None, _whole("max_pixels")] = None


class NoteBody(BaseModel):
    """A job's note, replacing the one it had (\"\" takes it away)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"note": "lr 1e-4 was too high: loss diverged at step 300"}]},
    )
    note: str = Field(
        max_length=MAX_NOTE,
        description=("free text: any Unicode; line breaks and tabs are the only control characters it may hold"),
    )

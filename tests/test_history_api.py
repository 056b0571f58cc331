"""Names, notes, search and sorts over real HTTP (`trainbot serve` as a process, the `requests` client)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import requests

from runner.config import Config
from storage.jobs import JobStore
from storage.models import Job, JobState, Kind, Progress
from tests.api_env import serving
from tests.slack_env import fake_config

TOKENS = {"TRAINBOT_API_TOKENS": "tok-ann=UANN,tok-bob=UBOB"}
ANN, BOB = {"Authorization": "Bearer tok-ann"}, {"Authorization": "Bearer tok-bob"}
LOSSES = [1.5, None, 0.25, 3.0, 0.25, None, 0.75, 2.0, 0.5, 1.0, 0.125, 4.0]  # ties and jobs without one


def ended_jobs(config: Config) -> list[Job]:
    """Jobs with a final loss (some without), written through the store before `serve` starts."""

    async def fill() -> list[Job]:
        store = await JobStore.open(config.db_path)
        try:
            return [
                await store.create(
                    Job(
                        id="",
                        kind=Kind.LLM,
                        state=JobState.SUCCEEDED,
                        output_dir=str(config.output_root / f"loss-{i}"),
                        gpus=("0",),
                        argv=("swift", "sft"),
                        user_id="UANN",
                        started_at=1e9 + i,
                        finished_at=1e9 + 100 + i * i,
                        progress=Progress(loss=loss),
                    )
                )
                for i, loss in enumerate(LOSSES)
            ]
        finally:
            await store.close()

    return asyncio.run(fill())


def listed(url: str, **params: object) -> list[dict[str, object]]:
    """Every page of a list, following `next_cursor`."""
    jobs: list[dict[str, object]] = []
    cursor = None
    while True:
        reply = requests.get(f"{url}/training/all/jobs", params={**params, "cursor": cursor}, headers=ANN, timeout=10)
        assert reply.status_code == 200, reply.text
        jobs += reply.json()["jobs"]
        if (cursor := reply.json()["next_cursor"]) is None:
            return jobs


def test_sort_by_final_loss_pages_with_its_cursors_and_search_finds_by_name(tmp_path: Path) -> None:
    config = fake_config(tmp_path)
    made = ended_jobs(config)
    with serving(tmp_path, TOKENS) as api:
        named = requests.post(
            f"{api.url}/training/llm/jobs",
            headers=ANN,
            timeout=10,
            json={"gpu_id": "0", "output_dir": "output/n", "name": "LR sweep — 训练 3"},
        ).json()
        assert named["name"] == "LR sweep — 训练 3" and named["output_dir"].endswith("/output/n")

        by_loss = listed(api.url, sort="loss", limit=3)  # the lowest first, a tie by creation, no loss last
        expected = sorted(made, key=lambda j: (j.progress.loss is None, j.progress.loss or 0, j.created_at))
        assert [j["job_id"] for j in by_loss[: len(made)]] == [j.id for j in expected]
        assert [j["final_loss"] for j in by_loss[:5]] == [0.125, 0.25, 0.25, 0.5, 0.75]
        assert all(j["name"] for j in by_loss) and by_loss[0]["name"] == "loss-10"  # unnamed: the folder's name
        highest = listed(api.url, sort="-loss", limit=4)
        assert [j["final_loss"] for j in highest[:3]] == [4.0, 3.0, 2.0] and highest[-1]["final_loss"] is None
        longest = listed(api.url, sort="-duration", limit=5)
        assert [j["job_id"] for j in longest[: len(made)]] == [j.id for j in made[::-1]]
        assert longest[0]["duration_s"] == 100 + 11 * 11 - 11 and longest[0]["gpu_hours"] is not None

        first = requests.get(
            f"{api.url}/training/all/jobs", params={"sort": "loss", "limit": 2}, headers=ANN, timeout=10
        ).json()
        other = requests.get(
            f"{api.url}/training/all/jobs", params={"cursor": first["next_cursor"]}, headers=ANN, timeout=10
        )
        assert other.status_code == 422 and "sorted by `loss`" in other.json()["error"]
        bad = requests.get(f"{api.url}/training/all/jobs", params={"sort": "name"}, headers=ANN, timeout=10)
        assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "sort"

        found = listed(api.url, q="lr SWEEP")
        assert [j["job_id"] for j in found] == [named["job_id"]]
        assert [j["job_id"] for j in listed(api.url, q="LOSS-1", sort="loss")] == [made[10].id, made[11].id, made[1].id]
        llm = requests.get(f"{api.url}/training/llm/jobs", params={"q": "训练"}, headers=ANN, timeout=10).json()
        assert [j["job_id"] for j in llm["jobs"]] == [named["job_id"]]
        detail = requests.get(f"{api.url}/training/jobs/{named['job_id']}", headers=BOB, timeout=10).json()
        assert detail["name"] == "LR sweep — 训练 3" and detail["note"] == ""
        status = requests.get(f"{api.url}/training/jobs/{named['job_id']}/status", headers=BOB, timeout=10).json()
        assert status["name"] == "LR sweep — 训练 3"  # the seed's status too: every job JSON has the name


def test_a_name_is_checked_and_a_note_is_its_owners_to_add(tmp_path: Path) -> None:
    fake_config(tmp_path)
    with serving(tmp_path, TOKENS) as api:
        for name, rule in (
            ("a\nb", "control_character"),
            ("   ", "empty"),
            ("x" * 101, "string_too_long"),
            ("\u202egnp.exe", "control_character"),
        ):
            refused = requests.post(
                f"{api.url}/training/llm/jobs",
                headers=ANN,
                timeout=10,
                json={"gpu_id": "0", "output_dir": "output/x", "name": name},
            )
            assert refused.status_code == 422, refused.text
            assert refused.json()["fields"][0]["field"] == "name" and refused.json()["fields"][0]["rule"] == rule
        assert requests.get(f"{api.url}/training/all/jobs", headers=ANN, timeout=10).json()["jobs"] == []

        job = requests.post(
            f"{api.url}/training/llm/jobs", headers=ANN, timeout=10, json={"gpu_id": "0", "output_dir": "output/x"}
        ).json()["job_id"]
        note = "lr 1e-4 diverged at step 300\n\tnext: 5e-5 <b>"
        refused = requests.patch(f"{api.url}/training/jobs/{job}", headers=BOB, json={"note": note}, timeout=10)
        assert refused.status_code == 403 and "UANN" in refused.json()["error"]
        patched = requests.patch(f"{api.url}/training/jobs/{job}", headers=ANN, json={"note": note}, timeout=10)
        assert patched.status_code == 200 and patched.json()["note"] == note
        listed_note = requests.get(f"{api.url}/training/all/jobs", headers=BOB, timeout=10).json()["jobs"][0]["note"]
        assert listed_note == note
        bad = requests.post(f"{api.url}/training/jobs/{job}/note", headers=ANN, json={"note": "a\x00b"}, timeout=10)
        assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "note"
        cleared = requests.post(f"{api.url}/training/jobs/{job}/note", headers=ANN, json={"note": ""}, timeout=10)
        assert cleared.status_code == 200 and cleared.json()["note"] == ""
        missing = requests.patch(f"{api.url}/training/jobs/zzzzz", headers=ANN, json={"note": "x"}, timeout=10)
        assert missing.status_code == 404

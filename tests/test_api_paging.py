"""Paging the job lists over real HTTP (`trainbot serve` as a process): a cursor is a position in the list, so
the jobs around it may come and go between pages."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.api_env import serving
from tests.slack_env import fake_config


def _page(url: str, cursor: str | None = None, limit: int = 10) -> requests.Response:
    return requests.get(f"{url}/training/all/jobs", params={"limit": limit, "cursor": cursor}, timeout=10)


def test_a_cursor_keeps_working_when_its_job_is_deleted_and_every_job_is_listed_once(tmp_path: Path) -> None:
    fake_config(tmp_path)
    with serving(tmp_path) as api:
        made = []
        for i in range(40):
            reply = requests.post(
                f"{api.url}/training/llm/jobs", json={"gpu_id": "0", "output_dir": f"output/p{i}"}, timeout=10
            )
            assert reply.status_code == 201, reply.text
            made.append(reply.json()["job_id"])
        newest_first = made[::-1]

        first = _page(api.url).json()
        assert [j["job_id"] for j in first["jobs"]] == newest_first[:10] and first["next_cursor"]
        gone = first["jobs"][-1]["job_id"]  # the job the cursor stands on
        assert requests.delete(f"{api.url}/training/jobs/{gone}", timeout=10).status_code == 200
        seen = [j["job_id"] for j in first["jobs"]]
        cursor = first["next_cursor"]
        deleted_ahead = newest_first[20]  # and one the pages have not reached yet
        assert requests.delete(f"{api.url}/training/jobs/{deleted_ahead}", timeout=10).status_code == 200
        while cursor is not None:
            page = _page(api.url, cursor)
            assert page.status_code == 200, page.text
            seen += [j["job_id"] for j in page.json()["jobs"]]
            cursor = page.json()["next_cursor"]
        assert len(seen) == len(set(seen))  # nobody twice
        assert seen == [j for j in newest_first if j != deleted_ahead]  # nobody missing, in order

        # a cursor of before (a job's bare id) still pages from that job while it exists; a gone one says so
        old_style = _page(api.url, newest_first[4], limit=3).json()
        assert [j["job_id"] for j in old_style["jobs"]] == newest_first[5:8]
        unknown = _page(api.url, gone)
        assert unknown.status_code == 422 and "cursor" in unknown.json()["error"]
        assert gone in unknown.json()["error"] and "without `cursor`" in unknown.json()["error"]
        for junk in ("W1tdXQ", "!!", "eyJ0IjogMX0", "W051TGwsIDFd", "x" * 300):
            refused = _page(api.url, junk)
            assert refused.status_code == 422 and "cursor" in refused.json()["error"], (junk, refused.text)

"""Following a job over HTTP: its events as Server-Sent Events and its log, to the end; a restart of the server
while a client follows loses no event (the client reconnects with Last-Event-ID)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from tests.api_env import serving, start_serve
from tests.slack_env import fake_config


def sse_events(reply: requests.Response) -> Iterator[dict[str, Any]]:
    """The events of an SSE response as they arrive: {"id", "event", "data"}."""
    event: dict[str, Any] = {}
    for raw in reply.iter_lines(decode_unicode=True):
        if raw == "":
            if "data" in event:
                yield event
            event = {}
        elif not raw.startswith(":"):
            name, _, value = raw.partition(": ")
            event[name] = json.loads(value) if name == "data" else value


def create_and_start(url: str) -> str:
    job = requests.post(
        f"{url}/training/llm/jobs", json={"gpu_id": "0", "output_dir": "output/f", "start": True}, timeout=10
    ).json()
    return str(job["job_id"])


def test_follow_events_and_logs_to_the_end_of_a_job(tmp_path: Path) -> None:
    fake_config(tmp_path, steps=20, step_s=0.05)
    with serving(tmp_path) as api:
        job_id = create_and_start(api.url)
        with requests.get(f"{api.url}/training/jobs/{job_id}/events?follow=true", stream=True, timeout=60) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            received = list(sse_events(r))  # the stream ends by itself when the job has ended
        events = [e for e in received if e["event"] != "status"]
        statuses = [e["data"] for e in received if e["event"] == "status"]
        steps = [s["step"] for s in statuses if s["step"] is not None]
        assert len(steps) > 3 and steps == sorted(steps) and steps[-1] == 20  # progress, without polling
        assert statuses[-1]["status"] == "succeeded" and statuses[-1]["progress"] == 100
        kinds = [e["event"] for e in events]
        assert kinds[0] == "created" and kinds[-1] == "finished" and "started" in kinds and "checkpoint" in kinds
        ids = [int(e["id"]) for e in events]
        assert ids == sorted(set(ids)) and [e["data"]["id"] for e in events] == ids
        assert all(e["data"]["job_id"] == job_id for e in events)
        stored = requests.get(f"{api.url}/training/jobs/{job_id}/events", timeout=10).json()
        assert [e["id"] for e in stored] == ids
        later = requests.get(
            f"{api.url}/training/jobs/{job_id}/events", headers={"Last-Event-ID": str(ids[1])}, timeout=10
        ).json()
        assert [e["id"] for e in later] == ids[2:]

        second = create_and_start(api.url)
        with requests.get(f"{api.url}/training/jobs/{second}/logs?follow=true&lines=1", stream=True, timeout=60) as r:
            assert r.status_code == 200
            text = r.content.decode()  # ends with the job
        log_path = requests.get(f"{api.url}/training/jobs/{second}", timeout=10).json()["log_path"]
        assert requests.get(f"{api.url}/training/jobs/{second}/status", timeout=10).json()["status"] == "succeeded"
        whole = Path(log_path).read_text()
        followed = text.splitlines()
        assert len(followed) > 1 and "checkpoint-20" in followed[-1]  # followed to the end
        assert whole.rstrip().endswith("\n".join(followed[1:]))


def test_a_restart_of_serve_while_a_client_follows_loses_no_event(tmp_path: Path) -> None:
    fake_config(tmp_path, steps=40, step_s=0.1, save_steps=5)
    first = start_serve(tmp_path)
    try:
        job_id = create_and_start(first.url)
        got: list[dict[str, Any]] = []
        with requests.get(f"{first.url}/training/events?follow=true", stream=True, timeout=60) as r:
            for event in sse_events(r):
                if event["event"] == "status":
                    continue
                got.append(event)
                if event["event"] == "checkpoint":
                    break  # mid-job
    finally:
        assert first.stop() == 0
    with serving(tmp_path) as second:
        last = got[-1]["id"]
        with requests.get(
            f"{second.url}/training/jobs/{job_id}/events?follow=true",
            stream=True,
            timeout=60,
            headers={"Last-Event-ID": last},
        ) as r:
            got += [e for e in sse_events(r) if e["event"] != "status"]
        stored = requests.get(f"{second.url}/training/jobs/{job_id}/events", timeout=10).json()
        status = requests.get(f"{second.url}/training/jobs/{job_id}/status", timeout=10).json()
    assert status["status"] == "succeeded"
    assert [int(e["id"]) for e in got] == [e["id"] for e in stored]  # every event once, in order
    assert got[-1]["event"] == "finished"

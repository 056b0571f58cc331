"""The seed's HTTP API over real HTTP: `trainbot serve` as a process (fake swift), `requests` as the seed's users."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from tests.api_env import Served, serving
from tests.conftest import VENV_BIN
from tests.slack_env import fake_config
from tests.waiting import wait_until_sync

TOKENS = "tok-alice=UALICE,tok-bob=UBOB,tok-root=UROOT"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Served]:
    fake_config(
        tmp_path,
        steps=30,
        step_s=0.05,  # the seed's scripts send no token: anonymous on loopback
        sections='[access]\nadmins = ["UROOT"]\n[http]\nanonymous_loopback_with_tokens = true\n',
    )
    with serving(tmp_path, {"TRAINBOT_API_TOKENS": TOKENS}) as served:
        yield served


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer tok-{who}"}


def status_of(api: Served, job_id: str) -> dict[str, Any]:
    reply = requests.get(f"{api.url}/training/jobs/{job_id}/status", timeout=10)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def test_create_is_created_until_started_then_runs_to_the_end(api: Served, tmp_path: Path) -> None:
    reply = requests.post(f"{api.url}/training/llm/jobs", json={"gpu_id": "0", "output_dir": "output/a"}, timeout=10)
    assert reply.status_code == 201, reply.text
    job = reply.json()
    assert job["status"] == "created" and job["gpu_id"] == "0" and job["progress"] == 0
    assert job["output_dir"] == str(tmp_path / "output" / "a") and job["user_id"] == "http:anonymous"
    assert status_of(api, job["job_id"])["status"] == "created"  # nothing starts by itself
    listed = requests.get(f"{api.url}/training/llm/jobs?status=created", timeout=10).json()
    assert [j["job_id"] for j in listed["jobs"]] == [job["job_id"]]
    started = requests.post(f"{api.url}/training/jobs/{job['job_id']}/start", timeout=10)
    assert started.status_code == 200 and started.json()["status"] in ("queued", "starting", "running")
    done = wait_until_sync(
        lambda: status_of(api, job["job_id"])["status"] == "succeeded" and True, 60, "the job to succeed"
    )
    assert done
    final = status_of(api, job["job_id"])
    assert final["progress"] == 100 and final["step"] == final["max_steps"] == 30 and final["loss"] is not None
    detail = requests.get(f"{api.url}/training/jobs/{job['job_id']}", timeout=10).json()
    assert "--output_dir" in detail["command"]
    assert [e["kind"] for e in detail["events"]][:2] == ["created", "submitted"]
    assert "finished" in [e["kind"] for e in detail["events"]]
    logs = requests.get(f"{api.url}/training/jobs/{job['job_id']}/logs?lines=5", timeout=10).json()
    assert 0 < len(logs["lines"]) <= 5
    gone = requests.delete(f"{api.url}/training/jobs/{job['job_id']}", timeout=10)
    assert gone.status_code == 200 and gone.json() == {"job_id": job["job_id"], "deleted": True}
    assert requests.get(f"{api.url}/training/jobs/{job['job_id']}", timeout=10).status_code == 404


def test_vlm_overrides_and_start_in_one_call(api: Served) -> None:
    reply = requests.post(
        f"{api.url}/training/jobs",
        json={
            "gpu_id": 1,
            "output_dir": "output/v",
            "start": True,
            "num_train_epochs": 2,
            "learning_rate": 5e-5,
            "dataset": ["a/b#10", "c/d"],
        },
        timeout=10,
    )
    assert reply.status_code == 201, reply.text
    job = reply.json()
    assert job["training_type"] == "vlm" and job["status"] != "created"
    detail = requests.get(f"{api.url}/training/jobs/{job['job_id']}", timeout=10).json()
    assert detail["overrides"] == {"epochs": "2", "learning_rate": "5e-05", "dataset": "a/b#10,c/d"}
    everything = requests.get(f"{api.url}/training/all/jobs", timeout=10).json()["jobs"]
    assert [j["job_id"] for j in everything] == [job["job_id"]]
    assert requests.get(f"{api.url}/training/llm/jobs", timeout=10).json()["jobs"] == []


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"gpu_id": "0", "output_dir": "../../etc"}, "output_dir", ["outside the output root"]),
        ({"gpu_id": "zero", "output_dir": "output/x"}, "gpu_id", ['gpu_id "zero"', "not a GPU list"]),
        ({"gpu_id": "0,0", "output_dir": "output/x"}, "gpu_id", ["names a GPU twice"]),
        ({"gpu_id": "7", "output_dir": "output/x"}, "gpu_id", ["7"]),  # the inventory has GPUs 0-3
        ({"gpu_id": "0"}, "output_dir", ["output_dir", "Field required"]),
        ({"gpu_id": "0", "output_dir": "output/x", "model": "m"}, "model", ["model", "Extra inputs"]),
        ({"gpu_id": ["0"], "output_dir": "output/x"}, "gpu_id", ["gpu_id"]),
    ],
)
def test_bad_input_is_422_with_the_field_named_and_a_body_that_works(
    api: Served, body: dict[str, Any], field: str, words: list[str]
) -> None:
    reply = requests.post(f"{api.url}/training/llm/jobs", json=body, timeout=10)
    assert reply.status_code == 422, reply.text
    answer = reply.json()
    assert all(w in answer["error"] for w in words), answer
    assert [f["field"] for f in answer["fields"]] == [field] and answer["code"] == "invalid_request"
    assert answer["endpoint"] == "POST /training/llm/jobs"
    example = answer["example"]
    assert example["gpu_id"] and example["output_dir"].startswith("output/")
    works = requests.post(f"{api.url}/training/llm/jobs", json=example, timeout=10)  # the example does work
    assert works.status_code == 201, works.text
    jobs = requests.get(f"{api.url}/training/all/jobs", timeout=10).json()["jobs"]
    assert len(jobs) == 1  # the rejected one made nothing


def test_vlm_override_out_of_range_names_the_field_and_its_bound(api: Served) -> None:
    reply = requests.post(
        f"{api.url}/training/jobs", json={"gpu_id": "0", "output_dir": "output/v", "lora_rank": 0}, timeout=10
    )
    assert reply.status_code == 422, reply.text
    [problem] = reply.json()["fields"]
    assert (problem["field"], problem["rule"], problem["limit"], problem["value"]) == (
        "lora_rank",
        "greater_than_equal",
        1,
        0,
    )
    schema = requests.get(f"{api.url}/openapi.json", timeout=10).json()["components"]["schemas"]["VLMJobCreate"]
    rank = schema["properties"]["lora_rank"]["anyOf"][0]  # the bounds are in the contract, too
    assert (rank["type"], rank["minimum"], rank["maximum"]) == ("integer", 1, 1024)


def test_unknown_job_404_and_state_conflicts_409(api: Served) -> None:
    for method, path in [
        ("get", "/training/jobs/zzzzz"),
        ("get", "/training/jobs/zzzzz/status"),
        ("post", "/training/jobs/zzzzz/stop"),
        ("delete", "/training/jobs/zzzzz"),
        ("get", "/training/jobs/zzzzz/events"),
        ("get", "/training/jobs/zzzzz/logs"),
    ]:
        reply = requests.request(method, api.url + path, timeout=10)
        assert reply.status_code == 404 and "there is no job zzzzz" in reply.json()["error"], (path, reply.text)
    job = requests.post(
        f"{api.url}/training/llm/jobs", json={"gpu_id": "0", "output_dir": "output/c"}, timeout=10
    ).json()
    jid = job["job_id"]
    stop = requests.post(f"{api.url}/training/jobs/{jid}/stop", timeout=10)
    assert stop.status_code == 409 and "never started" in stop.json()["error"]
    export = requests.post(f"{api.url}/training/jobs/{jid}/export", timeout=10)
    assert export.status_code == 409
    requests.post(f"{api.url}/training/jobs/{jid}/start", timeout=10)
    wait_until_sync(lambda: status_of(api, jid)["status"] == "running", 30, "the job to run")
    delete = requests.delete(f"{api.url}/training/jobs/{jid}", timeout=10)  # a queued one could go; a running not
    assert delete.status_code == 409 and "stop it first" in delete.json()["error"]
    wait_until_sync(lambda: status_of(api, jid)["status"] == "succeeded", 60, "the job to succeed")
    stop = requests.post(f"{api.url}/training/jobs/{jid}/stop", timeout=10)
    assert stop.status_code == 409 and "already ended" in stop.json()["error"]
    assert requests.post(f"{api.url}/training/jobs/{jid}/start", timeout=10).status_code == 409  # succeeded


def test_tokens_and_ownership(api: Served) -> None:
    bad = requests.get(f"{api.url}/training/all/jobs", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert bad.status_code == 401 and "not valid" in bad.json()["error"]
    assert "nope" not in api.log and "tok-alice" not in api.log
    job = requests.post(
        f"{api.url}/training/llm/jobs",
        json={"gpu_id": "0", "output_dir": "output/o"},
        headers=auth("alice"),
        timeout=10,
    ).json()
    assert job["user_id"] == "UALICE"
    jid = job["job_id"]
    for who in ("bob", None):  # another user, and the anonymous loopback user, may look but not touch
        headers = auth(who) if who else {}
        assert requests.get(f"{api.url}/training/jobs/{jid}/status", headers=headers, timeout=10).status_code == 200
        refused = requests.post(f"{api.url}/training/jobs/{jid}/start", headers=headers, timeout=10)
        assert refused.status_code == 403 and "or an admin may start it" in refused.json()["error"]
    assert status_of(api, jid)["status"] == "created"
    assert requests.delete(f"{api.url}/training/jobs/{jid}", headers=auth("root"), timeout=10).status_code == 200


def test_idempotency_key_returns_the_first_job(api: Served) -> None:
    body = {"gpu_id": "0", "output_dir": "output/i"}
    first = requests.post(f"{api.url}/training/llm/jobs", json=body, headers={"Idempotency-Key": "k-1"}, timeout=10)
    again = requests.post(f"{api.url}/training/llm/jobs", json=body, headers={"Idempotency-Key": "k-1"}, timeout=10)
    other = requests.post(f"{api.url}/training/llm/jobs", json=body, headers={"Idempotency-Key": "k-2"}, timeout=10)
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert again.json()["job_id"] == first.json()["job_id"] != other.json()["job_id"]
    assert len(requests.get(f"{api.url}/training/all/jobs", timeout=10).json()["jobs"]) == 2
    theirs = requests.post(
        f"{api.url}/training/llm/jobs", json=body, headers={"Idempotency-Key": "k-1"} | auth("bob"), timeout=10
    )
    assert theirs.status_code == 201 and theirs.json()["job_id"] != first.json()["job_id"]  # keys are per user
    with ThreadPoolExecutor(8) as pool:  # retries racing each other still make one job
        racing = list(
            pool.map(
                lambda _: requests.post(
                    f"{api.url}/training/llm/jobs", json=body, timeout=10, headers={"Idempotency-Key": "k-race"}
                ),
                range(8),
            )
        )
    assert all(r.status_code in (200, 201) for r in racing)
    assert len({r.json()["job_id"] for r in racing}) == 1
    assert len(requests.get(f"{api.url}/training/all/jobs", timeout=10).json()["jobs"]) == 4


def test_idempotency_key_with_another_request_is_refused_naming_the_key(api: Served) -> None:
    body = {"gpu_id": "0", "output_dir": "output/i"}
    key = {"Idempotency-Key": "k-7"}
    first = requests.post(f"{api.url}/training/llm/jobs", json=body, headers=key, timeout=10)
    assert first.status_code == 201, first.text
    job_id = first.json()["job_id"]
    for path, other in [
        ("/training/llm/jobs", {"gpu_id": "1", "output_dir": "output/i"}),
        ("/training/llm/jobs", body | {"start": True}),
        ("/training/llm/jobs", {"gpu_id": "0", "output_dir": "output/j"}),
        ("/training/jobs", body),
    ]:  # the same body on the VLM endpoint is another request
        reply = requests.post(api.url + path, json=other, headers=key, timeout=10)
        assert reply.status_code == 422, (path, other, reply.text)
        answer = reply.json()
        assert answer["code"] == "idempotency_key_reused" and '"k-7"' in answer["error"] and job_id in answer["error"]
        assert answer["fields"][0]["field"] == "Idempotency-Key" and answer["fields"][0]["value"] == "k-7"
        assert answer["endpoint"] == f"GET /training/jobs/{job_id}"
    for same in (body, {"gpu_id": 0, "output_dir": "./output//i"}):  # the same request, however it is spelt
        again = requests.post(f"{api.url}/training/llm/jobs", json=same, headers=key, timeout=10)
        assert again.status_code == 200 and again.json()["job_id"] == job_id, again.text
    assert [j["job_id"] for j in requests.get(f"{api.url}/training/all/jobs", timeout=10).json()["jobs"]] == [job_id]
    assert status_of(api, job_id)["status"] == "created"  # the refused `start: true` started nothing


def test_paging_gpus_health_docs_and_huge_bodies(api: Served) -> None:
    made = [
        requests.post(
            f"{api.url}/training/llm/jobs", json={"gpu_id": "0", "output_dir": f"output/p{i}"}, timeout=10
        ).json()["job_id"]
        for i in range(5)
    ]
    seen: list[str] = []
    url = f"{api.url}/training/all/jobs?limit=2"
    page = requests.get(url, timeout=10).json()
    while True:
        seen += [j["job_id"] for j in page["jobs"]]
        if page["next_cursor"] is None:
            break
        page = requests.get(f"{url}&cursor={page['next_cursor']}", timeout=10).json()
    assert seen == made[::-1]
    gpus = requests.get(f"{api.url}/gpus", timeout=10).json()
    assert [g["index"] for g in gpus["gpus"]][:4] == ["0", "1", "2", "3"]
    assert requests.get(f"{api.url}/healthz", timeout=10).json()["ok"] is True
    assert "/training/llm/jobs" in requests.get(f"{api.url}/openapi.json", timeout=10).json()["paths"]
    assert requests.get(f"{api.url}/docs", timeout=10).status_code == 200
    huge = requests.post(
        f"{api.url}/training/llm/jobs",
        data=b"{" + b" " * 100_000 + b"}",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert huge.status_code == 413 and "max_body_bytes" in huge.json()["error"]
    assert len(requests.get(f"{api.url}/training/all/jobs", timeout=10).json()["jobs"]) == 5


def test_secrets_never_reach_a_job_and_a_bad_token_entry_is_refused_at_start(tmp_path: Path) -> None:
    fake_config(tmp_path, steps=400, step_s=0.05)
    env = {"TRAINBOT_API_TOKENS": TOKENS}
    with serving(tmp_path, env) as api:
        job = requests.post(
            f"{api.url}/training/llm/jobs",
            json={"gpu_id": "0", "output_dir": "output/e", "start": True},
            headers=auth("alice"),
            timeout=10,
        )
        server = psutil.Process(api.proc.pid)
        swift = wait_until_sync(
            lambda: [p for p in server.children(recursive=True) if "fake_swift" in " ".join(p.cmdline())],
            30,
            "the job's process",
        )
        environ = swift[0].environ()
        assert "TRAINBOT_API_TOKENS" not in environ and not any("tok-alice" in v for v in environ.values())
        requests.post(f"{api.url}/training/jobs/{job.json()['job_id']}/stop", headers=auth("alice"), timeout=10)
    (tmp_path / "tokens").write_text("# team tokens\ntok-file UFILE\n")
    with open(tmp_path / "trainbot.toml", "a") as f:
        f.write('[http]\ntokens_file = "tokens"\n')
    with serving(tmp_path) as api:
        me = requests.post(
            f"{api.url}/training/llm/jobs",
            json={"gpu_id": "0", "output_dir": "output/t"},
            headers={"Authorization": "Bearer tok-file"},
            timeout=10,
        )
        assert me.status_code == 201 and me.json()["user_id"] == "UFILE"
    bad = subprocess.run(
        [str(VENV_BIN / "trainbot"), "--config", str(tmp_path / "trainbot.toml"), "serve", "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
        | {"TRAINBOT_API_TOKENS": "tok-x=UX,oops"},
    )
    assert bad.returncode == 2 and b"TRAINBOT_API_TOKENS: entry 2 is not `TOKEN=USER_ID`" in bad.stderr
    assert b"tok-x" not in bad.stderr

"""Hostile input over real HTTP: random JSON bodies, paths and headers never get a 5xx, and a rejected request
creates nothing and writes nothing outside the output root."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api_env import serving
from tests.slack_env import fake_config
from tests.waiting import wait_until_sync

TOKENS = "tok-a=UA"
ASCII = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "gpu_id",
        "output_dir",
        "start",
        "profile",
        "model",
        "dataset",
        "num_train_epochs",
        "learning_rate",
        "lora_rank",
        "max_pixels",
        "job_id",
    ]
)
FIELD_VALUES = st.one_of(
    JSON,
    st.sampled_from(
        [
            "0",
            "0,1",
            "cpu",
            "-1",
            "99",
            "../x",
            "/etc",
            "output/ok",
            "output/a\nb",
            "output/" + "x" * 300,
            "--model",
            "output/$(id)",
        ]
    ),
)
BODIES = st.one_of(JSON, st.dictionaries(FIELDS, FIELD_VALUES, max_size=6))
SEGMENT = st.one_of(
    st.sampled_from(["zzzzz", "..", "%00", "%2e%2e", "a" * 300, "ab%2Fcd", "k3x9q"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#%"), min_size=1, max_size=20),
)
PATHS = st.one_of(
    st.builds(lambda s: f"/training/jobs/{s}", SEGMENT),
    st.builds(
        lambda s, a: f"/training/jobs/{s}/{a}",
        SEGMENT,
        st.sampled_from(["start", "stop", "export", "status", "logs", "events", "x"]),
    ),
    st.sampled_from(
        ["/training/llm/jobs", "/training/jobs", "/training/all/jobs", "/gpus", "/healthz", "/training/events"]
    ),
)
QUERIES = st.dictionaries(st.sampled_from(["status", "limit", "cursor", "lines", "follow", "after"]), ASCII, max_size=3)
HEADER_VALUES = st.one_of(
    ASCII.map(str.strip),
    st.sampled_from(["Bearer tok-a", "Bearer nope", "Basic eA==", "-1", "99999999999999999999999", "text/plain"]),
)
HEADERS = st.dictionaries(
    st.sampled_from(["Authorization", "Idempotency-Key", "Last-Event-ID", "Content-Type", "X-Forwarded-For", "Accept"]),
    HEADER_VALUES,
    max_size=3,
)


def test_random_requests_never_get_a_5xx_and_rejected_ones_create_nothing(tmp_path: Path) -> None:
    fake_config(tmp_path, sections="[http]\nanonymous_loopback_with_tokens = true\n")  # counts without a token
    outside = set(tmp_path.iterdir())
    with serving(tmp_path, {"TRAINBOT_API_TOKENS": TOKENS}) as api:

        def count() -> int:
            return len(requests.get(f"{api.url}/training/all/jobs?limit=500", timeout=10).json()["jobs"])

        @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(
            method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"]),
            path=PATHS,
            query=QUERIES,
            headers=HEADERS,
            body=BODIES,
            raw=st.booleans(),
        )
        def one(method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any, raw: bool) -> None:
            if query.get("follow", "").lower() in ("true", "1", "yes", "on", "t", "y"):
                query["follow"] = "false"  # a followed stream of a live job would not end: tested elsewhere
            before = count()
            data = json.dumps(body).encode() if not raw else json.dumps(body)[:-1].encode() or b"{"
            reply = requests.request(method, api.url + path, params=query, headers=headers, data=data, timeout=10)
            assert reply.status_code < 500, (method, path, query, headers, body, reply.text)
            if reply.status_code >= 400:
                assert reply.json()["error"], reply.text
                assert count() == before

        one()
    written = set(tmp_path.iterdir()) - outside
    assert {p.name for p in written} <= {"output", "logs", ".trainbot", "exits"}
    output = tmp_path / "output"
    for job_dir in output.rglob("*") if output.exists() else ():
        assert job_dir.resolve().is_relative_to(output)


# ---- a JSON body is values, not chat words (issue 26 cases 3, 4, 5 and 8) ----------------------------------------

SLACK_WORDS = re.compile(r"/train(?!ing/)|\bout=|\bgpu=|Try:|`")  # the chat's words and mrkdwn, not an HTTP client's
AS_TYPED = [  # each reached the job changed (or a quote error) when the API re-read the body as `/train` words
    "output/q’ profile=exact’",
    "output/r’ dry_run=true’",
    "output/bob’s-run",
    "output/no\u00a0break",
    "output/zero\u200bwidth\u200c\u200djoin\ufeff",
    "output/“quoted” ＝ ，comma",
    "output/—dash",
    "output/a b  c",
    "output/'single' \"double\"",
    "output/训练-1",
    "output/x --dry-run",
]


def _post(url: str, path: str, body: object, **headers: str) -> requests.Response:
    return requests.post(url + path, json=body, headers=headers, timeout=10)


def _no_slack_words(reply: requests.Response) -> dict[str, Any]:
    answer: dict[str, Any] = reply.json()
    text = json.dumps(answer, ensure_ascii=False)
    assert not SLACK_WORDS.search(text), text
    assert answer["error"] and answer["code"], text
    return answer


def test_every_json_string_is_kept_byte_for_byte_or_refused_with_its_field_named(tmp_path: Path) -> None:
    fake_config(tmp_path)
    with serving(tmp_path) as api:
        for n, folder in enumerate(AS_TYPED):
            reply = _post(api.url, "/training/llm/jobs", {"gpu_id": str(n % 4), "output_dir": folder})
            assert reply.status_code == 201, (folder, reply.text)
            job = requests.get(f"{api.url}/training/jobs/{reply.json()['job_id']}", timeout=10).json()
            assert job["output_dir"] == str(tmp_path / folder), folder  # not one character changed
            assert job["status"] == "created"  # `dry_run=true` in a folder's name is no dry run either
        refused = {  # what the rules refuse is refused, naming the field, and never repaired
            "output_dir": "output/line\nbreak",
            "model": "Qwen/Qwen2.5-VL-7B-Instruct lora_rank=4",
            "dataset": "a/b#5,\u00a0c/d",
            "gpu_id": "0\u00a0",
            "profile": "exact’",
        }
        for name, value in refused.items():
            body = {"gpu_id": "0", "output_dir": "output/refused", name: value}
            reply = _post(api.url, "/training/jobs", body)
            assert reply.status_code == 422, (name, reply.text)
            answer = _no_slack_words(reply)
            assert [f["field"] for f in answer["fields"]] == [name], answer
            assert answer["endpoint"] == "POST /training/jobs" and answer["example"] is not None
        jobs = requests.get(f"{api.url}/training/all/jobs", timeout=10).json()["jobs"]
        assert len(jobs) == len(AS_TYPED)


LAX = [  # each was taken: `true` as GPU 1, `1.0` as GPU 1, "yes" as true...
    ("gpu_id", True),
    ("gpu_id", False),
    ("gpu_id", 1.0),
    ("gpu_id", None),
    ("start", "yes"),
    ("start", 1),
    ("start", "true"),
    ("output_dir", 7),
    ("lora_rank", 8.0),
    ("lora_rank", "8"),
    ("lora_rank", True),
    ("num_train_epochs", "2"),
    ("learning_rate", "1e-4"),
    ("max_pixels", 1e6),
    ("dataset", 5),
    ("profile", "FAST"),
]


def test_lax_types_are_refused_with_the_field_named(tmp_path: Path) -> None:
    fake_config(tmp_path)
    with serving(tmp_path) as api:
        for name, value in LAX:
            reply = _post(api.url, "/training/jobs", {"gpu_id": "1", "output_dir": "output/lax", name: value})
            assert reply.status_code == 422, (name, value, reply.text)
            answer = _no_slack_words(reply)
            assert [f["field"] for f in answer["fields"]] == [name], (name, value, answer)
            works = _post(api.url, "/training/jobs", answer["example"] | {"start": False})
            assert works.status_code == 201, (answer["example"], works.text)
            requests.delete(f"{api.url}/training/jobs/{works.json()['job_id']}", timeout=10)
        assert requests.get(f"{api.url}/training/all/jobs", timeout=10).json()["jobs"] == []
        for raw in (b"{}", b"{", b"null", b'{"gpu_id": "0", "output_dir": "output/x"}'):  # no JSON content type
            reply = requests.post(f"{api.url}/training/llm/jobs", data=raw, timeout=10)
            assert reply.status_code == 422 and _no_slack_words(reply)["fields"], (raw, reply.text)
            assert "Content-Type: application/json" in reply.json()["error"], (raw, reply.text)  # what to send


def test_a_symlink_in_the_output_root_is_followed_when_the_job_is_created(tmp_path: Path) -> None:
    fake_config(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "escape-link").symlink_to(outside)
    with serving(tmp_path) as api:
        reply = _post(
            api.url, "/training/llm/jobs", {"gpu_id": "1", "output_dir": "output/escape-link/x", "start": True}
        )
        assert reply.status_code == 422, reply.text
        [problem] = _no_slack_words(reply)["fields"]
        assert (problem["field"], problem["rule"], problem["resolved"]) == (
            "output_dir",
            "outside_root",
            str(outside / "x"),
        )
        assert requests.get(f"{api.url}/training/all/jobs", timeout=10).json()["jobs"] == []
    assert list(outside.iterdir()) == []


def test_no_error_over_http_speaks_slack_and_each_names_the_call_to_make(tmp_path: Path) -> None:
    fake_config(tmp_path, steps=400, step_s=0.05)
    with serving(tmp_path) as api:
        url = api.url
        running = _post(url, "/training/llm/jobs", {"gpu_id": "0", "output_dir": "output/a", "start": True}).json()
        held = _post(url, "/training/llm/jobs", {"gpu_id": "1", "output_dir": "output/h"}).json()
        a, h = running["job_id"], held["job_id"]
        expected = [  # (request, status, the call it names)
            (
                ("post", "/training/llm/jobs", {"gpu_id": "0" * 5000, "output_dir": "output/x"}),
                422,
                "POST /training/llm/jobs",
            ),
            (("post", "/training/llm/jobs", {"gpu_id": "9", "output_dir": "output/x"}), 422, "POST /training/llm/jobs"),
            (("post", "/training/llm/jobs", {"gpu_id": "0", "output_dir": "/etc"}), 422, "POST /training/llm/jobs"),
            (
                ("post", "/training/jobs", {"gpu_id": "0", "output_dir": "output/v", "lora_rank": 5000}),
                422,
                "POST /training/jobs",
            ),
            (
                ("post", "/training/llm/jobs", {"gpu_id": "2", "output_dir": "output/a"}),
                409,
                f"POST /training/jobs/{a}/stop",
            ),
            (("delete", f"/training/jobs/{a}", None), 409, f"POST /training/jobs/{a}/stop"),
            (("post", f"/training/jobs/{h}/stop", None), 409, f"DELETE /training/jobs/{h}"),
            (("post", f"/training/jobs/{h}/export", None), 409, f"POST /training/jobs/{h}/start"),
            (("post", f"/training/jobs/{a}/start", None), 409, f"GET /training/jobs/{a}/status"),
            (("get", "/training/jobs/zzzzz", None), 404, "GET /training/all/jobs"),
        ]
        for (method, path, body), status, call in expected:
            reply = requests.request(method, url + path, json=body, timeout=10)
            assert reply.status_code == status, (path, body, reply.text)
            answer = _no_slack_words(reply)
            assert answer["endpoint"] == call, (path, answer)
            if status == 422:
                assert answer["fields"] and answer["example"], answer
        huge = requests.post(
            f"{url}/training/llm/jobs",
            data=b"{" + b" " * 100_000 + b"}",
            timeout=10,
            headers={"Content-Type": "application/json"},
        )
        assert huge.status_code == 413 and _no_slack_words(huge)["code"] == "too_large"
        requests.post(f"{url}/training/jobs/{a}/stop", timeout=10)

        def stopped() -> bool:  # before the server goes: its trainer must not outlive the test
            return requests.get(f"{url}/training/jobs/{a}/status", timeout=10).json()["status"] == "stopped"

        wait_until_sync(stopped, 30, f"job {a} to stop")


def test_a_lone_surrogate_or_a_nan_sent_back_in_an_error_is_still_a_422_naming_the_field(tmp_path: Path) -> None:
    fake_config(tmp_path)
    raw = {  # JSON that Python reads (a lone surrogate, NaN, Infinity) but UTF-8 / strict JSON cannot send back
        "output_dir": b'{"gpu_id": "0", "output_dir": "output/\\ud800x"}',
        "gpu_id": b'{"gpu_id": "\\udfff", "output_dir": "output/x"}',
        "model": b'{"gpu_id": "0", "output_dir": "output/x", "model": "a/\\ud800b"}',
        "learning_rate": b'{"gpu_id": "0", "output_dir": "output/x", "learning_rate": NaN}',
        "lora_rank": b'{"gpu_id": "0", "output_dir": "output/x", "lora_rank": Infinity}',
    }
    with serving(tmp_path) as api:
        for name, body in raw.items():
            reply = requests.post(
                f"{api.url}/training/jobs", data=body, timeout=10, headers={"Content-Type": "application/json"}
            )
            assert reply.status_code == 422, (name, reply.status_code, reply.text)
            assert [f["field"] for f in _no_slack_words(reply)["fields"]] == [name]

"""The dashboard's pages and forms over plain HTTP (`requests`, no browser), from `trainbot serve` as a process."""

from __future__ import annotations

import re
from pathlib import Path

import psutil
import requests

from tests.api_env import serving
from tests.slack_env import fake_config
from tests.waiting import wait_until_sync
from tests.web_env import ANONYMOUS_TOO, SIGNED_ONLY, TOKENS, create


def test_what_a_user_typed_is_shown_escaped_and_a_bad_sign_in_says_why(tmp_path: Path) -> None:
    fake_config(tmp_path, sections=ANONYMOUS_TOO)
    with serving(tmp_path, TOKENS) as api, requests.Session() as s:
        page = s.get(f"{api.url}/", params={"owner": "<b>x</b>"}, timeout=10)  # anonymous on loopback
        assert page.status_code == 200 and "&lt;b&gt;x&lt;/b&gt;" in page.text and "<b>x</b>" not in page.text
        assert s.get(f"{api.url}/jobs/nojob", timeout=10).status_code == 404
        job = s.post(f"{api.url}/training/llm/jobs", json={"gpu_id": "0", "output_dir": "output/x"}, timeout=10)
        said = s.get(
            f"{api.url}/jobs/{job.json()['job_id']}", params={"said": "<script>alert(1)</script>"}, timeout=10
        )  # what a page says is never taken from its URL
        assert said.status_code == 200 and "alert(1)" not in said.text
        bad = s.post(f"{api.url}/signin", data={"token": "nope", "next": "//evil.example"}, timeout=10)
        assert bad.status_code == 401 and "not valid" in bad.text and "//evil" not in bad.text
        good = s.post(
            f"{api.url}/signin", data={"token": "tok-ann", "next": "//evil.example"}, timeout=10, allow_redirects=False
        )
        assert good.status_code == 303 and good.headers["location"] == "/"
        cookie = good.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        form = s.post(f"{api.url}/new", data={"kind": "llm", "gpu_0": "on", "out": "/etc"}, timeout=10)
        assert form.status_code == 403  # no CSRF token: refused before anything is read


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def test_a_session_ends_with_its_token_and_survives_a_restart_otherwise(tmp_path: Path) -> None:
    fake_config(tmp_path, sections=SIGNED_ONLY)
    with requests.Session() as s:
        with serving(tmp_path, TOKENS) as api:
            assert s.post(f"{api.url}/signin", data={"token": "tok-ann"}, timeout=10).status_code == 200
        with serving(tmp_path, TOKENS) as api:  # the same key from the data dir: still signed in
            page = s.get(f"{api.url}/", timeout=10, allow_redirects=False)
            assert page.status_code == 200 and "UANN" in page.text
        with serving(tmp_path, {"TRAINBOT_API_TOKENS": "tok-bob=UBOB"}) as api:  # ann's token was withdrawn
            page = s.get(f"{api.url}/", timeout=10, allow_redirects=False)
            assert page.status_code == 303 and page.headers["location"].startswith("/signin")
    assert oct((tmp_path / ".trainbot" / "web_session.key").stat().st_mode & 0o777) == "0o600"


def test_a_queued_job_shows_its_place_and_the_form_checks_its_fields(tmp_path: Path) -> None:
    fake_config(tmp_path, gpus=1, steps=200, step_s=0.2, sections=ANONYMOUS_TOO)
    with serving(tmp_path, TOKENS) as api, requests.Session() as s:
        first, second = create(api.url, "tok-ann"), create(api.url, "tok-bob")

        def told_why() -> object:  # the answer came first: the loop, woken, says why it waits right after
            return requests.get(f"{api.url}/training/jobs/{second}/status", timeout=10).json()["queue_reason"]

        wait_until_sync(told_why, 30, "the second job to be told why it waits")
        table = s.get(f"{api.url}/", timeout=10).text
        row = table[table.index(f'id="job-{second}"') :]
        assert "#1 in line" in row[: row.index("</tr>")] and first in table
        assert f"GPU 0 is held by job {first}" in row[: row.index("</tr>")]
        waiting = requests.get(f"{api.url}/training/jobs/{second}/status", timeout=10).json()["queue_reason"]
        assert waiting == {
            "code": "gpus_busy",
            "fields": {"held": {"0": first}, "foreign": []},
            "message": f"GPU 0 is held by job {first}",
        }
        assert "No jobs match" in s.get(f"{api.url}/?kind=vlm", timeout=10).text
        mine = s.get(f"{api.url}/", params={"owner": "UBOB", "state": "queued"}, timeout=10).text
        assert f'id="job-{second}"' in mine and f'id="job-{first}"' not in mine
        csrf = _csrf(s.get(f"{api.url}/new?kind=vlm", timeout=10).text)
        bad = s.post(
            f"{api.url}/new",
            data={"csrf": csrf, "kind": "vlm", "gpu_0": "on", "out": "output/v", "lora_rank": "lots"},
            timeout=10,
        )
        assert bad.status_code == 422 and "lora_rank" in bad.text and "Start" not in bad.text
        preview = s.post(
            f"{api.url}/new",
            data={"csrf": csrf, "kind": "vlm", "gpu_0": "on", "out": "output/v", "lora_rank": "16", "go": "preview"},
            timeout=10,
        )
        assert preview.status_code == 200 and "--lora_rank 16" in preview.text and 'id="start-button"' in preview.text
        assert f"in use by job {first}; promised next to queued job {second}" in preview.text  # GPU 0
        outside = s.post(
            f"{api.url}/new",
            data={"csrf": csrf, "kind": "llm", "gpu_0": "on", "out": "/etc", "go": "start"},
            timeout=10,
        )
        assert outside.status_code == 422 and "output" in outside.text
        jobs = requests.get(f"{api.url}/training/all/jobs", timeout=10).json()["jobs"]
        assert len(jobs) == 2  # neither the bad forms nor the preview made a job
        assert f'<a href="/jobs/{first}">job {first}</a>' in s.get(f"{api.url}/web/gpus", timeout=10).text
        for job, token in ((second, "tok-bob"), (first, "tok-ann")):  # the queued one first, or it would start
            stop = requests.post(
                f"{api.url}/training/jobs/{job}/stop", headers={"Authorization": f"Bearer {token}"}, timeout=10
            )
            assert stop.status_code == 200, stop.text
        wait_until_sync(
            lambda: requests.get(f"{api.url}/training/jobs/{first}/status", timeout=10).json()["status"] == "stopped",
            30,
            "the running job to stop: its trainer outlives serve",
        )


def test_a_failed_job_page_shows_the_cause_the_hint_and_the_logs_tail_first(tmp_path: Path) -> None:
    fake_config(tmp_path, sections=ANONYMOUS_TOO)
    (tmp_path / "fake-swift").write_text(  # a swift that runs out of memory at once
        "#!/bin/sh\necho 'loading <model> weights'\n"
        "echo 'torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB' >&2\nexit 1\n"
    )
    with serving(tmp_path, TOKENS) as api, requests.Session() as s:
        job = create(api.url, "tok-ann")
        wait_until_sync(
            lambda: requests.get(f"{api.url}/training/jobs/{job}/status", timeout=10).json()["status"] == "failed",
            60,
            "the job to fail",
        )
        page = s.get(f"{api.url}/jobs/{job}", timeout=10).text
        failure = page[page.index('class="failure"') :]
        assert failure.index("Why it failed") < failure.index("Command line")  # first, before the details
        assert "out of memory" in failure.lower() and '<p class="hint">' in failure  # cause and hint
        assert "&lt;model&gt;" in failure and "<model>" not in page  # the tail, escaped
        assert "ran out of GPU memory (CUDA OOM, tried to allocate 2.00 GiB)" in failure
        error = requests.get(f"{api.url}/training/jobs/{job}/status", timeout=10).json()["error"]  # the API's way
        assert (error["code"], error["fields"]) == ("cuda_oom", {"tried_to_allocate": "2.00 GiB"}), error
        assert error["message"] == "ran out of GPU memory (CUDA OOM, tried to allocate 2.00 GiB)"
        assert error["hint"] == "lower max_length or the batch size, or use a GPU with more memory"
        log = s.get(f"{api.url}/jobs/{job}/log", timeout=10)
        assert log.status_code == 200 and "OutOfMemoryError" in log.text
        assert "attachment" in log.headers["content-disposition"]


def test_the_session_signing_key_never_reaches_a_job(tmp_path: Path) -> None:
    fake_config(tmp_path, steps=400, step_s=0.05)
    with serving(tmp_path, TOKENS | {"TRAINBOT_SESSION_SECRET": "web-key-7f3a"}) as api:
        job = create(api.url, "tok-ann")
        server = psutil.Process(api.proc.pid)
        swift = wait_until_sync(
            lambda: [p for p in server.children(recursive=True) if "fake_swift" in " ".join(p.cmdline())],
            30,
            "the job's process",
        )
        assert not any("web-key-7f3a" in v for v in swift[0].environ().values())
        requests.post(f"{api.url}/training/jobs/{job}/stop", headers={"Authorization": "Bearer tok-ann"}, timeout=10)


def test_an_action_the_job_no_longer_allows_is_said_on_its_page(tmp_path: Path) -> None:
    fake_config(tmp_path, steps=2, step_s=0.05, sections=ANONYMOUS_TOO)
    with serving(tmp_path, TOKENS) as api, requests.Session() as s:
        job = create(api.url, "tok-ann", start=False)
        csrf = _csrf(s.get(f"{api.url}/jobs/{job}", timeout=10).text)  # anonymous on loopback: not the owner
        refused = s.post(f"{api.url}/jobs/{job}/delete", data={"csrf": csrf}, timeout=10)
        assert refused.url.endswith(f"/jobs/{job}") and "only" in refused.text  # said on the page, not in its URL
        assert "only" not in s.get(refused.url, timeout=10).text  # and once: not again on a reload
        assert s.post(f"{api.url}/signin", data={"token": "tok-ann"}, timeout=10).status_code == 200
        csrf = _csrf(s.get(f"{api.url}/jobs/{job}", timeout=10).text)
        stopped = s.post(f"{api.url}/jobs/{job}/stop", data={"csrf": csrf}, timeout=10)  # never started
        assert stopped.status_code == 200 and f" · {job} · trainbot</title>" in stopped.text  # its page
        assert "stop" in stopped.text.lower()
        deleted = s.post(f"{api.url}/jobs/{job}/delete", data={"csrf": csrf}, timeout=10)
        assert deleted.status_code == 200 and "deleted" in deleted.text and f'id="job-{job}"' not in deleted.text


def test_the_owner_exports_a_finished_job_and_its_page_shows_the_export_folder(tmp_path: Path) -> None:
    fake_config(tmp_path, steps=4, save_steps=2, step_s=0.05)
    with serving(tmp_path, TOKENS) as api, requests.Session() as s:
        assert s.post(f"{api.url}/signin", data={"token": "tok-ann"}, timeout=10).status_code == 200
        job = create(api.url, "tok-ann")
        wait_until_sync(
            lambda: 'id="do-export"' in s.get(f"{api.url}/jobs/{job}", timeout=10).text,
            60,
            "the finished job's Export button",
        )
        confirm = s.get(f"{api.url}/jobs/{job}/confirm", params={"action": "export"}, timeout=10)
        assert confirm.status_code == 200 and "Export job" in confirm.text
        s.post(f"{api.url}/jobs/{job}/export", data={"csrf": _csrf(confirm.text)}, timeout=10)

        def exported() -> str | None:
            text = s.get(f"{api.url}/jobs/{job}", timeout=10).text
            return text if "export exported" in text else None

        page = wait_until_sync(exported, 60, "the export to end")
        assert "checkpoint-4-merged" in page

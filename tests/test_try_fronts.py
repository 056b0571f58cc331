"""Trying a job's model from every front end, with the real swift on the tiny model (CPU): the console's `try`
printed as it streams, the refusals in words, the API's chat in OpenAI's shapes (plain and streamed), and the job
page's Try box. Slow: marked `swift`; the job tried is tests/conftest.py's `trained`."""

from __future__ import annotations

import json

import pytest
import requests
from selenium.webdriver.common.by import By

from tests.api_env import serving
from tests.browser import attr, browser, click, console_errors, sign_in, text_of
from tests.trying import Trained, console
from tests.waiting import wait_until_sync

pytestmark = pytest.mark.swift


def test_the_consoles_try_prints_the_check_and_an_answer_as_they_stream(trained: Trained) -> None:
    out = console(trained, f"try {trained.job_id}\ntry {trained.job_id} What's your name; who made you?\n")
    check, asked = out.split("asking job", 1)
    # the job by its id and name (its output folder's last part: no name= was given)
    assert f"checking job {trained.job_id} “tried”'s model" in check and "loading checkpoint" in check
    headings = [
        line for line in check.splitlines() if " · " in line and line.split(" · ")[0] in ("fine-tuned", "base model")
    ]
    assert headings == [
        "fine-tuned · 你是谁？",
        "base model · 你是谁？",
        "fine-tuned · Who are you?",
        "base model · Who are you?",
    ]
    assert check.count(" tokens · first token ") == 4 and "↳ checkpoint" in check
    # a question is taken as typed (quotes, `;` and all: no shell, no grammar in it), answered by the loaded model
    assert "fine-tuned · What's your name; who made you?" in asked and "loading" not in asked
    assert "↳ checkpoint" in asked and "⚠️" not in out
    assert "\x1b" not in out  # whatever the model says, no terminal escape reaches the console


def test_a_try_of_a_job_without_a_checkpoint_is_answered_clearly(trained: Trained) -> None:
    out = console(trained, "llm gpu=cpu out=output/held --hold\n")
    held = out.split("Job ", 1)[1].split()[0]
    out = console(trained, f"try {held}\ntry {trained.job_id} checkpoint=99999 hi\ntry {trained.job_id} {'x' * 2001}\n")
    assert f"⚠️ job {held} has not started yet (created): there is no checkpoint to try yet" in out
    assert f"⚠️ job {trained.job_id} has no checkpoint 99999; it has " in out
    assert "⚠️ the question is 2001 characters long; a question has at most 2000" in out


def test_the_apis_chat_answers_plain_and_streamed_in_openais_shapes(trained: Trained) -> None:
    url = f"/training/jobs/{trained.job_id}/chat"
    question = {"messages": [{"role": "user", "content": "Who are you?"}], "max_tokens": 6, "temperature": 0}
    cat = {"Authorization": "Bearer tok-cat"}  # may try any job (try_users); with tokens, loopback needs one
    with serving(trained.root, {"TRAINBOT_API_TOKENS": "tok-bob=UBOB,tok-cat=UCAT"}) as api:
        reply = requests.post(api.url + url, json=question, headers=cat, timeout=300)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
        (choice,) = body["choices"]
        assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
        assert choice["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 6
        assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 6
        facts = body["trainbot"]
        assert facts["weights"]["kind"] == "checkpoint" and facts["gpu_id"] == "cpu" and facts["load_s"] > 0
        assert body["model"] == f"{trained.job_id}/checkpoint-{facts['weights']['step']}"

        streamed = requests.post(
            api.url + url, json={**question, "stream": True}, headers=cat, stream=True, timeout=300
        )
        assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
        data = [line[6:] for line in streamed.iter_lines(decode_unicode=True) if line.startswith("data: ")]
        assert data[-1] == "[DONE]"
        chunks = [json.loads(d) for d in data[:-1]]
        assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        assert text == choice["message"]["content"]  # greedy: the same answer, now in pieces
        assert len(chunks) > 3 and chunks[-1]["choices"][0]["finish_reason"] == "length"
        assert chunks[-1]["usage"]["completion_tokens"] == 6 and chunks[-1]["trainbot"]["load_s"] is None

        # bad input: 422 naming the field; a job without a checkpoint: 409; someone else's job: 403
        for bad, field in (
            ({**question, "max_tokens": 0}, "max_tokens"),
            ({**question, "temperature": "0"}, "temperature"),
            ({**question, "messages": [{"role": "user", "content": "x" * 2001}]}, "messages[0].content"),
            ({**question, "messages": [{"role": "robot", "content": "hi"}]}, "'user' or 'assistant'"),
            ({**question, "messages": [{"role": "assistant", "content": "hi"}]}, "messages:"),
            ({**question, "checkpoint": 99999}, "checkpoint:"),
            ({**question, "gpu_id": "7"}, "gpu_id:"),
            ({**question, "stream": "yes"}, "stream"),
            ({**question, "top_k": 5}, "top_k"),
        ):
            refused = requests.post(api.url + url, json=bad, headers=cat, timeout=60)
            assert refused.status_code == 422 and field in refused.json()["error"], (bad, refused.text)
            assert "/train" not in refused.json()["error"]
        held = requests.post(
            api.url + "/training/llm/jobs", json={"gpu_id": "cpu", "output_dir": "output/h"}, headers=cat, timeout=30
        ).json()["job_id"]
        refused = requests.post(api.url + f"/training/jobs/{held}/chat", json=question, headers=cat, timeout=60)
        assert refused.status_code == 409 and "no checkpoint" in refused.json()["error"]
        refused = requests.post(api.url + url, json=question, headers={"Authorization": "Bearer tok-bob"}, timeout=60)
        assert refused.status_code == 403, refused.text
        schema = requests.get(api.url + "/openapi.json", headers=cat, timeout=30).json()
        assert "/training/jobs/{job_id}/chat" in schema["paths"]


def test_the_job_pages_try_box_streams_the_answer_as_text(trained: Trained) -> None:
    with (
        serving(trained.root, {"TRAINBOT_API_TOKENS": "tok-ann=UANN"}) as api,
        browser(trained.root / "chrome") as driver,
    ):
        sign_in(driver, api.url, "tok-ann")
        driver.get(f"{api.url}/jobs/{trained.job_id}")
        question = "<b>bold?</b> <script>window.pwned = 1</script> Who are you?"
        driver.find_element(By.ID, "try-question").send_keys(question)
        click(driver, "#try-ask")

        def done(n: int) -> bool:
            return attr(driver, f"#try-turns .try-turn:nth-child({n})", "data-done") == "1"

        wait_until_sync(lambda: done(1), 240, "the answer in the box")
        assert text_of(driver, "#try-turns .try-turn:nth-child(1) .q") == f"› {question}"
        assert (
            driver.execute_script(
                "return document.querySelectorAll('#try-turns b, #try-turns script').length + (window.pwned || 0)"
            )
            == 0
        )  # shown as text, never run or rendered
        assert text_of(driver, "#try-turns .try-turn:nth-child(1) pre.a")
        assert "tokens · first token" in text_of(driver, "#try-turns .try-turn:nth-child(1) .try-line")
        assert "done in" in text_of(driver, "#try-status")
        click(driver, "#try-ask")  # empty: the recipe's check, side by side
        wait_until_sync(lambda: done(2), 240, "the check in the box")
        sides = driver.execute_script(
            "return Array.from(document.querySelectorAll('#try-turns .try-turn:nth-child(2) pre.a'))"
            ".map(e => e.dataset.index + '/' + e.dataset.side + '/' + (e.textContent.length > 0))"
        )
        assert sides == ["0/tuned/true", "0/base/true", "1/tuned/true", "1/base/true"]
        assert "Who are you?" in text_of(driver, "#try-turns .try-turn:nth-child(2)")
        assert not console_errors(driver)

"""inferences/serve.py for real: a baked project's ONNX model (a tiny random Phi-3 through olive run)
served by uvicorn in a subprocess, called with the official `openai` client and driven in a
headless Chromium (Debian's chromium + chromium-driver, through selenium)."""

import concurrent.futures
import json
import os
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import TINY_MERGED, free_port, running_server

pytestmark = pytest.mark.slow

KEY = "test-key-not-secret"
GREEDY_TEXT = "I got the job!"


@pytest.fixture(scope="session")
def served_project(tiny_phi3_project):
    """A project whose gen-model/model is a real ONNX model (4 LoRA steps on the tiny Phi-3, merged): the one
    test_e2e runs end to end, named "served"."""
    return tiny_phi3_project(search=False, **TINY_MERGED)


@pytest.fixture(scope="module")
def server(served_project):
    """uvicorn serving the project on a random free port, with an API key; yields the base URL."""
    with running_server(served_project, KEY) as url:
        yield url


@pytest.fixture
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)


def ask(client, text=GREEDY_TEXT, **options):
    return client.chat.completions.create(
        model="served", messages=[{"role": "user", "content": text}], **{"temperature": 0, **options}
    )


def raw_post(server, body, key=KEY):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(f"{server}/v1/chat/completions", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_lists_the_project_model(client):
    assert [model.id for model in client.models.list()] == ["served"]


def test_answers_with_usage(client):
    answer = ask(client, max_tokens=8)
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.prompt_tokens > 5
    assert 1 <= answer.usage.completion_tokens <= 8
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_stream_joins_to_the_greedy_answer(client):
    whole = ask(client, max_tokens=12).choices[0].message.content
    chunks = list(ask(client, max_tokens=12, stream=True))
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([p for p in pieces if p]) >= 2, pieces  # it really streamed, piece by piece
    assert "".join(pieces) == whole
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_unknown_model_is_404(client):
    import openai

    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["code"] == "model_not_found"
    assert "served" in caught.value.body["message"]


def test_bad_field_and_malformed_json_are_400(client, server):
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, temperature=7)
    assert "temperature" in caught.value.body["message"]
    status, body = raw_post(server, b'{"model": "served", "messages": [')
    assert status == 400 and body["error"]["code"] == "invalid_json"
    status, body = raw_post(server, json.dumps({"model": "served", "messages": []}).encode())
    assert status == 400 and body["error"]["message"].startswith("messages")


def test_prompt_over_the_context_is_400_with_the_overflow(client):
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, "word " * 400)  # the tiny model's context is 256 tokens
    message = caught.value.body["message"]
    assert caught.value.body["code"] == "context_length_exceeded"
    overflow = int(message.split("the prompt is ")[1].split(" tokens too long")[0])
    assert overflow > 100, message
    # a max_tokens past the context is capped, not refused
    answer = ask(client, max_tokens=100_000, stop=["\u0000"])
    assert answer.usage.total_tokens <= 256


def test_key_is_required(server):
    from openai import AuthenticationError, OpenAI

    for key in ("wrong", ""):
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=f"{server}/v1", api_key=key or "x", max_retries=0).models.list()
    status, body = raw_post(server, b"{}", key=None)
    assert status == 401 and body["error"]["type"] == "authentication_error"


def post_expecting_continue(server, body):
    """POST `body` with `Expect: 100-continue`, sending it only if the server asks for it: a server that
    refuses by the declared length answers at once. (Sending 2 MB unasked raced the server, which
    answers 413 and closes before reading it: the client then failed with a broken pipe.)"""
    url = urllib.parse.urlsplit(server)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n"
        "Connection: close\r\n\r\n"
    )
    with socket.create_connection((url.hostname, url.port), timeout=60) as sock, sock.makefile("rb") as reader:
        sock.sendall(head.encode())
        status = int(reader.readline().split()[1])
        if status == 100:  # the server reads the body after all: send it, then read the real answer
            reader.readline()
            sock.sendall(body)
            status = int(reader.readline().split()[1])
        length = 0
        while (line := reader.readline().strip()) != b"":
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, json.loads(reader.read(length))


def test_body_is_size_capped(server):
    status, body = post_expecting_continue(server, b'{"model": "served", "x": "' + b"a" * 2_000_000 + b'"}')
    assert status == 413, body
    # the same way of posting, under the cap, is read and answered
    small = {"model": "served", "messages": [{"role": "user", "content": GREEDY_TEXT}], "max_tokens": 2}
    status, body = post_expecting_continue(server, json.dumps(small).encode())
    assert status == 200 and body["choices"][0]["message"]["role"] == "assistant", body


def test_eight_concurrent_requests_all_answer(client):
    alone = ask(client, max_tokens=10).choices[0].message.content
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: ask(client, max_tokens=10), range(8)))
    # batched greedy decoding gives every client the answer it gets alone
    assert [a.choices[0].message.content for a in answers] == [alone] * 8
    # and the server is still up
    assert ask(client, max_tokens=2).usage.completion_tokens >= 1


def test_open_bind_without_key_is_refused(served_project):
    result = served_project.run(
        "inferences/serve.py", "--host", "0.0.0.0", "--port", str(free_port()), timeout=60, env={"SERVE_API_KEY": ""}
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR:") and "SERVE_API_KEY" in lines[0], result.stderr


CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


# CI installs them (.ci/run); there a missing browser fails the test instead of skipping it
@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"), reason="needs Debian's chromium and chromium-driver"
)
def test_web_chat_streams_an_answer_in_chromium(server, client, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1200,700",
    ):
        options.add_argument(flag)
    artifacts = Path(os.environ.get("TEST_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(server)
        key = driver.find_element(By.ID, "key")
        key.send_keys(KEY, Keys.TAB)  # the change event reloads the model list with the key
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".column[data-model='served']"))
        driver.find_element(By.ID, "input").send_keys(GREEDY_TEXT, Keys.ENTER)
        done = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".turn.assistant.done"))
        shown = done[0].text
        screenshot = artifacts / "web-chat.png"
        driver.save_screenshot(str(screenshot))
        print(f"web chat screenshot: {screenshot}")
    finally:
        driver.quit()
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the page asks with temperature 0 and the default max_tokens: the API's greedy answer
    assert shown and shown == ask(client).choices[0].message.content.strip()

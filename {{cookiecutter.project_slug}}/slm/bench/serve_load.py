"""Load figures for a running `inferences/serve.py`: aggregate tokens/s and latency under concurrent clients.

    python inferences/serve_load.py [--url http://127.0.0.1:8000] [--clients 1 4 8] [--requests 4]
                                    [--max-tokens 32] [--answers]

Each of N clients sends --requests chat completions one after another (the inputs of the
held-out rows); the figures for each N are aggregate completion tokens/s (sum of
`usage.completion_tokens` over wall time), p50/p90 request latency, and the ratio to one client.
By default every request produces exactly --max-tokens tokens (`ignore_eos`), so the figure is
decode throughput; --answers lets the model stop where it stops (the real task answers).
The key, if the server needs one, comes from SERVE_API_KEY.
"""

import argparse
import json
import os
import statistics
import threading
import time
import urllib.request

from slm.data import load_rows
from slm.errors import UserError, cli
from slm.metrics import percentile
from slm.project import Project


def post(url, body, key):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def run_level(url, model, texts, clients, requests, max_tokens, exact, key):
    latencies, tokens, errors = [], [], []

    def client(number):
        for i in range(requests):
            text = texts[(number * requests + i) % len(texts)]
            body = {
                "model": model,
                "messages": [{"role": "user", "content": text}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "ignore_eos": exact,
            }
            start = time.perf_counter()
            try:
                answer = post(f"{url}/v1/chat/completions", body, key)
            except Exception as error:  # counted, reported
                errors.append(str(error))
                continue
            latencies.append(time.perf_counter() - start)
            tokens.append(answer["usage"]["completion_tokens"])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "completion_tokens": sum(tokens),
        "tokens_per_second": sum(tokens) / wall,
        "p50_seconds": percentile(latencies, 0.5) if latencies else None,
        "p90_seconds": percentile(latencies, 0.9) if latencies else None,
        "mean_tokens": statistics.mean(tokens) if tokens else 0,
    }


def measure(url, clients=(1, 4, 8), requests=4, max_tokens=32, exact=True, texts=None, key=None):
    """Returns one dict per client count (see run_level); the server must be running at `url`."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with urllib.request.urlopen(urllib.request.Request(f"{url}/v1/models", headers=headers), timeout=30) as response:
        model = json.loads(response.read())["data"][0]["id"]
    texts = texts or ["The storm knocked out power all night."]
    run_level(url, model, texts, 1, 1, max_tokens, exact, key)  # warm up
    return [run_level(url, model, texts, n, requests, max_tokens, exact, key) for n in clients]


def eval_texts(project):
    """What a client would send: the input of each held-out row (the last user turn of a conversation)."""
    task = project.task
    rows = load_rows(project.eval_file, task)
    if task.data_format == "messages":
        return [next(m["content"] for m in reversed(row[task.message_col]) if m["role"] == "user") for row in rows]
    return [row[task.input_column] for row in rows]


@cli
def main(argv=None):
    parser = argparse.ArgumentParser(description="Aggregate tokens/s and latency of a running serve.py.")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--answers", action="store_true", help="let answers end at end of sequence (task answers)")
    args = parser.parse_args(argv)
    texts = eval_texts(Project.load())
    key = os.environ.get("SERVE_API_KEY")
    try:
        results = measure(args.url, args.clients, args.requests, args.max_tokens, not args.answers, texts, key)
    except OSError as error:
        raise UserError(f"no server answered at {args.url} ({error}); start one: python inferences/serve.py") from None
    base = results[0]["tokens_per_second"]
    print(f"{'clients':>7}{'requests':>9}{'errors':>7}{'tokens':>8}{'tok/s':>9}{'p50 s':>8}{'p90 s':>8}{'vs 1st':>8}")
    for r in results:
        print(
            f"{r['clients']:>7}{r['requests']:>9}{r['errors']:>7}{r['completion_tokens']:>8}"
            f"{r['tokens_per_second']:>9.1f}{r['p50_seconds'] or 0:>8.2f}{r['p90_seconds'] or 0:>8.2f}"
            f"{r['tokens_per_second'] / base:>7.2f}x"
        )
    return 1 if any(r["errors"] for r in results) else 0

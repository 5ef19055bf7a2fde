"""An OpenAI-compatible chat-completions server and web chat for the fine-tuned ONNX model.

    python inferences/serve.py [--host 127.0.0.1] [--port 8000] [--api-key KEY]

Routes: GET /v1/models, POST /v1/chat/completions (stream or not), GET / (web chat).

The server is split by seam:

- slm.serve.protocol   the request models and the error family (OpenAI's error shape)
- slm.serve.backends   the `Backend` protocol the HTTP layer talks to, and its implementations on
                       onnxruntime-genai (EngineBackend: og.Engine batching; AdapterBackend: one
                       model id per LoRA adapter)
- slm.serve.text       `text_pieces`, the token stream as client text
- slm.serve.app        create_app: the FastAPI routes and the API-key check
- slm.serve.cli (here)     the command line: arguments, opening the backend, uvicorn
"""

import argparse
import ipaddress
import os
from pathlib import Path

from slm.errors import UserError, cli
from slm.project import Project
from slm.serve.backends import DEFAULT_MAX_QUEUE, AdapterBackend, EngineBackend

API_KEY_ENV = "SERVE_API_KEY"


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_args(argv, project):
    parser = argparse.ArgumentParser(description="Serve the fine-tuned model: OpenAI-compatible API and web chat.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", help=f"require this key (Authorization: Bearer KEY); default: ${API_KEY_ENV}")
    parser.add_argument("--model", help="ONNX model folder (default: the config's output_dir)")
    parser.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="an adapter export: also serve this .onnx_adapter file as model NAME (repeatable)",
    )
    parser.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE, help="requests in progress before 503")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=project.device)
    return parser.parse_args(argv)


def served_adapters(args, project, model_id):
    """{model id: adapter file or None} for an adapter export: the adapter beside the model as the project's
    id, the base model alone as `<id>-base`, and every --adapter NAME=FILE; None for a merged model."""
    own = project.model_adapter(args.model)
    if own is None:
        if args.adapter:
            raise UserError(
                "--adapter needs an adapter export (export=adapter); this model has the fine-tune merged in"
            )
        return None
    adapters = {model_id: own, f"{model_id}-base": None}
    for given in args.adapter:
        name, _, path = (part.strip() for part in given.partition("="))
        if not name or not path:
            raise UserError(f"--adapter {given!r}: write NAME=FILE, e.g. --adapter support=other/adapter.onnx_adapter")
        if name in adapters:
            raise UserError(f"--adapter {given!r}: the model id {name!r} is already served; choose another")
        adapters[name] = Path(path)
    return adapters


def open_backend(args, project):
    """The backend for this model, its generation thread started."""
    from slm.engines import OnnxEngine, load_tokenizer

    model_dir = project.onnx_model_dir(args.model)
    model_id = project.name
    adapters = served_adapters(args, project, model_id)  # a wrong --adapter fails before the model loads
    tokenizer = load_tokenizer(model_dir)
    engine = OnnxEngine(model_dir, args.device)
    options = {"system_prompt": project.system_prompt, "max_queue": args.max_queue}
    if adapters:
        return AdapterBackend(engine, tokenizer, model_id, project.task, adapters, **options).start()
    return EngineBackend(engine, tokenizer, model_id, project.task, **options).start()


@cli
def main(argv=None):
    project = Project.load()
    args = parse_args(argv, project)
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if not is_loopback(args.host) and not api_key:
        raise UserError(
            f"--host {args.host} opens the server to the network without a key; "
            f"set {API_KEY_ENV} (or pass --api-key), or bind 127.0.0.1"
        )
    backend = open_backend(args, project)
    import uvicorn

    from slm.serve.app import create_app

    app = create_app(backend, api_key=api_key)
    url = f"http://{args.host}:{args.port}"
    print(f"Serving {', '.join(backend.models())} on {url}/v1 (web chat: {url}/)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0

"""An OpenAI-compatible chat-completions server and web chat for the fine-tuned ONNX model.

    python inferences/serve.py [--host 127.0.0.1] [--port 8000] [--api-key KEY]

Routes: GET /v1/models, POST /v1/chat/completions (stream or not), GET / (web chat).

The HTTP layer (`create_app`) only talks to a small *backend* object:

    backend.models() -> list[str]                     model ids served
    backend.context_length -> int                     tokens of context
    backend.default_max_tokens -> int                 when a request gives no max_tokens
    backend.prompt_ids(model_id, messages) -> list[int]
        the prompt's token ids; raises UnknownModel (-> 404) or BadRequest (-> 400)
    backend.stop_at_newline -> bool                   the answer is one line (a task project)
    backend.submit(model_id, prompt_ids, max_tokens, temperature, top_p, ignore_eos) -> Job
        starts generating; raises QueueFull (-> 503). A Job is an async iterator of token ids
        (`async for token in job`) with `job.cancel()` (stop forwarding; see EngineBackend).
    backend.decode(token_ids) -> str

`EngineBackend` implements it on onnxruntime-genai's og.Engine / og.Request batching (measured to
beat one generator at a time and generators in threads: see the template's README), one engine
thread per model. `AdapterBackend` serves an adapter export: one model id per LoRA adapter (and one
for the base model alone), each request on its own og.Generator with its adapter, since og.Request
has no adapter in the pinned 0.14.1. `text_pieces` turns the token stream into the text the client sees (stops, newline
rule), shared by the streamed and the non-streamed route so both give the same answer.
"""

import argparse
import asyncio
import hmac
import ipaddress
import json
import os
import queue
import threading
import time
import uuid
from pathlib import Path

from slm.engines import OnnxEngine, load_tokenizer
from slm.errors import UserError, cli
from slm.project import Project

API_KEY_ENV = "SERVE_API_KEY"
DEFAULT_MAX_QUEUE = 32  # requests waiting or running; one more gets 503
DEFAULT_MAX_BODY_BYTES = 1_000_000
RETRY_AFTER_SECONDS = 2


class ApiError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "code"}}."""

    status, type, code = 400, "invalid_request_error", None

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code


class BadRequest(ApiError):
    status, code = 400, "invalid_value"


class PromptTooLong(BadRequest):
    code = "context_length_exceeded"

    def __init__(self, overflow, prompt_tokens, context_length):
        self.overflow = overflow
        super().__init__(
            f"the prompt is {overflow} tokens too long: {prompt_tokens} prompt tokens plus at least one answer "
            f"token must fit the model's context of {context_length} tokens; shorten the messages"
        )


class GenerationFailed(ApiError):
    """The engine failed on a request the server accepted: the server's fault, not the client's."""

    status, type, code = 500, "server_error", "generation_failed"


class UnknownModel(ApiError):
    status, code = 404, "model_not_found"

    def __init__(self, model, known):
        super().__init__(f"model {model!r} does not exist; this server has: {', '.join(known)}")


class Unauthorized(ApiError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class QueueFull(ApiError):
    status, type, code = 503, "server_error", "queue_full"


class BodyTooLarge(ApiError):
    status, code = 413, "body_too_large"


# ---------------------------------------------------------------- backend on onnxruntime-genai


def message_text(message):
    """An OpenAI message's content as text (a string, or a list of {"type": "text"} parts)."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


class Job:
    """One request's token stream from the engine thread to the event loop."""

    def __init__(self, loop):
        self._loop = loop
        self._tokens = asyncio.Queue()
        self.cancelled = False
        self.prompt_tokens = 0

    def _put(self, item):  # called from the engine thread
        self._loop.call_soon_threadsafe(self._tokens.put_nowait, item)

    def cancel(self):
        self.cancelled = True

    def __aiter__(self):
        return self

    async def __anext__(self):
        item = await self._tokens.get()
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, Exception):
            raise item
        return item


class EngineBackend:
    """The project's ONNX model behind og.Engine continuous batching, driven by one thread.

    model_dir       ONNX Runtime GenAI model folder (genai_config.json, model.onnx, tokenizer)
    model_id        the id clients use (the project folder's name)
    task            slm.prompts task: a columns project puts the last user message into the training
                    text template; a chat project puts every message through the chat template
                    (with the training data's system prompt when the client sends none)
    max_queue       requests waiting or running before QueueFull

    Pitfall (onnxruntime-genai 0.14): the engine batches at most 4 requests at a time (a constant in
    its static-batch scheduler; setting engine.static_batching.max_batch_size in genai_config.json
    aborts the process), and a request cannot be removed before it is done. So a cancelled job keeps
    running to its max_tokens / end of sequence; its tokens are just dropped.
    """

    def __init__(self, model_dir, model_id, task, system_prompt=None, max_queue=DEFAULT_MAX_QUEUE, device="cpu"):
        import numpy as np
        import onnxruntime_genai as og

        from slm.infer import CHAT_MAX_NEW_TOKENS, TASK_MAX_NEW_TOKENS

        self._og, self._np = og, np
        self.model_id = model_id
        self.task = task
        self.system_prompt = system_prompt
        self.stop_at_newline = task.data_format == "columns"
        self.default_max_tokens = TASK_MAX_NEW_TOKENS if self.stop_at_newline else CHAT_MAX_NEW_TOKENS
        self.max_queue = max_queue
        self.tokenizer = load_tokenizer(model_dir)
        self.engine = engine = OnnxEngine(model_dir, device)
        self.model, self.context_length = engine.model, engine.context_length
        self._load_adapters()
        self.eos_ids = {self.tokenizer.eos_token_id, *engine.eos_ids}
        self._incoming = queue.Queue()
        self._active = 0  # submitted and not finished (engine thread decrements through _lock)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="og-engine", daemon=True)
        self._thread.start()

    def _load_adapters(self):
        """Nothing to load: the model is the fine-tune (AdapterBackend overrides this)."""

    # -- prompt
    def models(self):
        return [self.model_id]

    def prompt_ids(self, model_id, messages):
        if model_id not in self.models():
            raise UnknownModel(model_id, self.models())
        if self.task.data_format == "messages":
            turns = [{"role": m["role"], "content": message_text(m)} for m in messages]
            if self.system_prompt and not any(turn["role"] == "system" for turn in turns):
                turns.insert(0, {"role": "system", "content": self.system_prompt})
            prompt = self.task.prompt_for_messages(turns, self.tokenizer)
        else:
            users = [m for m in messages if m.get("role") == "user" and message_text(m).strip()]
            if not users:
                raise BadRequest("messages has no user message with text; the model answers the last one", "messages")
            prompt = self.task.prompt_for_input(message_text(users[-1]).strip(), self.tokenizer)
        # the prompt already carries its special tokens, as the training text did
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        overflow = len(ids) + 1 - self.context_length
        if overflow > 0:
            raise PromptTooLong(overflow, len(ids), self.context_length)
        return ids

    def decode(self, token_ids):
        return self.tokenizer.decode([t for t in token_ids if t not in self.eos_ids])

    # -- generation
    def submit(self, model_id, prompt_ids, max_tokens, temperature=0.0, top_p=1.0, ignore_eos=False):
        with self._lock:
            if self._active >= self.max_queue:
                raise QueueFull(f"the server is busy ({self._active} requests in progress); retry shortly")
            self._active += 1
        job = Job(asyncio.get_running_loop())
        job.prompt_tokens = len(prompt_ids)
        max_length = len(prompt_ids) + max_tokens
        options = {"max_length": max_length, "do_sample": temperature > 0}
        if temperature > 0:
            options.update(temperature=float(temperature), top_p=float(top_p))
        if ignore_eos:
            options["min_length"] = max_length
        self._incoming.put((job, list(prompt_ids), options, model_id))
        return job

    def _finish(self, job, error=None):
        job._put(error)
        with self._lock:
            self._active -= 1

    def _arrivals(self, block):
        """The requests submitted since the last look; when `block` (nothing running), waits for the first."""
        while True:
            try:
                yield self._incoming.get(block=block)
            except queue.Empty:
                return
            block = False

    def _run(self):
        og, np = self._og, self._np
        engine = og.Engine(self.model)
        jobs = {}  # id(request) -> (request, job); the request object must stay alive while in the engine
        while True:
            # block for work when idle; otherwise take whatever arrived since the last step
            for job, ids, options, _ in self._arrivals(block=not engine.has_pending_requests()):
                try:
                    params = og.GeneratorParams(self.model)
                    params.set_search_options(**options)
                    request = og.Request(params)
                    request.add_tokens(np.array(ids, dtype=np.int32))
                    engine.add_request(request)
                    jobs[id(request)] = (request, job)
                except Exception as error:  # a bad request must not stop the engine thread
                    self._finish(job, BadRequest(f"the engine refused the request: {error}"))
            if engine.has_pending_requests():
                engine = self._step(engine, jobs)

    def _step(self, engine, jobs):
        """One engine step and its tokens; returns the engine to go on with (a fresh one after a failure)."""
        try:
            engine.step()
        except Exception as error:
            # onnxruntime-genai 0.14 pitfall: when requests end at different steps, the step that
            # gives one its last token can raise "Expected at least one request to be ready" (seen on
            # every fine-tuned SmolLM2 export). The token is there and the request is done: collect
            # and go on. Only a step that moved nothing fails the requests in flight.
            if self._collect(engine, jobs):
                return engine
            for _, job in jobs.values():
                self._finish(job, GenerationFailed(f"generation failed: {error}"))
            jobs.clear()
            return self._og.Engine(self.model)
        self._collect(engine, jobs)
        return engine

    def _collect(self, engine, jobs):
        """Forward every request's new tokens and retire the finished ones; True if anything moved.
        Every request, not only the one step() returns: a request can finish in a step that returns
        another, and the engine refuses to step while a finished request is still in it."""
        moved = False
        for key, (request, job) in list(jobs.items()):
            while request.has_unseen_tokens():
                token = int(request.get_unseen_token())
                moved = True
                if not job.cancelled:
                    job._put(token)
            if request.is_done():
                engine.remove_request(request)
                del jobs[key]
                self._finish(job)
                moved = True
        return moved


class AdapterBackend(EngineBackend):
    """An adapter export behind one thread: `adapters` maps each served model id to its .onnx_adapter
    file (None: the base model alone). Every request gets its own og.Generator with its adapter, and
    the requests in flight advance one token each in turn, so every client streams at once (no
    batching: og.Engine's requests take no adapter in onnxruntime-genai 0.14.1). A cancelled request
    stops at once."""

    def __init__(self, model_dir, model_id, task, adapters, **kwargs):
        self.adapters = dict(adapters)
        super().__init__(model_dir, model_id, task, **kwargs)

    def _load_adapters(self):
        for name, path in self.adapters.items():
            if path is not None:
                self.engine.load_adapter(name, path)

    def models(self):
        return list(self.adapters)

    def _run(self):
        running = []  # [generator, job]: in arrival order, each advanced one token per round
        while True:
            for job, ids, options, model_id in self._arrivals(block=not running):
                try:
                    adapter = model_id if self.adapters[model_id] is not None else None
                    running.append((self.engine.generator(ids, options, adapter=adapter), job))
                except Exception as error:  # a bad request must not stop the thread
                    self._finish(job, BadRequest(f"the model refused the request: {error}"))
            for entry in list(running):
                generator, job = entry
                try:
                    if not job.cancelled and not generator.is_done():
                        generator.generate_next_token()
                        job._put(int(generator.get_next_tokens()[0]))
                    if job.cancelled or generator.is_done():
                        running.remove(entry)
                        self._finish(job)
                except Exception as error:
                    running.remove(entry)
                    self._finish(job, GenerationFailed(f"generation failed: {error}"))


# ---------------------------------------------------------------- token stream -> client text


class Answer:
    """What text_pieces produced, for usage and finish_reason."""

    def __init__(self):
        self.completion_tokens = 0
        self.finish_reason = "length"
        self.text = ""


async def text_pieces(backend, job, max_tokens, stop=(), answer=None, one_line=None):
    """Yield the answer's text as it grows; stops at end of sequence, a stop string, or, for a task
    project (one_line, default backend.stop_at_newline), the end of the answer's first line (stripped,
    as infer.py prints it)."""
    answer = answer if answer is not None else Answer()
    one_line = backend.stop_at_newline if one_line is None else one_line
    ids, emitted = [], ""
    try:
        async for token in job:
            ids.append(token)
            answer.completion_tokens = len(ids)
            if token in backend.eos_ids:
                answer.finish_reason = "stop"
                break
            text = backend.decode(ids)
            if one_line:
                text = text.lstrip()
            cut = len(text)
            for marker in [*stop, *(["\n"] if one_line else [])]:
                at = text.find(marker)
                if at != -1:
                    cut = min(cut, at)
            # hold back a tail that may be the start of a stop string, and a partial character
            hold = max([len(s) - 1 for s in stop] + [0]) if cut == len(text) else 0
            safe = text[: cut - hold] if cut == len(text) else text[:cut]
            if safe.endswith("\ufffd"):
                safe = safe[:-1]
            if one_line:  # trailing spaces wait for more text: the label alone, as infer.py prints it
                safe = safe.rstrip()
            if len(safe) > len(emitted):
                piece, emitted = safe[len(emitted) :], safe
                yield piece
            if cut < len(text):
                answer.finish_reason = "stop"
                break
        else:
            text = backend.decode(ids)
            text = text.strip() if one_line else text
            if len(text) > len(emitted) and text.startswith(emitted):
                piece, emitted = text[len(emitted) :], text
                yield piece
            if len(ids) < max_tokens:
                answer.finish_reason = "stop"
    finally:
        job.cancel()
        answer.text = emitted


# ---------------------------------------------------------------- HTTP


def create_app(backend, api_key=None, max_queue=None, max_body_bytes=DEFAULT_MAX_BODY_BYTES):
    """The FastAPI app; `backend` as described in the module docstring. max_queue overrides the
    backend's own bound (if it has one)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
    from pydantic import BaseModel, ConfigDict, Field, ValidationError

    from slm.serve_page import PAGE

    if max_queue is not None:
        backend.max_queue = max_queue

    class Message(BaseModel):
        model_config = ConfigDict(extra="allow")
        role: str
        content: str | list | None = None

    class ChatRequest(BaseModel):
        model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use (n=1, user, ...)
        model: str
        messages: list[Message] = Field(min_length=1)
        max_tokens: int | None = Field(default=None, ge=1)
        max_completion_tokens: int | None = Field(default=None, ge=1)
        temperature: float = Field(default=1.0, ge=0, le=2)
        top_p: float = Field(default=1.0, gt=0, le=1)
        stop: str | list[str] | None = None
        stream: bool = False
        ignore_eos: bool = False  # vLLM's extension: always produce max_tokens (for load tests)

    app = FastAPI(title="fine-tuned model", docs_url=None, redoc_url=None, openapi_url=None)

    def error_response(error):
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if isinstance(error, QueueFull) else None
        body = {"error": {"message": error.message, "type": error.type, "code": error.code}}
        return JSONResponse(body, status_code=error.status, headers=headers)

    @app.exception_handler(ApiError)
    async def on_api_error(request, error):
        return error_response(error)

    @app.exception_handler(Exception)
    async def on_any_error(request, error):  # never a bare 500 page, never a dead server
        return error_response(ApiError(f"internal error: {type(error).__name__}: {error}", "internal_error"))

    def check_key(request):
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise Unauthorized("missing or wrong API key: send the header `Authorization: Bearer <key>`")

    async def read_body(request):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            raise BodyTooLarge(f"request body over {max_body_bytes} bytes")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                raise BodyTooLarge(f"request body over {max_body_bytes} bytes")
        return body

    def parse(body):
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BadRequest(f"the body is not valid JSON: {error}", "invalid_json") from None
        try:
            return ChatRequest.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise BadRequest(f"{where}: {first['msg']}", "invalid_value") from None

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return PAGE

    @app.get("/v1/models")
    async def models(request: Request):
        check_key(request)
        created = int(time.time())
        data = [{"id": m, "object": "model", "created": created, "owned_by": "local"} for m in backend.models()]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        check_key(request)
        chat = parse(await read_body(request))
        messages = [m.model_dump() for m in chat.messages]
        ids = backend.prompt_ids(chat.model, messages)
        room = backend.context_length - len(ids)
        requested = chat.max_completion_tokens or chat.max_tokens or backend.default_max_tokens
        max_tokens = min(requested, room)
        stop = [chat.stop] if isinstance(chat.stop, str) else [s for s in (chat.stop or []) if s]
        job = backend.submit(chat.model, ids, max_tokens, chat.temperature, chat.top_p, chat.ignore_eos)
        one_line = backend.stop_at_newline and not chat.ignore_eos  # ignore_eos: exactly max_tokens tokens
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        def usage(answer):
            return {
                "prompt_tokens": len(ids),
                "completion_tokens": answer.completion_tokens,
                "total_tokens": len(ids) + answer.completion_tokens,
            }

        if not chat.stream:
            answer = Answer()
            async for _ in text_pieces(backend, job, max_tokens, stop, answer, one_line):
                pass
            return {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": chat.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer.text},
                        "finish_reason": answer.finish_reason,
                    }
                ],
                "usage": usage(answer),
            }

        def chunk(delta, finish_reason=None, **extra):
            body = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": chat.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
                **extra,
            }
            return f"data: {json.dumps(body)}\n\n"

        async def events():
            answer = Answer()
            try:
                yield chunk({"role": "assistant", "content": ""})
                async for piece in text_pieces(backend, job, max_tokens, stop, answer, one_line):
                    yield chunk({"content": piece})
                yield chunk({}, answer.finish_reason, usage=usage(answer))
            except ApiError as error:
                failure = {"error": {"message": error.message, "type": error.type, "code": error.code}}
                yield f"data: {json.dumps(failure)}\n\n"
            finally:
                job.cancel()  # the client left or the answer is complete: stop forwarding tokens
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    return app


# ---------------------------------------------------------------- command line


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
    model_dir = project.onnx_model_dir(args.model)
    model_id = project.config_path.resolve().parents[1].name  # the project folder
    options = {"system_prompt": project.system_prompt, "max_queue": args.max_queue, "device": args.device}
    adapters = served_adapters(args, project, model_id)
    if adapters:
        return AdapterBackend(model_dir, model_id, project.task, adapters, **options)
    return EngineBackend(model_dir, model_id, project.task, **options)


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

    app = create_app(backend, api_key=api_key)
    url = f"http://{args.host}:{args.port}"
    print(f"Serving {', '.join(backend.models())} on {url}/v1 (web chat: {url}/)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0

"""The server's backends: what the HTTP layer (slm.serve.app) asks of a model, and its implementations
on onnxruntime-genai.

`EngineBackend` runs og.Engine / og.Request batching, one engine thread per model (its load figures:
"Serving" in docs/measurements.md of the phi3-olive-e2e template). `AdapterBackend` serves an adapter
export: one model id per LoRA adapter (and one for the base model alone), each request on its own
og.Generator with its adapter, since og.Request has no adapter in the pinned 0.14.1. What the client sees
of a job's token stream is slm.serve.text's.
"""

import asyncio
import queue
import threading
from typing import Protocol

from slm.generation import CHAT_MAX_NEW_TOKENS, TASK_MAX_NEW_TOKENS
from slm.serve.protocol import BadRequest, GenerationFailed, PromptTooLong, QueueFull, UnknownModel, message_text

DEFAULT_MAX_QUEUE = 32  # requests waiting or running; one more gets 503


class Job:
    """One request's token stream from the engine thread to the event loop: an async iterator of token
    ids (`async for token in job`) with `cancel()` (stop forwarding)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._tokens = asyncio.Queue()
        self.cancelled = False
        self.prompt_tokens = 0

    def _put(self, item):  # called from the engine thread: a token id, an exception, or None (the end)
        self._loop.call_soon_threadsafe(self._tokens.put_nowait, item)

    def cancel(self) -> None:
        self.cancelled = True

    def __aiter__(self):
        return self

    async def __anext__(self) -> int:
        item = await self._tokens.get()
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, Exception):
            raise item
        return item


class Backend(Protocol):
    """All the HTTP layer asks of a model."""

    context_length: int  # tokens of context
    default_max_tokens: int  # when a request gives no max_tokens
    one_line: bool  # the answer is one line (a task project: prompts' one_line_answer)
    eos_ids: set[int]  # token ids that end the answer
    max_queue: int  # requests in progress before QueueFull

    def models(self) -> list[str]:
        """The model ids served."""
        ...

    def prompt_ids(self, model_id: str, messages: list[dict]) -> list[int]:
        """The prompt's token ids; raises UnknownModel (-> 404) or BadRequest (-> 400)."""
        ...

    def submit(
        self,
        model_id: str,
        prompt_ids: list[int],
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        ignore_eos: bool = False,
    ) -> Job:
        """Starts generating; raises QueueFull (-> 503)."""
        ...

    def decode(self, token_ids: list[int]) -> str: ...


class EngineBackend:
    """The project's ONNX model behind og.Engine continuous batching, driven by one thread (`start()`).

    engine          an slm.engines.OnnxEngine (its runtime, model, context length and end-of-sequence ids)
    tokenizer       the model's Hugging Face tokenizer
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

    def __init__(
        self,
        engine,
        tokenizer,
        model_id: str,
        task,
        system_prompt: str | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        self.engine, self.tokenizer = engine, tokenizer
        self._og = engine.runtime
        self.model_id = model_id
        self.task = task
        self.system_prompt = system_prompt
        self.one_line = task.one_line_answer
        self.default_max_tokens = TASK_MAX_NEW_TOKENS if self.one_line else CHAT_MAX_NEW_TOKENS
        self.max_queue = max_queue
        self.model, self.context_length = engine.model, engine.context_length
        self.eos_ids = {tokenizer.eos_token_id, *engine.eos_ids}
        self._incoming = queue.Queue()
        self._active = 0  # submitted and not finished (engine thread decrements through _lock)
        self._lock = threading.Lock()
        self._thread = None

    def start(self) -> "EngineBackend":
        """Start the generation thread; returns the backend."""
        self._thread = threading.Thread(target=self._run, name="og-engine", daemon=True)
        self._thread.start()
        return self

    # -- prompt
    def models(self) -> list[str]:
        return [self.model_id]

    def prompt_ids(self, model_id: str, messages: list[dict]) -> list[int]:
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

    def decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode([t for t in token_ids if t not in self.eos_ids])

    # -- generation
    def submit(
        self,
        model_id: str,
        prompt_ids: list[int],
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        ignore_eos: bool = False,
    ) -> Job:
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
        import numpy as np

        og = self._og
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
    file (None: the base model alone), each loaded into the engine here. Every request gets its own
    og.Generator with its adapter, and the requests in flight advance one token each in turn, so every
    client streams at once (no batching: og.Engine's requests take no adapter in onnxruntime-genai
    0.14.1). A cancelled request stops at once."""

    def __init__(self, engine, tokenizer, model_id: str, task, adapters: dict, **options) -> None:
        super().__init__(engine, tokenizer, model_id, task, **options)
        self.adapters = dict(adapters)
        for name, path in self.adapters.items():
            if path is not None:
                engine.load_adapter(name, path)

    def models(self) -> list[str]:
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

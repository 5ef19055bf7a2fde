"""The server's engine loop and answer text, with stand-ins for onnxruntime-genai (no model needed)."""

import asyncio
import types

from slm.generation import TextGenerator
from slm.serve.backends import EngineBackend
from slm.serve.protocol import GenerationFailed
from slm.serve.text import text_pieces

NOT_READY = "Expected at least one request to be ready, but none were found."


class FakeRequest:
    def __init__(self, tokens, done_after_step):
        self.pending, self.done_after_step, self.steps = list(tokens), done_after_step, 0

    def give_token(self):
        self.steps += 1
        self.unseen = [self.pending.pop(0)] if self.pending else []

    def has_unseen_tokens(self):
        return bool(getattr(self, "unseen", []))

    def get_unseen_token(self):
        return self.unseen.pop(0)

    def is_done(self):
        return self.steps >= self.done_after_step


class FakeEngine:
    """step() gives every request a token, then raises `error` if set (as og.Engine 0.14 can)."""

    def __init__(self, requests, error=None, moves=True):
        self.requests, self.error, self.moves, self.removed = requests, error, moves, []

    def step(self):
        if self.moves:
            for request in self.requests:
                request.give_token()
        if self.error:
            raise RuntimeError(self.error)

    def remove_request(self, request):
        self.removed.append(request)


class FakeJob:
    def __init__(self):
        self.items, self.cancelled = [], False

    def _put(self, item):
        self.items.append(item)


def onnx_engine(runtime):
    """What EngineBackend reads of an slm.engines.OnnxEngine."""
    return types.SimpleNamespace(runtime=runtime, model=None, context_length=64, eos_ids=set())


COLUMNS_TASK = types.SimpleNamespace(data_format="columns", one_line_answer=True)
TOKENIZER = types.SimpleNamespace(eos_token_id=0)


def backend_with(engine_factory):
    runtime = types.SimpleNamespace(Engine=lambda model: engine_factory())
    backend = EngineBackend(onnx_engine(runtime), TOKENIZER, "tone", COLUMNS_TASK)
    backend._active = 2
    return backend


def test_a_step_that_finishes_a_request_and_raises_not_ready_keeps_serving():
    finishing, running = FakeRequest([7], done_after_step=1), FakeRequest([8, 9], done_after_step=2)
    engine = FakeEngine([finishing, running], error=NOT_READY)
    backend = backend_with(lambda: None)
    jobs = {1: (finishing, FakeJob()), 2: (running, FakeJob())}
    finishing_job, running_job = jobs[1][1], jobs[2][1]
    assert backend._step(engine, jobs) is engine  # no fresh engine: nothing was lost
    assert finishing_job.items == [7, None]  # its token, then the end of its stream
    assert running_job.items == [8] and list(jobs) == [2]
    assert engine.removed == [finishing] and backend._active == 1


def test_a_step_that_moves_nothing_fails_the_requests_in_flight_and_starts_a_fresh_engine():
    stuck = FakeRequest([], done_after_step=99)
    engine = FakeEngine([stuck], error="out of memory", moves=False)
    fresh = object()
    backend = backend_with(lambda: fresh)
    job = FakeJob()
    jobs = {1: (stuck, job)}
    assert backend._step(engine, jobs) is fresh
    assert jobs == {} and isinstance(job.items[0], GenerationFailed)
    assert job.items[0].status == 500 and "out of memory" in job.items[0].message


class TokenJob:
    def __init__(self, tokens):
        self.tokens = tokens

    def cancel(self):
        pass

    async def _stream(self):
        for token in self.tokens:
            yield token

    def __aiter__(self):
        return self._stream()


TEXT = {1: " joy", 2: " ", 3: "\n", 4: "more"}
EOS = 0
TASK_BACKEND = types.SimpleNamespace(
    eos_ids={EOS}, one_line=True, decode=lambda ids: "".join(TEXT[t] for t in ids if t != EOS)
)


def answer_text(tokens, stop=(), backend=TASK_BACKEND):
    async def collect():
        return "".join([piece async for piece in text_pieces(backend, TokenJob(tokens), 8, stop)])

    return asyncio.run(collect())


def test_a_task_answer_is_the_label_alone_as_infer_prints_it():
    assert answer_text([1, 2, EOS]) == "joy"  # no trailing space before the end of sequence
    assert answer_text([1, 2, 3, 4]) == "joy"  # the first line only
    assert answer_text([1, 2, 4]) == "joy more"  # inner spaces are kept once more text follows


class ScriptedEngine:
    """generate_ids yields the given token ids, as an slm.engines engine does."""

    def __init__(self, tokens):
        self.tokens, self.eos_ids = tokens, {EOS}

    def generate_ids(self, prompt_ids, max_new_tokens, **extra):
        yield from self.tokens[:max_new_tokens]


class ScriptedTokenizer:
    eos_token_id = EOS

    def __call__(self, prompt, add_special_tokens):
        return {"input_ids": [5]}

    def decode(self, ids):
        return TASK_BACKEND.decode(ids)


def infer_text(tokens, one_line=True):
    generator = TextGenerator(ScriptedEngine(tokens), ScriptedTokenizer())
    pieces = list(generator.stream("prompt", 8, one_line=one_line))
    return "".join(pieces)


def test_text_held_back_for_a_stop_string_is_sent_when_the_answer_ends():
    chat = types.SimpleNamespace(**{**vars(TASK_BACKEND), "one_line": False})
    assert answer_text([1, EOS], stop=["xyz"], backend=chat) == " joy"
    assert answer_text([1, 2, 4], stop=["xyz"], backend=chat) == " joy more"  # out of tokens
    assert answer_text([1, 4, EOS], stop=["mo"], backend=chat) == " joy"  # the stop string is not sent


def test_infer_and_the_server_answer_alike():
    for tokens in ([1, 2, EOS], [1, 2, 3, 4], [1, 2, 4], [2, 1, 4]):
        assert infer_text(tokens) == answer_text(tokens)
    assert infer_text([1, 3, 4], one_line=False) == " joy\nmore"  # a chat answer is every line

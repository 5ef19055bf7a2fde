"""The generation layer: user input or a data row turned into the prompt the model was trained on, and the
model's answer turned into text, by the one answer rule (prompts: a task answer is one line). infer.py,
the export search's evaluator (olive_eval) and the measurement scripts call it with explicit parameters.
"""

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from slm.errors import UserError
from slm.prompts import ChatTask

# default answer lengths: a task answer is one short line, a chat answer a few paragraphs
TASK_MAX_NEW_TOKENS = 16
CHAT_MAX_NEW_TOKENS = 256


@dataclass
class Generation:
    text: str = ""
    token_ids: list = field(default_factory=list)
    first_token_seconds: float = 0.0
    total_seconds: float = 0.0


class AnswerText:
    """The one rule for what of the decoded text is the answer, as it grows token by token (infer.py,
    serve.py and benchmark.py all use it): the answer stops at a stop string, and a one-line answer (a
    task project) is the first line of what the model wrote, stripped.

    Give `piece()` the whole decoded text after each token: it returns the new text that is safe to
    show (a tail that may begin a stop string, a partial character and, for one line, trailing spaces
    wait for more text) and sets `ended` once the answer has stopped. When the tokens run out first,
    `last_piece()` gives the rest. `shown` is the answer so far."""

    def __init__(self, one_line: bool = False, stop: Iterable[str] = ()) -> None:
        self.one_line = one_line
        self.stop = [s for s in stop if s]
        self.shown = ""
        self.ended = False

    def piece(self, text: str) -> str:
        if self.one_line:
            text = text.lstrip()
        cut = len(text)
        for marker in [*self.stop, *(["\n"] if self.one_line else [])]:
            at = text.find(marker)
            if at != -1:
                cut = min(cut, at)
        if cut < len(text):
            safe, self.ended = text[:cut], True
        else:  # hold back a tail that may be the start of a stop string
            safe = text[: cut - max([len(s) - 1 for s in self.stop] + [0])]
        if safe.endswith("\ufffd"):  # a partial character
            safe = safe[:-1]
        if self.one_line:  # trailing spaces wait for more text: the label alone
            safe = safe.rstrip()
        return self._advance(safe)

    def last_piece(self, text: str) -> str:
        text = answer_line(text) if self.one_line else text
        return self._advance(text) if text.startswith(self.shown) else ""

    def _advance(self, safe):
        if len(safe) <= len(self.shown):
            return ""
        piece, self.shown = safe[len(self.shown) :], safe
        return piece


def answer_line(text: str) -> str:
    """A one-line answer: the first line of what the model wrote, stripped."""
    return text.strip().split("\n")[0].strip()


class TextGenerator:
    """Streams decoded text; stops at end-of-sequence, at the end of a one-line answer, or at max_new_tokens."""

    def __init__(self, engine, tokenizer, adapter: str | None = None) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.adapter = adapter  # the engine's adapter to generate with by default (None: the model as it is)
        self.eos_ids = {tokenizer.eos_token_id} | set(getattr(engine, "eos_ids", set()))

    def encode(self, prompt: str) -> list[int]:
        # the prompt already carries its special tokens, as the training text did
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def stream(
        self,
        prompt: str,
        max_new_tokens: int,
        one_line: bool = False,
        result: Generation | None = None,
        labels: list[str] | None = None,
        adapter: str | None = None,
    ) -> Iterator[str]:
        """Yield text pieces (AnswerText's rule; `one_line`: the task's one-line answer); fill `result` (a
        Generation) with ids and timings; `labels`: answer only with one; `adapter`: generate with this
        loaded adapter instead of the default one."""
        result = result if result is not None else Generation()
        start = time.perf_counter()
        answer = AnswerText(one_line=one_line)
        extra = {"guidance_regex": label_regex(labels)} if labels else {}
        if adapter or self.adapter:
            extra["adapter"] = adapter or self.adapter
        text = ""
        for token in self.engine.generate_ids(self.encode(prompt), max_new_tokens, **extra):
            if not result.token_ids:
                result.first_token_seconds = time.perf_counter() - start
            result.token_ids.append(token)
            if token in self.eos_ids:
                break
            text = self.tokenizer.decode([t for t in result.token_ids if t not in self.eos_ids])
            piece = answer.piece(text)
            if piece:
                yield piece
            if answer.ended:
                break
        if not answer.ended:
            piece = answer.last_piece(text)
            if piece:
                yield piece
        result.text = answer.shown.strip()
        result.total_seconds = time.perf_counter() - start


# the characters Rust's regex_syntax::escape escapes: the guidance engine (llguidance) reads Rust regex
# syntax, where Python's re.escape would also escape spaces and others that Rust reads differently
RUST_REGEX_META = set("\\.+*?()|[]{}^$#&-~")


def label_regex(labels: Iterable[str]) -> str:
    """A regex matching exactly one of the labels; longest first, so no label shadows a longer one.

    Once a whole label is matched and no longer one can follow, the grammar allows only
    end-of-sequence, so generation stops by itself.
    """
    ordered = sorted(set(labels), key=lambda label: (-len(label), label))
    return (
        "(" + "|".join("".join("\\" + ch if ch in RUST_REGEX_META else ch for ch in label) for label in ordered) + ")"
    )


class Prompter:
    """Turns user input into prompts as in training, and answers into text."""

    def __init__(self, project, generator, chat=False, max_new_tokens=None, labels=None):
        self.task, self.generator, self.chat = project.task, generator, chat
        self.system_prompt = project.system_prompt
        default = CHAT_MAX_NEW_TOKENS if chat or self.task.data_format == "messages" else TASK_MAX_NEW_TOKENS
        # by default an answer may take up to a quarter of a small model's context, so a prompt still fits
        self.max_new_tokens = max_new_tokens or min(default, generator.engine.context_length // 4)
        self.one_line = not chat and self.task.one_line_answer
        self.labels = labels
        self.history = []  # earlier chat turns, so a conversation has memory

    def prompt_for(self, text, history=()):
        tokenizer = self.generator.tokenizer
        if self.chat:
            messages = [*history, {"role": "user", "content": text}]
            # a chat project's own chat template (the config's), else the model's
            chat = self.task if isinstance(self.task, ChatTask) else ChatTask()
            return chat.prompt_for_messages(messages, tokenizer)
        return self.task.prompt_for_input(text, tokenizer, self.system_prompt)

    def tokens_over(self, prompt):
        """How far the prompt plus a full answer runs past the model's context (0: it fits)."""
        needed = len(self.generator.encode(prompt)) + self.max_new_tokens
        return max(0, needed - self.generator.engine.context_length)

    def check_fits(self, prompt):
        overflow = self.tokens_over(prompt)
        if overflow:
            raise UserError(
                f"the input is {overflow} tokens too long for the model's context of "
                f"{self.generator.engine.context_length} tokens with {self.max_new_tokens} new tokens; "
                "shorten it or lower --max-new-tokens"
            )
        return prompt

    def fitted_prompt(self, text):
        """The prompt for `text`; in a chat, the conversation so far, oldest turns dropped until the answer fits."""
        prompt = self.prompt_for(text, self.history)
        while self.history and self.tokens_over(prompt):
            del self.history[:2]  # one user turn and its answer
            prompt = self.prompt_for(text, self.history)
        return self.check_fits(prompt)

    def stream_prompt(self, prompt, result=None):
        return self.generator.stream(
            prompt, self.max_new_tokens, one_line=self.one_line, result=result, labels=self.labels
        )

    def stream(self, text):
        """Stream one answer; in a chat the exchange is remembered for the next turn."""
        result = Generation()
        yield from self.stream_prompt(self.fitted_prompt(text), result)
        if self.chat:
            self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": result.text}]

    def answer_row(self, row):
        prompt = self.check_fits(self.task.prompt_for_row(row, self.generator.tokenizer))
        result = Generation()
        for _ in self.stream_prompt(prompt, result):
            pass
        return result.text

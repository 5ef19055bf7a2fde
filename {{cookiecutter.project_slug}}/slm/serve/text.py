"""A job's token stream turned into the text the client sees (slm.generation's AnswerText rule: stop strings,
one-line answers), shared by the streamed and the non-streamed route so both give the same answer.
"""

from collections.abc import AsyncIterator, Iterable

from slm.generation import AnswerText
from slm.serve.backends import Backend, Job


class Answer:
    """What text_pieces produced, for usage and finish_reason."""

    def __init__(self) -> None:
        self.completion_tokens = 0
        self.finish_reason = "length"
        self.text = ""


async def text_pieces(
    backend: Backend,
    job: Job,
    max_tokens: int,
    stop: Iterable[str] = (),
    answer: Answer | None = None,
    one_line: bool | None = None,
) -> AsyncIterator[str]:
    """Yield the answer's text as it grows; stops at end of sequence, a stop string, or, for a task
    project (one_line, default backend.one_line), the end of the answer's first line (stripped,
    as infer.py prints it)."""
    answer = answer if answer is not None else Answer()
    one_line = backend.one_line if one_line is None else one_line
    text = AnswerText(one_line, stop)
    ids = []
    try:
        async for token in job:
            ids.append(token)
            answer.completion_tokens = len(ids)
            if token in backend.eos_ids:
                answer.finish_reason = "stop"
                break
            piece = text.piece(backend.decode(ids))
            if piece:
                yield piece
            if text.ended:
                answer.finish_reason = "stop"
                break
        else:
            if len(ids) < max_tokens:
                answer.finish_reason = "stop"
        if not text.ended:  # the text held back for a stop string that never came
            piece = text.last_piece(backend.decode(ids))
            if piece:
                yield piece
    finally:
        job.cancel()
        answer.text = text.shown

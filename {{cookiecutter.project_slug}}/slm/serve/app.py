"""The server's HTTP layer: the FastAPI app, its routes and its API-key check.

Routes: GET /v1/models, POST /v1/chat/completions (stream or not), GET / (web chat). The app talks
only to a backend (slm.serve.backends.Backend); the request models and errors are slm.serve.protocol's.
"""

import hmac
import json
import time
import uuid

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import ValidationError

from slm.serve.backends import Backend
from slm.serve.page import PAGE
from slm.serve.protocol import ApiError, BadRequest, BodyTooLarge, ChatRequest, QueueFull, Unauthorized
from slm.serve.text import Answer, text_pieces

DEFAULT_MAX_BODY_BYTES = 1_000_000
RETRY_AFTER_SECONDS = 2


def error_response(error: ApiError) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if isinstance(error, QueueFull) else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def key_check(api_key: str | None):
    """A FastAPI dependency that refuses a request without `Authorization: Bearer <api_key>` (none: all pass)."""

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise Unauthorized("missing or wrong API key: send the header `Authorization: Bearer <key>`")

    return check_key


async def read_body(request: Request, max_body_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_body_bytes:
        raise BodyTooLarge(f"request body over {max_body_bytes} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body_bytes:
            raise BodyTooLarge(f"request body over {max_body_bytes} bytes")
    return body


def parse_chat(body: bytes) -> ChatRequest:
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


def create_app(
    backend: Backend,
    api_key: str | None = None,
    max_queue: int | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The FastAPI app on `backend`. max_queue overrides the backend's own bound (if it has one)."""
    if max_queue is not None:
        backend.max_queue = max_queue

    app = FastAPI(title="fine-tuned model", docs_url=None, redoc_url=None, openapi_url=None)
    authorised = [Depends(key_check(api_key))]

    @app.exception_handler(ApiError)
    async def on_api_error(request, error):
        return error_response(error)

    @app.exception_handler(Exception)
    async def on_any_error(request, error):  # never a bare 500 page, never a dead server
        return error_response(ApiError(f"internal error: {type(error).__name__}: {error}", "internal_error"))

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return PAGE

    @app.get("/v1/models", dependencies=authorised)
    async def models():
        created = int(time.time())
        data = [{"id": m, "object": "model", "created": created, "owned_by": "local"} for m in backend.models()]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", dependencies=authorised)
    async def chat_completions(request: Request):
        chat = parse_chat(await read_body(request, max_body_bytes))
        return await complete(backend, chat)

    return app


async def complete(backend: Backend, chat: ChatRequest):
    """One chat completion: the whole answer, or its stream of server-sent events."""
    messages = [m.model_dump() for m in chat.messages]
    ids = backend.prompt_ids(chat.model, messages)
    room = backend.context_length - len(ids)
    requested = chat.max_completion_tokens or chat.max_tokens or backend.default_max_tokens
    max_tokens = min(requested, room)
    stop = chat.stop_strings()
    job = backend.submit(chat.model, ids, max_tokens, chat.temperature, chat.top_p, chat.ignore_eos)
    one_line = backend.one_line and not chat.ignore_eos  # ignore_eos: exactly max_tokens tokens
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
            yield f"data: {json.dumps(error.body())}\n\n"
        finally:
            job.cancel()  # the client left or the answer is complete: stop forwarding tokens
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

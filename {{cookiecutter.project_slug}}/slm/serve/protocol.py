"""The server's wire protocol: OpenAI's chat-completions request models and its error shape.

Every error the server answers is an ApiError, sent as {"error": {"message", "type", "code"}} with
its HTTP status; the backends raise the ones a request can cause (UnknownModel, BadRequest,
PromptTooLong, QueueFull, GenerationFailed).
"""

from pydantic import BaseModel, ConfigDict, Field


class ApiError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "code"}}."""

    status, type, code = 400, "invalid_request_error", None

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "code": self.code}}


class BadRequest(ApiError):
    status, code = 400, "invalid_value"


class PromptTooLong(BadRequest):
    code = "context_length_exceeded"

    def __init__(self, overflow: int, prompt_tokens: int, context_length: int) -> None:
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

    def __init__(self, model: str, known: list[str]) -> None:
        super().__init__(f"model {model!r} does not exist; this server has: {', '.join(known)}")


class Unauthorized(ApiError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class QueueFull(ApiError):
    status, type, code = 503, "server_error", "queue_full"


class BodyTooLarge(ApiError):
    status, code = 413, "body_too_large"


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

    def stop_strings(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else [s for s in (self.stop or []) if s]


def message_text(message: dict) -> str:
    """An OpenAI message's content as text (a string, or a list of {"type": "text"} parts)."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""

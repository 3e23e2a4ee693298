"""The one error hierarchy of Hangar.

Every error carries a stable ``code`` that clients may match on, a message that
says what was wrong and where, a ``hint`` that says what to do, and the HTTP
status the gateway answers with. The gateway and the CLI render these in one
place each; nothing else decides how an error looks.
"""

from __future__ import annotations

from typing import Any, ClassVar

MAX_MESSAGE = 2000
"""Longer messages are cut: a message may quote what a client sent, and a client
must not be able to make an answer larger than its question."""


def shown(value: Any, limit: int = 80) -> str:
    """A value a client sent, as a message quotes it: its ``repr`` for strings and
    numbers, its type for anything else (a structure may be enormous), at most
    ``limit`` characters."""
    if isinstance(value, str | int | float | bool) or value is None:
        text = repr(value)
    else:
        text = f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


class HangarError(Exception):
    """Base of every error Hangar raises on purpose."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details: dict[str, Any] = dict(details or {})

    def to_dict(self) -> dict[str, Any]:
        """The JSON body every HTTP error carries: ``{"error": {...}}``."""
        details = dict(self.details)
        if self.hint:
            details.setdefault("hint", self.hint)
        return {"error": {"code": self.code, "message": self.message, "details": details}}


# --- the client's mistakes (4xx) ---------------------------------------------------------


class ClientError(HangarError):
    """The request was wrong; repeating it unchanged fails the same way."""

    code = "bad_request"
    status = 400


class InvalidSpecError(ClientError):
    """A resource document does not match its schema."""

    code = "invalid_spec"
    status = 422


class InvalidYamlError(InvalidSpecError):
    """A file is not parseable YAML."""

    code = "invalid_yaml"


class UnknownKindError(InvalidSpecError):
    code = "unknown_kind"


class InvalidRequestError(ClientError):
    """A request body or parameter is malformed."""

    code = "invalid_request"
    status = 422


class AuthenticationError(ClientError):
    code = "unauthenticated"
    status = 401


class InvalidSignatureError(AuthenticationError):
    """A webhook request whose signature does not match its body and the secret."""

    code = "invalid_signature"


class PermissionDeniedError(ClientError):
    code = "permission_denied"
    status = 403


class NamespaceMismatchError(PermissionDeniedError):
    code = "namespace_mismatch"


class AdmissionDeniedError(PermissionDeniedError):
    """A resource asks for host-level power its namespace was not granted."""

    code = "admission_denied"


class PayloadTooLargeError(ClientError):
    """A request body over the route's limit: refused before it is read."""

    code = "payload_too_large"
    status = 413


class RateLimitedError(ClientError):
    """Too many requests from one key; ``details.retry_after`` says when to try again."""

    code = "rate_limited"
    status = 429
    retryable = True


class NotFoundError(ClientError):
    code = "not_found"
    status = 404


class ResourceNotFoundError(NotFoundError):
    code = "resource_not_found"


class AgentNotFoundError(ResourceNotFoundError):
    code = "agent_not_found"


class ModelNotFoundError(ResourceNotFoundError):
    code = "model_not_found"


class IngestionNotFoundError(ResourceNotFoundError):
    code = "ingestion_not_found"


class KnowledgeBaseNotFoundError(ResourceNotFoundError):
    code = "knowledge_base_not_found"


class RunNotFoundError(NotFoundError):
    code = "run_not_found"


class SessionNotFoundError(NotFoundError):
    code = "session_not_found"


class MemoryNotFoundError(NotFoundError):
    code = "memory_not_found"


class KeyNotFoundError(NotFoundError):
    code = "key_not_found"


class BatchNotFoundError(NotFoundError):
    code = "batch_not_found"


class ConflictError(ClientError):
    code = "conflict"
    status = 409


class SessionBusyError(ConflictError):
    """A session's turns take turns: one run at a time, each seeing the last one's answer."""

    code = "session_busy"


class UserBusyError(ConflictError):
    """An end user cannot be forgotten while one of their runs is still active."""

    code = "user_busy"


class RunNotActiveError(ConflictError):
    code = "run_not_active"


class RunWaitingApprovalError(ConflictError):
    """A run that an API without a notion of approvals cannot answer yet."""

    code = "run_waiting_approval"


class BudgetExceededError(ClientError):
    """A Budget of the namespace or agent is used up for its period."""

    code = "budget_exceeded"
    status = 429


class DocumentError(ClientError):
    """A file that cannot be ingested: empty, binary, corrupt or too large. Ingestion
    records it against that file and goes on with the others."""

    code = "unreadable_document"
    status = 422


class DocumentTooLargeError(DocumentError):
    code = "document_too_large"
    status = 413


class SandboxNotFoundError(NotFoundError):
    code = "sandbox_not_found"


class SandboxFileError(ClientError):
    """A workspace file operation was refused or failed (``details.status`` says which)."""

    code = "sandbox_file_error"
    status = 422


class SandboxDeadError(ConflictError):
    """The sandbox is no longer running; start a new one."""

    code = "sandbox_dead"


class BackendUnavailableError(ClientError):
    """A template or request names a sandbox backend this host cannot run."""

    code = "backend_unavailable"
    status = 422


class SandboxLimitError(ClientError):
    """A namespace holds as many live sandboxes as its ceiling allows."""

    code = "sandbox_limit"
    status = 429


# --- failures of what Hangar depends on ---------------------------------------------------


class ConfigurationError(HangarError):
    """Hangar or a resource is configured in a way that cannot work."""

    code = "configuration_error"
    status = 500


class SecretNotFoundError(ConfigurationError):
    """A resource references a Secret, or a key of one, that does not exist."""

    code = "secret_not_found"
    status = 422


class ModelProviderError(HangarError):
    """A model provider failed or answered something unusable."""

    code = "model_provider_error"
    status = 502
    retryable = True


class RunFailedError(HangarError):
    """A chat completion whose run failed for a reason other than a limit."""

    code = "run_failed"
    status = 502


class ToolError(HangarError):
    """A tool call failed; the agent loop shows this to the model as the result."""

    code = "tool_error"
    status = 500


class ToolNotAllowedError(ToolError):
    code = "tool_not_allowed"
    status = 403


class EgressDeniedError(ToolNotAllowedError):
    """A connection a namespace caused would reach an address it may not: loopback,
    a private network, a metadata service (see ``hangar.egress``)."""

    code = "egress_denied"


class StoreError(HangarError):
    code = "store_error"
    status = 503
    retryable = True


class NotReadyError(HangarError):
    """This process cannot serve yet (starting) or now (its store does not answer)."""

    code = "not_ready"
    status = 503
    retryable = True


class LeaseLostError(StoreError):
    """A worker's run was taken over by another worker after its lease ran out."""

    code = "lease_lost"
    retryable = False


class StatementError(HangarError):
    """A named SQL statement (``hangar.store.named_sql``) is missing, includes itself or
    is given other parameters than it takes: a fault in Hangar's code, found when the
    statement is first used."""

    code = "internal_error"


class RemoteError(HangarError):
    """An error the server answered with; carries the server's code and status."""

    def __init__(self, code: str, message: str, status: int, details: dict[str, Any]) -> None:
        super().__init__(message, hint=details.get("hint"), details=details)
        self.remote_code = code
        self.remote_status = status


class RunCancelled(Exception):
    """Raised inside the loop when a cancel request is seen between steps."""

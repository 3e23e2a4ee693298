"""A Model's limits in this process: calls in flight, requests and tokens a minute, and
the pause a provider asks for when it answers 429.

A run waiting on its model costs only its task, so a process holds thousands of them;
what must not go to the provider all at once is their calls. ``LimitedModel`` wraps
any ``ChatModel`` with its ``ModelGate``: a call past a limit waits in line (first come,
first served) instead of failing at the provider, and tells whoever listens for the
running task why it waits (``reporting_waits``: the runtime records a ``model_waiting``
event and counts it). A provider's 429 pauses every call to the Model, not just the
one that met it, as long as the provider asks (``Retry-After``), and the call is made
again; only a call that has waited ``rateLimitWaitSeconds`` in all fails.

Past a limit, new runs are not started at all: a gate that is ``saturated`` (its calls
would wait) holds the runs of the agents using it in the queue (``queued``, visible as
such), and tells the runtime when it has room again (``on_free``). A run claimed for a
gate counts against it as ``expected`` until its first call comes (``expecting``), so
a burst of claims does not outrun the calls it will make.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal, Protocol

import httpx2

from hangar.egress import first_denial
from hangar.errors import ModelProviderError
from hangar.models.base import ChatModel, estimate_request_tokens
from hangar.models.messages import Finish, ModelRequest, StreamEvent
from hangar.spec.model import ModelLimits

WaitReason = Literal["rate_limited", "max_concurrency", "requests_per_minute", "tokens_per_minute"]
WAIT_REASONS: tuple[WaitReason, ...] = (
    "rate_limited",
    "max_concurrency",
    "requests_per_minute",
    "tokens_per_minute",
)
RETRY_AFTER_MAX_SECONDS = 600.0
"""A provider's Retry-After longer than this is taken as this (a clock skewed by an
hour must not stop a Model for an hour)."""
BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
"""Pauses after 429s that did not say how long, one after another (the last repeats)."""


@dataclass(frozen=True)
class ModelWait:
    """A call to ``model`` waits, for ``reason``; ``seconds``: how long, when known."""

    model: str
    reason: WaitReason
    seconds: float | None = None


OnWait = Callable[[ModelWait], Awaitable[None]]
_listener: ContextVar[OnWait | None] = ContextVar("hangar_model_waits", default=None)
_expected: ContextVar[Expected | None] = ContextVar("hangar_model_expected", default=None)


@contextlib.contextmanager
def reporting_waits(listener: OnWait) -> Iterator[None]:
    """Tell ``listener`` of each wait of a model call made by this task (and the tasks
    it starts) within the block: a run's executor records them as the run's events.
    A context variable, as model calls come from the loop and from context building
    (summaries, facts) alike, through the ``ChatModel`` protocol, which has no room
    for it."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


class Expected:
    """A run claimed for ``gate`` whose first call to it has not come yet: it counts
    against the gate's room (``ModelGate.expected``) until then, or until its run ends
    without calling."""

    def __init__(self, gate: ModelGate) -> None:
        self.gate = gate
        self.done = False
        gate.expected += 1

    def come(self, *, in_line: bool = False) -> None:
        """Its first call came (``in_line``: the gate counts that call from now on), or
        its run ended without one (its place is given back)."""
        if self.done:
            return
        self.done = True
        self.gate.expected -= 1
        if not in_line:
            self.gate.freed()


@contextlib.contextmanager
def expecting(expected: Expected | None) -> Iterator[None]:
    """Within the block (a run's execution), the first call to ``expected``'s gate
    settles it; leaving the block settles it if none came."""
    token = _expected.set(expected)
    try:
        yield
    finally:
        _expected.reset(token)
        if expected is not None:
            expected.come()


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """The pause a 429 asks for, in seconds (``retry-after-ms``, ``retry-after`` as
    seconds or an HTTP date), or None when it names none."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            return min(max(float(lowered["retry-after-ms"]) / 1000, 0.0), RETRY_AFTER_MAX_SECONDS)
        if "retry-after" in lowered:
            raw = lowered["retry-after"].strip()
            try:
                seconds = float(raw)
            except ValueError:
                when = email.utils.parsedate_to_datetime(raw)
                seconds = when.timestamp() - time.time()
            return min(max(seconds, 0.0), RETRY_AFTER_MAX_SECONDS)
    except (TypeError, ValueError, OverflowError):
        return None
    return None


class StatusError(Protocol):
    """What the openai and anthropic SDKs' ``APIStatusError`` both carry."""

    status_code: int
    message: str

    @property
    def response(self) -> httpx2.Response: ...


def answered_error(name: str, model: str, error: StatusError, hint: str) -> ModelProviderError:
    """A provider SDK's HTTP error as Hangar's: a 429 carries the pause it asked for,
    for ``LimitedModel`` to wait out."""
    status = error.status_code
    details: dict[str, object] = {"status": status}
    if status == 429:
        details["retry_after"] = retry_after(error.response.headers)
        hint = "the provider is rate-limiting: set the Model's limits to stay under it"
    return ModelProviderError(
        f"model {name!r}: {model} answered HTTP {status}: {error.message}",
        hint=hint,
        details=details,
    )


def denied_error(name: str, exc: BaseException) -> ModelProviderError | None:
    """The egress refusal behind a transport error, said as the Model's (None: the
    error was something else)."""
    denied = first_denial(exc)
    if denied is None:
        return None
    return ModelProviderError(f"model {name!r}: {denied.message}", hint=denied.hint)


class _Bucket:
    """A token bucket of ``per_minute``, full at first. ``reserve`` takes at once and
    answers how long the caller must wait for what it took (the level may go below
    zero): callers are served in the order they came, with no herd of sleepers
    rechecking, and a call larger than the bucket is served after the bucket's time."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.level = self.capacity
        self.at = clock()

    def reserve(self, amount: float) -> float:
        self._fill()
        self.level -= amount
        return 0.0 if self.level >= 0 else -self.level / self.rate

    def available(self) -> float:
        self._fill()
        return self.level

    def give_back(self, amount: float) -> None:
        self._fill()
        self.level = min(self.capacity, self.level + amount)

    def _fill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.at) * self.rate)
        self.at = now


class ModelGate:
    """One Model's limits in this process (one per Model generation: ``ModelCache``
    keeps them with the model). ``waiting`` counts the calls waiting now, by reason,
    for ``/metrics``."""

    def __init__(
        self,
        name: str,
        limits: ModelLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_free: Callable[[ModelGate], None] | None = None,
    ) -> None:
        self.name = name
        self.limits = limits
        self.clock = clock
        self.sleep = sleep
        self.waiting: Counter[WaitReason] = Counter()
        self.paused_until = 0.0
        """Until when (``clock``) the provider asked every call to wait."""
        self.in_flight = 0
        """Calls admitted and not ended."""
        self.expected = 0
        """Runs claimed for this gate whose first call has not come (``Expected``)."""
        self.on_free = on_free
        """Told when a call or an expected run leaves the gate with room for more."""
        self._slots = (
            None if limits.max_concurrency is None else asyncio.Semaphore(limits.max_concurrency)
        )
        self._requests = (
            None
            if limits.requests_per_minute is None
            else _Bucket(limits.requests_per_minute, clock)
        )
        self._tokens = (
            None if limits.tokens_per_minute is None else _Bucket(limits.tokens_per_minute, clock)
        )

    @property
    def limited(self) -> bool:
        """Whether the Model sets any limit of its own (a 429's pause aside)."""
        return self._slots is not None or self._requests is not None or self._tokens is not None

    @property
    def saturated(self) -> bool:
        return self.full(0)

    def full(self, claiming: int) -> bool:
        """Whether a new run's call would wait now: the provider's pause, every slot
        taken (by calls in flight, waiting, expected from runs just claimed, or the
        runs ``claiming`` now may bring), or a minute's requests or tokens spent. The
        runtime claims no run for a full gate."""
        if self.clock() < self.paused_until:
            return True
        limit = self.limits.max_concurrency
        lined_up = self.in_flight + self.expected + self.waiting["max_concurrency"]
        if limit is not None and lined_up + claiming >= limit:
            return True
        if self._requests is not None and self._requests.available() < 1:
            return True
        return self._tokens is not None and self._tokens.available() <= 0

    def freed(self) -> None:
        """A place was given back: tell ``on_free`` if there is room now."""
        if self.on_free is not None and not self.saturated:
            self.on_free(self)

    @contextlib.asynccontextmanager
    async def admitted(self, request: ModelRequest) -> AsyncIterator[_Admission]:
        """Wait, in line, until the call may start; hold its place among the calls in
        flight until the block ends. The caller reports the call's usage
        (``_Admission.used``) so the tokens a minute are settled."""
        expected = _expected.get()
        if expected is not None and expected.gate is self:
            expected.come(in_line=True)
        while self.clock() < self.paused_until:
            await self._wait("rate_limited", self.paused_until - self.clock())
        if self._slots is not None:
            if self._slots.locked():
                async with self._counted("max_concurrency", None):
                    await self._slots.acquire()
            else:
                await self._slots.acquire()
        admission = _Admission(estimate_request_tokens(request) if self._tokens else 0)
        self.in_flight += 1
        try:
            if self._requests is not None:
                admission.requests = 1
                await self._wait("requests_per_minute", self._requests.reserve(1))
            if self._tokens is not None:
                await self._wait("tokens_per_minute", self._tokens.reserve(admission.estimate))
            admission.started = True
            yield admission
        finally:
            self.in_flight -= 1
            if self._slots is not None:
                self._slots.release()
            if not admission.started:  # cancelled while waiting: its place goes back
                if self._requests is not None and admission.requests:
                    self._requests.give_back(1)
                if self._tokens is not None:
                    self._tokens.give_back(admission.estimate)
            elif self._tokens is not None and admission.actual is not None:
                self._tokens.give_back(admission.estimate - admission.actual)
            self.freed()

    def pause(self, seconds: float) -> None:
        """The provider answered 429: every call to the Model waits this long."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    async def _wait(self, reason: WaitReason, seconds: float) -> None:
        if seconds <= 0:
            return
        async with self._counted(reason, seconds):
            await self.sleep(seconds)

    @contextlib.asynccontextmanager
    async def _counted(self, reason: WaitReason, seconds: float | None) -> AsyncIterator[None]:
        listener = _listener.get()
        if listener is not None:
            await listener(ModelWait(self.name, reason, seconds))
        self.waiting[reason] += 1
        try:
            yield
        finally:
            self.waiting[reason] -= 1


@dataclass
class _Admission:
    estimate: int
    requests: int = 0
    started: bool = False
    actual: int | None = None

    def used(self, tokens: int) -> None:
        self.actual = tokens


class LimitedModel:
    """A ``ChatModel`` whose calls pass its ``ModelGate`` first, and wait out a
    provider's 429 (all calls to the Model pause together) instead of failing."""

    def __init__(self, model: ChatModel, gate: ModelGate) -> None:
        self.model = model
        self.gate = gate

    @property
    def name(self) -> str:
        return self.model.name

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        waited = 0.0
        pauses = 0
        while True:
            emitted = False
            async with self.gate.admitted(request) as admission:
                try:
                    async for event in self.model.stream(request):
                        emitted = True
                        if isinstance(event, Finish):
                            admission.used(event.usage.input_tokens + event.usage.output_tokens)
                        yield event
                    return
                except ModelProviderError as exc:
                    if exc.details.get("status") != 429 or emitted:
                        raise
                    asked = exc.details.get("retry_after")
                    pause = (
                        float(asked)
                        if isinstance(asked, int | float)
                        else BACKOFF_SECONDS[min(pauses, len(BACKOFF_SECONDS) - 1)]
                    )
                    limit = self.gate.limits.rate_limit_wait_seconds
                    if waited + pause > limit:
                        raise ModelProviderError(
                            f"model {self.name!r} is still rate-limited by its provider (HTTP "
                            f"429) after waiting {waited:.0f} s of the {limit:g} s it may",
                            hint="raise the provider's limits, or lower the Model's "
                            "limits (maxConcurrency, requestsPerMinute, tokensPerMinute) so "
                            "calls wait here rather than at the provider",
                            details={"status": 429, "waited_seconds": round(waited, 3)},
                        ) from exc
                    waited += pause
                    pauses += 1
                    self.gate.pause(pause)


__all__ = [
    "WAIT_REASONS",
    "Expected",
    "LimitedModel",
    "ModelGate",
    "ModelWait",
    "OnWait",
    "WaitReason",
    "answered_error",
    "denied_error",
    "expecting",
    "reporting_waits",
    "retry_after",
]

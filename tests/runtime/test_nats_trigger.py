"""NATS JetStream Triggers on the machine's real NATS: a message starts exactly one
run, even when NATS delivers it again; a namespace hears only its own subjects."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import nats

from hangar.config import Settings
from hangar.runtime.host import Runtime
from hangar.spec import parse_document
from tests.helpers import agent, doc, eventually, scripted_model

NATS_URL = "nats://127.0.0.1:4222"


async def test_a_nats_message_starts_exactly_one_run(tmp_path: Path) -> None:
    subject = f"test.{uuid.uuid4().hex[:8]}.orders"
    prefix = f"hangar{uuid.uuid4().hex[:6]}"
    settings = Settings(
        home=tmp_path / "home", telemetry="off", nats_url=NATS_URL, nats_subject_prefix=prefix
    )
    runtime = Runtime(settings)
    await runtime.start()
    client = await nats.connect(NATS_URL)
    stream = "HANGAR_DEFAULT_NEW_ORDER"  # the namespace's own stream for its Trigger
    js = client.jetstream()
    try:
        for document in (
            scripted_model("m", {"text": "handled"}),
            agent("orders", "m"),
            doc(
                "Trigger",
                "new-order",
                {"agent": "orders", "nats": {"subject": subject}, "input": "New order: {body}"},
            ),
        ):
            resource, problems = parse_document(document)
            assert resource is not None, problems
            await runtime.store.apply_resource("default", resource)
        triggers = runtime.triggers
        assert triggers is not None
        await eventually(lambda: ("default", "new-order") in triggers.ready, what="the consumer")

        # The tenant's subject is heard under the namespace's prefix only: the same
        # subject published bare (or under another namespace) starts nothing.
        await client.publish(subject, b'{"order": 1}')
        await client.publish(f"{prefix}.team-b.{subject}", b'{"order": 2}')
        ack = await js.publish(f"{prefix}.default.{subject}", b'{"order": 42}')
        run_id = await _one_run(runtime)
        run = await runtime.runs.wait("default", run_id, timeout=30)
        assert run.status.value == "succeeded"
        assert run.input["messages"] == [{"role": "user", "content": 'New order: {"order": 42}'}]

        # NATS delivers the same message again (its taker died before acknowledging):
        # the run it started is found, and nothing new starts.
        message = await js.get_msg(stream, ack.seq)
        redelivered = _Redelivered(stream, ack.seq, message.data or b"")
        spec = (await runtime.store.get_resource("default", "Trigger", "new-order")).spec  # type: ignore[union-attr]
        from hangar.spec.trigger import TriggerSpec

        again = await triggers.handle(
            "default", "new-order", TriggerSpec.model_validate(spec), redelivered
        )
        assert again == run_id
        assert len(await runtime.store.list_runs("default")) == 1
    finally:
        await runtime.stop()
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        await client.close()


async def _one_run(runtime: Runtime) -> str:
    for _ in range(300):
        runs = await runtime.store.list_runs("default")
        if runs:
            assert len(runs) == 1
            return runs[0].id
        await asyncio.sleep(0.05)
    raise AssertionError("no run started")


class _Meta:
    def __init__(self, stream: str, sequence: int) -> None:
        self.stream = stream
        self.sequence = type("Seq", (), {"stream": sequence})()


class _Redelivered:
    """The same message once more, as a JetStream redelivery hands it over."""

    def __init__(self, stream: str, sequence: int, data: bytes) -> None:
        self.metadata = _Meta(stream, sequence)
        self.data = data

"""NATS JetStream Triggers on the machine's real NATS: a message starts exactly one
run, even when NATS delivers it again."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import nats

from hangar.config import Settings
from hangar.runtime.host import Runtime
from hangar.spec import parse_document
from tests.helpers import agent, doc, eventually, scripted_model

NATS_URL = "nats://127.0.0.1:4222"


async def test_a_nats_message_starts_exactly_one_run(tmp_path: Path) -> None:
    subject = f"hangar.test.{uuid.uuid4().hex[:8]}.orders"
    runtime = Runtime(Settings(home=tmp_path / "home", telemetry="off", nats_url=NATS_URL))
    await runtime.start()
    client = await nats.connect(NATS_URL)
    stream = f"HANGAR_TEST_{uuid.uuid4().hex[:8]}".upper()
    js = client.jetstream()
    await js.add_stream(name=stream, subjects=[subject])
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

        ack = await js.publish(subject, b'{"order": 42}')
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
        await js.delete_stream(stream)
        await client.close()
        await runtime.stop()


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

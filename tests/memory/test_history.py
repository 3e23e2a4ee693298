"""Session memory: a session's history within the agent's token budget. All of it
while it fits; past that, the newest turns word for word and a summary of the older
ones, written once per turn that leaves the window (kept on the session and extended,
never rewritten from the start)."""

from __future__ import annotations

import json
from typing import Any

from hangar.memory.history import Turn, fit
from hangar.usage import Usage
from tests.helpers import ServerThread, agent, scripted_model


def turn(n: int, words: int = 30) -> Turn:
    said = " ".join(f"word{n}" for _ in range(words))
    return Turn(
        f"run_{n}", [{"role": "user", "content": said}, {"role": "assistant", "content": "ok"}]
    )


class Summaries:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, previous: str, conversation: str) -> tuple[str, Usage]:
        self.calls.append((previous, conversation))
        return f"summary {len(self.calls)}", Usage(input_tokens=10, output_tokens=3)


async def test_history_that_fits_is_kept_whole() -> None:
    summaries = Summaries()
    fitted = await fit([turn(1), turn(2)], 1000, None, summaries)
    assert fitted.summary is None and summaries.calls == []
    assert len(fitted.messages) == 4


async def test_older_turns_are_summarised_once_and_the_summary_extended() -> None:
    summaries = Summaries()
    turns = [turn(1), turn(2), turn(3)]  # about 40 tokens each
    fitted = await fit(turns, 100, None, summaries)
    assert fitted.fresh and fitted.summary == {"text": "summary 1", "through": "run_2", "turns": 2}
    assert fitted.messages[0]["content"].endswith("summary 1")
    assert [m["content"] for m in fitted.messages[1:]] == [turns[2].messages[0]["content"], "ok"]
    assert "word1" in summaries.calls[0][1] and "word2" in summaries.calls[0][1]
    assert fitted.usage.input_tokens == 10

    again = await fit(turns, 100, fitted.summary, summaries)  # the same window: reused
    assert not again.fresh and len(summaries.calls) == 1 and again.messages == fitted.messages

    turns.append(turn(4))  # run_3 leaves the window: only it is added to the summary
    later = await fit(turns, 100, fitted.summary, summaries)
    assert later.summary == {"text": "summary 2", "through": "run_3", "turns": 3}
    previous, conversation = summaries.calls[1]
    assert previous == "summary 1"
    assert "word3" in conversation and "word1" not in conversation


async def test_a_last_turn_over_the_budget_is_kept_whole() -> None:
    summaries = Summaries()
    fitted = await fit([turn(1, words=200)], 50, None, summaries)
    assert fitted.summary is None and len(fitted.messages) == 2


def test_a_long_session_sees_a_summary_and_its_newest_turns(server: ServerThread) -> None:
    with server.client() as api:
        api.post(
            "/v1/apply",
            json=[
                scripted_model("chat", {"text": "ok"}),
                scripted_model("summariser", {"text": "They talked about sailing."}),
                agent(
                    "sailor",
                    "chat",
                    memory={"session": {"maxTokens": 100, "model": "summariser"}},
                ),
            ],
        )
        session = api.post("/v1/sessions", json={"agent": "sailor"}).json()["id"]
        ran: list[dict[str, Any]] = []
        for n in range(1, 5):
            said = " ".join(f"sail{n}" for _ in range(30))
            ran.append(api.post(f"/v1/sessions/{session}/runs", json={"input": said}).json())
        assert all(r["status"] == "succeeded" for r in ran)

        def memory(run: dict[str, Any]) -> dict[str, Any] | None:
            items = api.get(f"/v1/runs/{run['id']}/events").json()["items"]
            return next((e["data"] for e in items if e["type"] == "memory"), None)

        def request(run: dict[str, Any]) -> dict[str, Any]:
            items = api.get(f"/v1/runs/{run['id']}/events").json()["items"]
            return next(e["data"] for e in items if e["type"] == "model_request")

        assert memory(ran[0]) is None and memory(ran[1]) is None  # it all fits
        third = memory(ran[2])
        assert third is not None
        assert third["summary"]["turns"] == 1 and third["summary"]["through"] == ran[0]["id"]
        assert third["model"] == "summariser" and third["usage"]["input_tokens"] > 0
        assert request(ran[2])["messages"] == 4  # summary, turn 2 whole, the question
        fourth = memory(ran[3])
        assert fourth is not None and fourth["summary"]["turns"] == 2
        kept = api.get(f"/v1/sessions/{session}").json()
        assert len(kept["messages"]) == 8  # the session itself still holds every turn
        usage = api.get("/v1/usage", params={"by": "model"}).json()
        assert "summariser" in json.dumps(usage)  # what summarising cost is in the ledger

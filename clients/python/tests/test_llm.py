"""Prompts against the mock provider: replies, streamed deltas, custom tools answered by the
client, threads."""

import json

from support import Testbed, llm_manifest

from ikigai import Tool


async def test_a_prompt_returns_the_models_answer(bed: Testbed) -> None:
    p = await bed.agent(manifest=llm_manifest())
    bed.script({"text": "Yes, escalate."})
    reply = await p.prompt(
        model="sonnet-4.5", messages=[{"role": "user", "content": "Should I escalate this alert?"}]
    )
    assert reply["content"] == "Yes, escalate." and reply["model"] == "sonnet-4.5"
    await p.close()


async def test_a_streamed_prompt_yields_deltas_then_the_reply(bed: Testbed) -> None:
    p = await bed.agent(manifest=llm_manifest())
    bed.script({"text": "streamed answer text"})
    stream = p.prompt(model="haiku", messages=[{"role": "user", "content": "go"}], stream=True)
    deltas = [delta async for delta in stream]
    assert deltas and "".join(deltas) == "streamed answer text"
    assert stream.reply is not None and stream.reply["content"] == "streamed answer text"
    await p.close()


async def test_a_custom_tool_call_is_answered_by_its_handler(bed: Testbed) -> None:
    p = await bed.agent(manifest=llm_manifest())
    seen = []

    async def lookup(arguments: dict[str, object]) -> dict[str, object]:
        seen.append(arguments)
        return {"severity": "high"}

    tool = Tool(
        "lookup_alert",
        lookup,
        "Looks an alert up",
        {"type": "object", "properties": {"id": {"type": "string"}}},
    )
    bed.script(
        {"tool_call": {"id": "call_1", "name": "lookup_alert", "arguments": {"id": "a1"}}},
        {"text": "It is high."},
    )
    reply = await p.prompt(
        model="sonnet", messages=[{"role": "user", "content": "check a1"}], tools={"custom": [tool]}
    )
    assert seen == [{"id": "a1"}]
    assert reply["content"] == "It is high." and reply["steps"] == 2
    await p.close()


async def test_a_thread_keeps_the_conversation(bed: Testbed) -> None:
    p = await bed.agent(manifest=llm_manifest())
    thread = await p.threads.create(context="Analyzing customer support tickets")
    bed.script({"text": "Billing."}, {"text": "High."})
    await p.prompt(
        model="sonnet",
        thread=thread.id,
        messages=[{"role": "user", "content": "Categorize this ticket..."}],
    )
    reply = await p.prompt(
        model="sonnet",
        thread=thread,
        messages=[{"role": "user", "content": "What priority did you assign?"}],
    )
    assert reply["content"] == "High." and reply["thread"] == thread.id
    await p.close()


async def test_a_tool_handler_that_raises_is_reported_to_the_model_as_an_error(
    bed: Testbed,
) -> None:
    p = await bed.agent(manifest=llm_manifest())

    def broken(arguments: dict[str, object]) -> str:
        raise ValueError("no such alert")

    bed.script(
        {"tool_call": {"id": "call_2", "name": "broken", "arguments": {}}}, {"text": "Sorry."}
    )
    reply = await p.prompt(
        model="sonnet",
        messages=[{"role": "user", "content": "try"}],
        tools={"custom": [Tool("broken", broken)]},
    )
    assert reply["content"] == "Sorry."
    assert "ValueError: no such alert" in json.dumps(bed.received())
    await p.close()

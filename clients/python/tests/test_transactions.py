"""`async with platform.transaction()`: commits on a normal exit, rolls back when it raises."""

import pytest
from support import Testbed


async def test_a_transaction_commits_its_writes_together(bed: Testbed) -> None:
    p = await bed.agent()
    async with p.transaction() as tx:
        await p.storage.put("result", {"done": True}, tx=tx)
        await p.mailbox().send({"hi": 1}, tx=tx)
    assert (await p.storage.get("result")) is not None
    assert len(await p.mailbox().receive(wait_ms=1000)) == 1
    await p.close()


async def test_a_transaction_rolls_back_when_the_block_raises(bed: Testbed) -> None:
    p = await bed.agent()
    queue = p.queue(f"tx-{p.agent}")
    await queue.push({"job": 1})
    with pytest.raises(RuntimeError):
        async with p.transaction() as tx:
            task = await queue.claim(tx=tx)
            assert task is not None
            await p.storage.put("result", 1, tx=tx)
            await p.mailbox().send("sent", tx=tx)
            await task.complete("done", tx=tx)
            raise RuntimeError("the agent fails mid-transaction")
    assert await p.storage.get("result") is None
    assert await p.mailbox().receive() == []
    again = await queue.claim()
    assert again is not None and again.attempts == 1
    await p.close()

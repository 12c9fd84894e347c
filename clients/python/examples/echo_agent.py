from ikigai.agent import run_queue

async def handle(task):
    return {"echo": task.payload}

run_queue("my-tasks", handle)

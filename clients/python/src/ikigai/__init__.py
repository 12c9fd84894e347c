"""The Ikigai platform client: `from ikigai import Platform`; `ikigai.agent` for an agent's life."""

from .errors import IkigaiError
from .llm import PromptStream, Thread, Tool
from .mailbox import Mailbox
from .memory import DEFAULT_THREAD, ThreadScope
from .platform import Platform
from .pubsub import Subscription
from .queue import Queue, Task
from .transaction import Transaction

__all__ = [
    "DEFAULT_THREAD",
    "IkigaiError",
    "Mailbox",
    "Platform",
    "PromptStream",
    "Queue",
    "Subscription",
    "Task",
    "Thread",
    "ThreadScope",
    "Tool",
    "Transaction",
]

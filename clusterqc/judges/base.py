"""What the batch runner needs from a judge, and how a judge reports that it could not answer.

The runner treats every judge alike (the LLM one, the offline one, a test's own): it calls
`judge(cluster)` from worker threads and stores the Proposal it returns. A judge that gets no
answer raises JudgeError; `fatal` tells the runner whether asking about the next cluster could
succeed (a timeout: yes, record it and go on) or not (a wrong key: stop the whole batch now).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from clusterqc.model import Cluster, Proposal


@runtime_checkable
class Judge(Protocol):
    """Anything that proposes a verdict for a cluster. Must be safe to call from several threads."""

    name: str  # stored as the proposal's judge: the model name, or "offline"
    prompt_version: str  # stored as the proposal's prompt version

    def judge(self, cluster: Cluster) -> Proposal: ...


class JudgeError(Exception):
    """No answer for a cluster. `fatal`: no other cluster can succeed either (stop the batch).

    `transient` marks errors that a healthy endpoint would not give (timeouts, connection
    failures, 5xx after the client's retries): many of them in a row mean the endpoint is down,
    and those left at the end of a run are asked once more. `bad_answer` marks a 200 that is no
    chat completion (a proxy's HTML page, `{"error": ...}`): a few in a row stop the batch.
    `cancelled`: the run was stopped while the request was in flight; nothing is recorded.
    The message is shown to users as is, so it never contains the API key.
    """

    def __init__(self, message: str, fatal: bool = False, transient: bool = False,
                 bad_answer: bool = False, cancelled: bool = False):
        super().__init__(message)
        self.fatal = fatal
        self.transient = transient or bad_answer
        self.bad_answer = bad_answer
        self.cancelled = cancelled

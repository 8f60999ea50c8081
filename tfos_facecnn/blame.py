"""Which TF node a failed job names first: the one that was lost, not the survivor that noticed.

A node whose process or executor dies reports nothing. Its peers' collectives fail instead
(UnavailableError, "Collective ops is aborted", TF's "tasks are unhealthy"), and they are the ones that
report; TFoS may add its own misleading message ("No executor_id file found ... num_executors matches":
its shutdown task landed on the executor Spark started in place of the dead one). So when a failure
arrives the driver looks, for a bounded time, for evidence of a lost node:

- Spark's own word: the node's executor missing from Spark's executor list, or a task failure text
  naming it ("ExecutorLostFailure (executor 1 exited ...)", "Python worker exited unexpectedly");
- its TF server (the address in TF_CONFIG) refusing connections: the process that held it is gone;
- its heartbeats stopped while its TF server does not answer either.

A lost node is named first, with its host, what happened and what to check; the survivors' errors
follow as consequences; the last line says where a re-run resumes (resume.run_state, read-only).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .events import EventServer, NodeEvents
from .tfos_shutdown import NodeErrorReported

logger = logging.getLogger(__name__)

POLL_S = 0.5  # how often the driver looks again for a lost node while it waits for the evidence
PROBE_TIMEOUT_S = 1.0  # a TF server that takes longer to accept proves nothing either way
SILENT_HEARTBEATS = 3  # heartbeats missed before a node whose TF server cannot be reached counts as lost
# Errors a node reports when a peer, not itself, went away: its collective lost the other side.
CONSEQUENCE_MARKERS = (
    "UnavailableError", "CancelledError", "DeadlineExceededError", "AbortedError",
    "Collective ops is aborted", "tasks are unhealthy", "stopped sending heartbeats", "Connection reset",
    "Socket closed", "failed to connect", "Connection refused", "no training progress",
)
# Spark's task failure text: "(HOST executor ID): REASON", REASON one that takes the executor's processes with it.
_SPARK_LOST = re.compile(
    r"\((?P<host>[^\s()]+) executor (?P<executor>[^\s():]+)\): "
    r"(?P<reason>(?:ExecutorLostFailure|[\w.]*Exception: Python worker exited unexpectedly)[^\n]*)"
)
_FUNCTION_NODE = re.compile(r"\{\{function_node [^}]*\}\}\s*")
_TF_TASK = re.compile(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)")
NO_EXECUTOR_ID = "No executor_id file found"
# The driver's watchdog records a node whose batch count stopped as failed with this (cluster_run.Watchdog): its
# own finding, not the node's report. A node cut off stops its batches and heartbeats together, and the batch
# clock, which started earlier, runs out first: such a node must still be judged by the evidence of a loss.
STALLED = "no training progress"
PHASES_WITH_TF_SERVER = ("ready", "train", "export")  # node.py: the TF server listens from "ready" on


@dataclass
class Lost:
    """A node the driver found gone, strongest cause first: executor > TF process > heartbeat."""

    node: str
    host: str
    cause: str
    evidence: list[str] = field(default_factory=list)
    executor: str | None = None
    log_url: str | None = None
    last_seen: float = 0.0


EXECUTOR_EXITED = "its executor exited"
PROCESS_EXITED = "its TF process exited"
HEARTBEATS_STOPPED = "it stopped sending heartbeats"
_STRENGTH = {EXECUTOR_EXITED: 0, PROCESS_EXITED: 1, HEARTBEATS_STOPPED: 2}


def is_consequence(error: str) -> bool:
    """Whether a node's error is what a survivor reports when a peer went away (not its own fault)."""
    return any(marker in error for marker in CONSEQUENCE_MARKERS)


def spark_losses(texts: Iterable[str]) -> dict[str, str]:
    """Spark executor id -> Spark's reason, for the task failures that took an executor or a Python worker."""
    found: dict[str, str] = {}
    for text in texts:
        for match in _SPARK_LOST.finditer(text or ""):
            found.setdefault(match["executor"], match["reason"].strip())
    return found


def probe(address: str | None) -> str:
    """'open' when something accepts at host:port, 'refused' when nothing listens there (the process
    that held it is gone), 'unknown' when the host does not answer in time or the address is unusable."""
    if not address or ":" not in address:
        return "unknown"
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except (OSError, ValueError) as e:
        logger.info("could not probe the TF server at %s: %s", address, e)
        return "unknown"


def active_executors(sc) -> set[str] | None:
    """The executor ids Spark holds now (SparkContext.getExecutorIds, through the JVM); None when it
    cannot say (the context already stopped: TFoS stops it before its sys.exit)."""
    from py4j.protocol import Py4JError

    try:
        listed = sc._jsc.sc().getExecutorIds().mkString("\n")
    except (Py4JError, AttributeError) as e:
        logger.info("could not list Spark's executors: %s", e)
        return None
    return {line for line in str(listed).split("\n") if line}


def _self_failed(state: NodeEvents) -> set[str]:
    """Nodes that reported an error themselves: alive when they did, so never lost."""
    return {str(f.get("node")) for f in state.failures
            if not f.get("lost") and not str(f.get("error", "")).startswith(STALLED)}


def candidates(state: NodeEvents) -> list[str]:
    """Started nodes that reported neither done nor a failure of their own."""
    own = _self_failed(state)
    return [node for node in state.started if node not in state.done and node not in own]


def probe_targets(state: NodeEvents) -> dict[str, str]:
    """node -> TF server address, for the candidates whose heartbeats said their TF server is up."""
    return {node: str(state.started[node].get("tf_address")) for node in candidates(state)
            if state.progress.get(node, (0, "setup", 0.0))[1] in PHASES_WITH_TF_SERVER
            and state.started[node].get("tf_address")}


def _evidence_rank(evidence: str) -> int:
    return 0 if evidence.startswith("Spark") else 1 if "TF server" in evidence else 2


def find_lost(state: NodeEvents, now: float, silence_s: float, probes: dict[str, str],
              executors: set[str] | None, spark_lost: dict[str, str]) -> list[Lost]:
    """The nodes this evidence shows gone, the first to go silent first. Pure: the caller gathers."""
    lost: dict[str, Lost] = {}
    own = _self_failed(state)
    for failure in state.failures:  # found by the watchdog: silent for node_timeout
        node = str(failure.get("node"))
        if failure.get("lost") and node not in own:  # a node that reported its own error after all was alive
            started = state.started.get(node, {})
            executor = started.get("spark_executor")
            lost[node] = Lost(node, str(started.get("host", "?")), str(failure["lost"]),
                              list(failure.get("evidence") or [failure.get("error", "")]),
                              None if executor is None else str(executor), started.get("log_url"),
                              float(failure.get("last_heard", state.last_seen.get(node, now))))
    for node in candidates(state):
        started = state.started[node]
        executor = started.get("spark_executor")
        executor = None if executor is None else str(executor)
        strong: list[tuple[str, str]] = []  # (cause, evidence) each enough on its own
        weak: list[str] = []  # evidence that supports, but does not by itself prove, a loss
        if executor is not None:
            reason = spark_lost.get(executor)
            if reason and reason.startswith("ExecutorLostFailure"):
                strong.append((EXECUTOR_EXITED, f"Spark: {reason}"))
            elif reason:
                weak.append(f"Spark: {reason}")
            if executors is not None and executor not in executors:
                strong.append((EXECUTOR_EXITED, f"Spark no longer lists executor {executor}"))
        answer = probes.get(node)
        if answer == "refused":
            strong.append((PROCESS_EXITED, f"its TF server {started.get('tf_address')} refuses connections"))
        silent = now - state.last_seen.get(node, now)
        if silent > silence_s and answer != "open":
            strong.append((HEARTBEATS_STOPPED, f"no heartbeat for {silent:.0f} s"))
        if not strong and node not in lost:
            continue
        found = lost.setdefault(node, Lost(node, str(started.get("host", "?")), HEARTBEATS_STOPPED, [],
                                           executor, started.get("log_url"), state.last_seen.get(node, now)))
        for cause, evidence in strong:
            if _STRENGTH[cause] < _STRENGTH.get(found.cause, len(_STRENGTH)):
                found.cause = cause
            if evidence not in found.evidence:
                found.evidence.append(evidence)
        found.evidence.extend(w for w in weak if w not in found.evidence)
        found.evidence.sort(key=_evidence_rank)
    return sorted(lost.values(), key=lambda x: (x.last_seen, x.node))


def first_lost(lost: list[Lost], tolerance_s: float) -> tuple[list[Lost], list[Lost]]:
    """(the nodes lost first, those lost after them): a node last heard from more than tolerance_s (a
    heartbeat) after the first went with the job (Spark kills the tasks of a failed job) or with its peer.
    The first ones are ordered by cause, an executor Spark saw exit ahead of a process that went quiet."""
    if not lost:
        return [], []
    earliest = min(x.last_seen for x in lost)
    first = sorted((x for x in lost if x.last_seen <= earliest + tolerance_s),
                   key=lambda x: (_STRENGTH.get(x.cause, len(_STRENGTH)), x.last_seen, x.node))
    return first, [x for x in lost if x not in first]


def wait_for_lost(events: EventServer, look: Callable[[NodeEvents], list[Lost]], window_s: float) -> list[Lost]:
    """Looks for a lost node until one is found, no node is left to suspect, or window_s has passed
    (0: one look). Wakes on every node event and every POLL_S for the evidence that is not an event."""
    deadline = time.monotonic() + window_s
    while True:
        state = events.snapshot()
        lost = look(state)
        remaining = deadline - time.monotonic()
        if lost or remaining <= 0 or not candidates(state):
            return lost
        events.wait_for_event(min(POLL_S, remaining))


def needs_patience(state: NodeEvents) -> bool:
    """Whether to wait for a lost node: no node reported an error of its own making (only peers'
    collectives failing, a stall, or nothing at all: a Spark or TFoS error, a timeout)."""
    own = [f for f in state.failures if not f.get("lost")]
    return all(is_consequence(str(f.get("error", ""))) for f in own)


def short_error(error: str, lines: int = 2, limit: int = 400) -> str:
    """A survivor's error in a line: TF's '{{function_node ...}}' prefix dropped, the first lines joined."""
    text = " ".join(line.strip() for line in _FUNCTION_NODE.sub("", error).strip().splitlines()[:lines])
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _pointed_at(failures: list[dict[str, Any]]) -> list[str]:
    """The peers the survivors' TF errors name ('/job:worker/replica:0/task:0'), other than themselves."""
    named: list[str] = []
    for failure in failures:
        for job, task in _TF_TASK.findall(str(failure.get("error", ""))):
            node = f"{job}:{task}"
            if node != failure.get("node") and node not in named:
                named.append(node)
    return named


def _fix(lost: Lost) -> str:
    where = f"executor {lost.executor}'s log" if lost.executor is not None else "its executor's log"
    if lost.log_url:
        where += f" ({lost.log_url})"
    if lost.cause == EXECUTOR_EXITED:
        return (f"read {where} or the cluster manager's record of it (Spark UI Executors tab, `yarn logs`): "
                "an executor usually dies of memory (raise spark.executor.memory or "
                "spark.executor.memoryOverhead) or with its machine (killed, preempted, rebooted)")
    if lost.cause == PROCESS_EXITED:
        return (f"its TF process ended without reporting an error: it was killed (the kernel's OOM killer, "
                f"a person, a container limit) or crashed in native code; {where} and the kernel log on "
                f"{lost.host} (dmesg) say which")
    return (f"check that {lost.host} is up and reachable from the driver, and {where}: a machine or "
            "network that went away, or a process that hangs, stops the heartbeats")


def _lost_line(lost: Lost) -> str:
    evidence = f" ({'; '.join(lost.evidence)})" if lost.evidence else ""
    return f"TF node {lost.node} on {lost.host} was lost: {lost.cause}{evidence}"


def _failure_line(failure: dict[str, Any], short: bool) -> str:
    error = str(failure.get("error", ""))
    return f"TF node {failure.get('node')} failed: {short_error(error) if short else error}"


def _log_tail(failure: dict[str, Any]) -> str:
    tail = "\n".join(f"    {line}" for line in failure.get("log_tail", [])[-15:])
    return f"\n  last log lines:\n{tail}" if tail else ""


def _tfos_story(texts: list[str], cause: BaseException | None) -> str:
    """The TFoS or Spark error in words that say what happened."""
    if any(NO_EXECUTOR_ID in text for text in texts):
        return ("TFoS's shutdown task ran on a Spark executor that holds no TF node (TFoS's 'No executor_id file "
                "found' message): Spark had replaced an executor that was lost, or runs more executors than TF "
                "nodes (dynamic allocation must be off, one task per executor)")
    if cause is not None and not isinstance(cause, (SystemExit, NodeErrorReported)):
        return f"the TFoS cluster failed ({type(cause).__name__}: {short_error(str(cause), lines=3, limit=600)})"
    # TFoS's sys.exit(1), and our shutdown's NodeErrorReported, say nothing: the error TFoS's thread kept does
    detail = next((t for t in texts if t != str(cause)), None) if cause is not None else None
    return f"the TFoS cluster failed ({short_error(detail, lines=3, limit=600)})" if detail else \
        "the TFoS cluster failed"


def compose(state: NodeEvents, lost: list[Lost], cause: BaseException | None, texts: list[str],
            spark_lost: dict[str, str], finish_timeout: float, resume: str, tolerance_s: float = 0.0,
            log_paths: dict[str, str] | None = None) -> str:
    """The job's error: the node(s) lost first, then those lost after them and the survivors' errors, what
    to do, the nodes' full logs, and where the same command resumes."""
    own = [f for f in state.failures if not f.get("lost")]
    lost, later = first_lost(lost, tolerance_s)
    lost_names = {x.node for x in lost}
    if lost:  # the watchdog's stall record of a node found lost says less than its loss
        own = [f for f in own if f.get("node") not in lost_names | {x.node for x in later}]
    mapped = {x.executor for x in lost if x.executor is not None}
    unmapped = {e: r for e, r in spark_lost.items() if e not in mapped
                and not any(str(s.get("spark_executor")) == e for s in state.started.values())}
    lines: list[str] = []
    if lost:
        if len(lost) == 1 and lost[0].executor is None and len(unmapped) == 1:
            executor, reason = unmapped.popitem()  # one node lost, one executor lost: the same loss
            lost[0].executor = executor
            lost[0].evidence.insert(0, f"Spark executor {executor}: {reason}")
            if reason.startswith("ExecutorLostFailure"):
                lost[0].cause = EXECUTOR_EXITED
        lines.append(_lost_line(lost[0]))
        lines += [f"  also {_lost_line(x)}" for x in lost[1:]]
        if own or later:
            lines.append("  then, as a consequence:" if all(is_consequence(str(f.get("error", ""))) for f in own)
                         else "  then:")
            lines += [f"    {_lost_line(x)}" for x in later]
            lines += [f"    {_failure_line(f, short=True)}" for f in own]
        lines += [f"  Spark lost executor {e}: {r}" for e, r in sorted(unmapped.items())]
        lines += [f"  fix ({x.node}): {_fix(x)}" for x in lost]
    elif own:
        first = next((f for f in own if not is_consequence(str(f.get("error", "")))), own[0])
        lines.append(_failure_line(first, short=False) + _log_tail(first))
        lines += [f"  also {_failure_line(f, short=True)}" for f in own if f is not first]
        lines += [f"  Spark lost executor {e}: {r}" for e, r in sorted(unmapped.items())]
        if is_consequence(str(first.get("error", ""))):
            named = [n for n in _pointed_at(own) if n not in lost_names]
            pointer = f"; their errors point at {', '.join(named)}" if named else ""
            lines.append("  no TF node was seen to die (each still answered on its TF server or sent heartbeats)"
                         f"{pointer}: a peer stopped answering the collectives; read the executors' logs of "
                         "the nodes named")
    else:
        missing = sorted(set(state.started) - set(state.done)) or ["(none started)"]
        if cause is not None or texts:
            lines.append(f"{_tfos_story(texts, cause)}; TF nodes not done: {', '.join(missing)}")
        else:
            lines.append(f"TF node(s) {', '.join(missing)} did not finish within finish_timeout "
                         f"({finish_timeout:.0f} s); see their executor logs")
        lines += [f"  Spark lost executor {e}: {r}" for e, r in sorted(unmapped.items())]
    lines += [f"  full log of {node}: {path}" for node, path in sorted((log_paths or {}).items())]
    lines.append(f"  {resume}")
    return "\n".join(lines)


def resume_hint(cfg, nodes: int) -> str:
    """The last line of every failure: what running the same command again does (resume.run_state, which
    only reads). With --overwrite the same command would start afresh, so the hint says to drop it."""
    from .config import ConfigError
    from .resume import run_state

    try:
        state = run_state(dataclasses.replace(cfg, overwrite=False), nodes)
    except ConfigError as e:
        return f"the training state cannot be resumed ({e})"
    except OSError as e:
        return f"run the same command to resume from the last recorded epoch (could not read {cfg.model_dir}: {e})"
    command = "run the same command without --overwrite" if cfg.overwrite and not state.clear \
        else "run the same command"
    if state.finished:
        return f"{command}: it finds the finished model in {cfg.export_dir}"
    if state.reexport:
        return f"training finished ({state.epochs_done} epochs); {command} to resume: it exports the trained weights"
    start = 1 if state.clear else state.epochs_done + 1
    return f"{command} to resume from epoch {start} of {cfg.epochs}"


def explain(events: EventServer, cause: BaseException | None, sc, cfg, heartbeat_s: float,
            resume: Callable[[], str], tfos_error: str | None = None,
            log_path: Callable[[str], str] | None = None) -> RuntimeError:
    """The job's error after a failure: waits (bounded) for evidence of a lost node when no node
    reported an error of its own, then names the lost node first and the survivors after it, and ends
    with `resume()` (resume_hint: where the same command starts again)."""
    texts = [t for t in (str(cause) if cause is not None else "", tfos_error or "") if t]
    spark_lost = spark_losses(texts)
    silence_s = SILENT_HEARTBEATS * heartbeat_s + 1.0
    window_s = silence_s + heartbeat_s if needs_patience(events.snapshot()) else 0.0

    def look(state: NodeEvents) -> list[Lost]:
        targets = probe_targets(state)
        probes = {node: probe(address) for node, address in targets.items()}
        executors = active_executors(sc) if sc is not None else None
        return find_lost(state, time.monotonic(), silence_s, probes, executors, spark_lost)

    lost = wait_for_lost(events, look, window_s)
    state = events.snapshot()
    paths = {node: log_path(node) for node in state.started} if log_path is not None else None
    return RuntimeError(compose(state, lost, cause, texts, spark_lost, cfg.finish_timeout, resume(),
                                tolerance_s=heartbeat_s, log_paths=paths))

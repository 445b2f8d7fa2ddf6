"""A Python sandbox for model-written code (tool-integrated reasoning): one interpreter per episode.

:class:`PythonSandbox` runs each call of an episode in a worker process whose globals persist across the
episode's calls, like a Jupyter kernel; :class:`SandboxPool` drives many episodes' sandboxes at once. A
call returns a :class:`ToolResult` (the text the model sees, ok, an error kind), never raises for
anything the code does: exceptions, timeouts, crashes and limits are reported and the next call starts a
fresh interpreter where needed, saying ``[sandbox restarted: previous state lost]``.

Why written by hand: no maintained pure-Python library gives process-level limits with persistent
state; the ones that do isolate (Docker, gVisor, nsjail, E2B/Jupyter-kernel servers) are daemons or
services to run beside the trainer. This module needs only the standard library and Linux.

What it does (details in ``docs/sandbox.md`` and :mod:`rlvr.tools._sandbox_worker`): a worker started
with ``python -I -S`` in its own session and process group, an empty environment, a private temporary
working directory (removed on close), rlimits (CPU, address space, file size, open files, processes,
no core), a new network namespace, a read-only view of the filesystem but the working dir, an
unprivileged uid when the parent is root, and an audit hook as defense in depth. Output is capped in the
worker and again in the parent; a timeout SIGKILLs the whole process group.

What it does NOT do: it is not a security boundary against a determined attacker. Audit hooks can be
bypassed from C or crafted bytecode; the kernel layers are only as good as the kernel and depend on
privileges the host may not grant (see ``isolation``); there is no disk quota, no seccomp filter, no pid
namespace. For hostile production workloads run the whole trainer's sandboxes inside a container,
gVisor or nsjail, and treat this as the inner layer.
"""

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from rlvr.tools import _sandbox_worker as proto
from rlvr.tools.sandbox_view import View, visible_paths  # noqa: F401  (View: re-exported)

RESTART_NOTICE = "[sandbox restarted: previous state lost]\n"
ERROR_KINDS = ("exception", "timeout", "memory", "cpu_limit", "crash", "exit", "output_limit")
_WORKER_SCRIPT = str(Path(proto.__file__).resolve())
_START_TIMEOUT_S = 30.0  # a cold start on a loaded 2-core machine; not part of any call's timeout
_EXIT_GRACE_S = 1.0  # after EOF, how long the worker may take to exit before it is killed


@dataclass(frozen=True)
class SandboxLimits:
    """Bounds of one sandbox. ``cpu_s`` counts over the interpreter's life (an episode, until a restart),
    ``timeout_s`` per call. ``max_processes`` is RLIMIT_NPROC: 0 forbids fork and threads; it counts
    every process of the worker's uid (nobody, shared by all sandboxes when the parent is root)."""

    timeout_s: float = 5.0  # wall clock per call
    cpu_s: int = 5  # RLIMIT_CPU per worker
    memory_mb: int = 512  # RLIMIT_AS
    max_output_chars: int = 4000  # stdout+stderr returned to the model, truncated with a marker
    max_processes: int = 0  # RLIMIT_NPROC
    max_file_mb: int = 16  # RLIMIT_FSIZE
    packages: tuple[str, ...] = ("numpy", "sympy")  # importable besides the standard library (and what they need)

    def __post_init__(self) -> None:
        for name in ("timeout_s", "cpu_s", "memory_mb", "max_output_chars", "max_file_mb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxLimits.{name} must be positive, got {getattr(self, name)}")
        if self.max_processes < 0:
            raise ValueError(f"SandboxLimits.max_processes must be >= 0, got {self.max_processes}")


@dataclass(frozen=True)
class ToolResult:
    output: str  # what the model sees: stdout/stderr, then the error text (traceback's last lines) if any
    ok: bool  # False on exception, timeout, crash, limit hit (truncated output included)
    error: str | None  # one of ERROR_KINDS; None when ok
    seconds: float  # wall time of the call, a restart included


@dataclass(frozen=True)
class _Outcome:
    """What one call produced, before it is turned into the model's text."""

    stdout: str
    dropped: int | None  # characters of output not kept; None: cut in the worker, which died before counting
    error: str | None
    error_text: str
    worker_gone: bool  # the interpreter is dead or killed: the next call restarts it


class PythonSandbox:
    """One episode's interpreter: globals persist across :meth:`run` calls until a timeout, a crash, an
    exit or a MemoryError, after which the next call starts a fresh interpreter and says so.

    The worker starts at the first call (or :meth:`start`) and is reused by the next calls: per call,
    only a pipe round trip. Thread-safe (calls are serialized). ``audit_hook=False`` leaves the kernel
    layers alone; it exists to test them.
    """

    def __init__(self, limits: SandboxLimits = SandboxLimits(), *, audit_hook: bool = True) -> None:
        self.limits = limits
        self._audit_hook = audit_hook
        self._worker: _Worker | None = None
        self._state_lost = False
        self._closed = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the worker now (else the first call does); raises RuntimeError if it cannot start."""
        with self._lock:
            self._ensure_worker()

    def run(self, code: str) -> ToolResult:
        """Run one cell. Never raises for what the code does; RuntimeError if no worker can start at all."""
        started = time.monotonic()
        with self._lock:
            if self._closed:
                raise RuntimeError("PythonSandbox.run() after close()")
            notice = RESTART_NOTICE if self._ensure_worker() else ""
            outcome = self._worker.call(code, time.monotonic() + self.limits.timeout_s)
            if outcome.worker_gone:
                self._worker.stop()
                self._worker, self._state_lost = None, True
        output, truncated = _compose(notice, outcome, self.limits.max_output_chars)
        error = outcome.error or ("output_limit" if truncated else None)
        return ToolResult(output=output, ok=error is None, error=error, seconds=time.monotonic() - started)

    def close(self) -> None:
        """Kill the worker's whole process group and remove its working directory. Idempotent."""
        with self._lock:
            self._closed = True
            if self._worker is not None:
                self._worker.stop()
                self._worker = None

    def __enter__(self) -> "PythonSandbox":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The worker's pid, which is also its process group id; None when no worker runs."""
        return None if self._worker is None else self._worker.proc.pid

    @property
    def isolation(self) -> dict:
        """What confinement the running worker obtained: ``uid``, ``net_namespace``, ``mount_namespace``,
        ``read_only_root``, ``masked`` folders, ``notes`` on what the host refused, ``start_seconds``."""
        return {} if self._worker is None else {**self._worker.isolation}

    def _ensure_worker(self) -> bool:
        """Start a worker if none runs; True when this replaced one that died (state lost)."""
        if self._worker is not None and self._worker.exited():  # died between calls
            self._worker.stop()
            self._worker, self._state_lost = None, True
        if self._worker is not None:
            return False
        self._worker = _Worker(self.limits, self._audit_hook)
        restarted, self._state_lost = self._state_lost, False
        return restarted


class SandboxPool:
    """Runs many episodes' calls at once: at most ``max_workers`` calls in flight, one thread each, each
    thread blocked on its sandbox's pipe (the code itself runs in the worker processes)."""

    def __init__(self, limits: SandboxLimits = SandboxLimits(), max_workers: int = 4) -> None:
        self.limits = limits
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rlvr-sandbox")
        self._owned: list[PythonSandbox] = []

    def new_sandbox(self) -> PythonSandbox:
        """A sandbox with the pool's limits, closed with the pool."""
        sandbox = PythonSandbox(self.limits)
        self._owned.append(sandbox)
        return sandbox

    def run_many(self, sandboxes: list[PythonSandbox], codes: list[str]) -> list[ToolResult]:
        """``sandboxes[i].run(codes[i])`` for all i, concurrently; results in the same order."""
        if len(sandboxes) != len(codes):
            raise ValueError(f"run_many: {len(sandboxes)} sandboxes but {len(codes)} codes")
        if len({id(s) for s in sandboxes}) != len(sandboxes):
            raise ValueError("run_many: a sandbox appears twice (its calls must run one after the other)")
        return list(self._executor.map(PythonSandbox.run, sandboxes, codes))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for sandbox in self._owned:
            sandbox.close()
        self._owned.clear()

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class _Worker:
    """One live interpreter: its process (group leader of a new session), its pipes and its directory.

    The parent never trusts what comes back: frames are size-checked, at most ``max_output_chars`` of
    output are kept, and a malformed frame kills the worker.
    """

    def __init__(self, limits: SandboxLimits, audit_hook: bool) -> None:
        self.limits = limits
        self.base = tempfile.mkdtemp(prefix="rlvr-sandbox-")  # work/ (the cell's directory) and root/ (its view)
        self.workdir = os.path.join(self.base, "work")
        os.mkdir(self.workdir, 0o700)
        os.mkdir(os.path.join(self.base, "root"), 0o700)
        uid, gid = _unprivileged_ids()
        if uid is not None:
            os.chown(self.workdir, uid, gid)
        view = visible_paths(limits.packages)
        config = {
            "workdir": self.workdir, "uid": uid, "gid": gid, "sys_path": view.sys_path, "audit_hook": audit_hook,
            "new_root": os.path.join(self.base, "root"), "visible": view.visible, "hidden": view.hidden,
            "packages": view.packages,
            "cpu_s": limits.cpu_s, "memory_mb": limits.memory_mb, "file_mb": limits.max_file_mb,
            "max_processes": limits.max_processes, "max_output_chars": limits.max_output_chars,
            "timeout_s": limits.timeout_s,
        }  # fmt: skip
        started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", _WORKER_SCRIPT, json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=self.workdir,
                env=_minimal_env(self.workdir),
                start_new_session=True,
            )
        except BaseException:
            _remove_tree(self.base)
            raise
        self._finalizer = weakref.finalize(self, _dispose, self.proc, self.base)
        self._buffer = bytearray()
        self._max_frame = 16 * limits.max_output_chars + 65536
        try:
            frame = self._read_frame(started + _START_TIMEOUT_S)
        except (TimeoutError, _ProtocolError) as exc:
            frame = (proto.FAILED, str(exc).encode() or b"no answer")
        if frame is None or frame[0] != proto.HELLO:
            self.stop()
            why = "it exited" if frame is None else frame[1].decode("utf-8", "replace")
            raise RuntimeError(f"the Python sandbox worker did not start: {why}")
        self.isolation = {**json.loads(frame[1]), "start_seconds": round(time.monotonic() - started, 4)}

    def call(self, code: str, deadline: float) -> _Outcome:
        room, kept, dropped = self.limits.max_output_chars, [], 0

        def ended(error: str, text: str) -> _Outcome:  # no final count came: past the cap the worker cut more
            return _Outcome("".join(kept), None if room == 0 else dropped, error, text, worker_gone=True)

        payload = code.encode("utf-8", "surrogatepass")
        timeout = f"TimeoutError: execution exceeded {self.limits.timeout_s} s"
        try:
            self._write(proto.REQUEST.pack(len(payload)) + payload, deadline)
        except BrokenPipeError:
            return self._died("", 0)
        except TimeoutError:
            return ended("timeout", timeout)
        while True:
            try:
                frame = self._read_frame(deadline)
            except TimeoutError:
                return ended("timeout", timeout)
            except _ProtocolError as exc:
                return ended("crash", f"SandboxError: {exc}")
            if frame is None:
                return self._died("".join(kept), None if room == 0 else dropped)
            kind, body = frame
            if kind == proto.OUTPUT:
                text = body.decode("utf-8", "replace")
                kept.append(text[:room])
                dropped += len(text) - len(kept[-1])
                room -= len(kept[-1])
                continue
            try:
                result = json.loads(body)
                error, error_text = result["error"], str(result["traceback"])
                dropped += int(result["dropped"])
                if kind != proto.RESULT or error not in (None, "exception", "memory", "exit"):
                    raise ValueError(error)
            except (ValueError, KeyError, TypeError) as exc:
                return ended("crash", f"SandboxError: bad reply ({exc})")
            # After a MemoryError the namespace may still hold the memory that ran out: start afresh.
            return _Outcome("".join(kept), dropped, error, error_text, worker_gone=error in ("exit", "memory"))

    def stop(self, grace_s: float = 0.0) -> "_Exit":
        """Wait up to ``grace_s`` for the worker to exit on its own, then SIGKILL its process group, reap
        it and remove its directory."""
        status = _finish(self.proc, grace_s)
        self._finalizer()
        return status

    def exited(self) -> bool:
        """Whether the worker has exited, without reaping it (see :func:`_finish`)."""
        return self.proc.returncode is not None or _exited(self.proc.pid)

    def _died(self, stdout: str, dropped: int | None) -> _Outcome:
        """The worker closed its pipe: say why it died, from its exit status and CPU time."""
        code, cpu_s, on_its_own = self.stop(_EXIT_GRACE_S)
        limits = self.limits
        if not on_its_own:
            error, text = "crash", "SandboxError: the interpreter closed its reply pipe"
        elif code == proto.MEMORY_EXIT:
            error, text = "memory", f"MemoryError: out of memory (limit {limits.memory_mb} MB)"
        elif code == -signal.SIGXCPU or (code == -signal.SIGKILL and cpu_s >= limits.cpu_s):
            error, text = "cpu_limit", f"TimeoutError: CPU time limit of {limits.cpu_s} s per interpreter exceeded"
        elif code == -signal.SIGKILL:
            error, text = "memory", "MemoryError: the interpreter was killed (out of memory)"
        elif code < 0:
            error, text = "crash", f"SandboxCrash: the interpreter died from {signal.Signals(-code).name}"
        else:
            error, text = "exit", f"SystemExit: the interpreter exited with code {code}"
        return _Outcome(stdout, dropped, error, text, worker_gone=True)

    def _write(self, data: bytes, deadline: float) -> None:
        """Write without blocking past ``deadline`` (a cell that forged its reply may still be running)."""
        fd = self.proc.stdin.fileno()
        os.set_blocking(fd, False)
        while data:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [fd], [], remaining)[1]:
                raise TimeoutError
            try:
                data = data[os.write(fd, data) :]
            except BlockingIOError:
                continue

    def _read_frame(self, deadline: float) -> tuple[bytes, bytes] | None:
        """The next frame, or None at end of file; TimeoutError at ``deadline``."""
        fd, buffer = self.proc.stdout.fileno(), self._buffer
        while True:
            if len(buffer) >= proto.FRAME.size:
                kind, size = proto.FRAME.unpack_from(buffer)
                if kind not in (proto.HELLO, proto.OUTPUT, proto.RESULT, proto.FAILED) or size > self._max_frame:
                    raise _ProtocolError(f"malformed frame from the worker ({kind!r}, {size} bytes)")
                end = proto.FRAME.size + size
                if len(buffer) >= end:
                    payload = bytes(buffer[proto.FRAME.size : end])
                    del buffer[:end]
                    return kind, payload
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            buffer += chunk


class _ProtocolError(Exception):
    pass


def _compose(notice: str, outcome: _Outcome, limit: int) -> tuple[str, bool]:
    """The model's text: notice, output (head kept), truncation marker, error text (tail kept); and
    whether output was cut. Error text is kept within half the limit so its last line always shows."""
    error_text = outcome.error_text
    if len(error_text) > limit // 2:
        error_text = "..." + error_text[-(limit // 2) :]
    room = max(0, limit - len(notice) - len(error_text))
    stdout, dropped = outcome.stdout, outcome.dropped
    if len(stdout) > room:
        stdout, dropped = stdout[:room], None if dropped is None else dropped + len(stdout) - room
    truncated = dropped is None or dropped > 0
    if truncated:
        if stdout and not stdout.endswith("\n"):
            stdout += "\n"
        stdout += "...[truncated]\n" if dropped is None else f"...[truncated {dropped} chars]\n"
    if error_text and stdout and not stdout.endswith("\n"):
        stdout += "\n"
    return notice + stdout + error_text, truncated


class _Exit(NamedTuple):
    code: int  # returncode: -N for signal N
    cpu_s: float  # user + system CPU seconds the worker used
    on_its_own: bool  # it had exited before we killed it


def _exited(pid: int) -> bool:
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _finish(proc: subprocess.Popen, grace_s: float) -> _Exit:
    """Kill the process group (after up to ``grace_s`` for a natural exit) and reap the leader.

    The leader is waited for with WNOWAIT first: until it is reaped its pid, the group id, cannot be
    reused, so ``killpg`` cannot hit an unrelated group.
    """
    if proc.returncode is not None:
        return _Exit(proc.returncode, 0.0, True)
    deadline = time.monotonic() + grace_s
    on_its_own = _exited(proc.pid)
    while not on_its_own and time.monotonic() < deadline:
        time.sleep(0.002)
        on_its_own = _exited(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError:  # cannot happen for our own worker; never wait forever on it
        proc.kill()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return _Exit(proc.returncode, usage.ru_utime + usage.ru_stime, on_its_own)


def _dispose(proc: subprocess.Popen, workdir: str) -> None:
    """Finalizer of a worker: also runs at interpreter exit for sandboxes never closed."""
    _finish(proc, 0.0)
    for pipe in (proc.stdin, proc.stdout):
        pipe.close()
    _remove_tree(workdir)


def _remove_tree(path: str) -> None:
    def make_writable_and_retry(func, failed_path, _exc_info) -> None:
        os.chmod(os.path.dirname(failed_path), 0o700)
        func(failed_path)

    try:
        shutil.rmtree(path, onerror=make_writable_and_retry)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def _unprivileged_ids() -> tuple[int | None, int | None]:
    """(uid, gid) of nobody when we are root, else (None, None): an unprivileged parent keeps its uid."""
    if os.geteuid() != 0:
        return None, None
    try:
        import pwd

        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except (ImportError, KeyError):
        return 65534, 65534


def _minimal_env(workdir: str) -> dict[str, str]:
    """The worker's whole environment: none of the parent's variables (tokens, keys) reach it."""
    one_thread = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    return {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", **one_thread}

"""The worker process behind :class:`rlvr.tools.python_sandbox.PythonSandbox`: one episode's interpreter.

Run as a script, ``python -I -S -B _sandbox_worker.py CONFIG_JSON``, with the request pipe on fd 0 and the
reply pipe on fd 1. It imports only fast standard-library modules (a worker must start in tens of ms) and
nothing from ``rlvr``: isolated mode (``-I``) puts neither the script's folder nor the user's site on
``sys.path``, and ``-S`` skips the site-packages ``.pth`` files; the parent passes the import path.

Before it reads any model code it confines itself, in this order:

1. moves the two pipes off fds 0-2 (which then point at /dev/null) so ``os.write(1, ...)`` cannot corrupt
   the protocol by accident;
2. Linux namespaces through libc (``ctypes``): a new network namespace
   (no interface is up, so no connection even to 127.0.0.1) and a new mount namespace in which every mount
   is made read-only except the working directory. As root, a folder the unprivileged user cannot enter
   (``/root`` when Python lives in ``/root/.pyenv``) is covered by an empty tmpfs with only the import
   paths bound back, so dropping privileges does not break ``import numpy``. Not root: the same inside a
   new user namespace, where the kernel allows one;
3. resource limits (CPU, address space, file size, open files, no core dumps);
4. as root: drops to an unprivileged uid/gid (nobody), then sets ``RLIMIT_NPROC`` (root ignores it, and
   setting it before ``setuid`` would make the kernel refuse the ``exec`` of nobody's next process);
5. takes the raw-memory tools out of ``ctypes`` (:func:`_neuter_ctypes`), stubs
   ``_posixsubprocess.fork_exec`` and installs an audit hook (:func:`_install_audit_hook`).

The confinement is done here and not in a ``preexec_fn``: a ``preexec_fn`` forces ``fork`` of the
parent (a trainer holding a model and many threads: slow and deadlock-prone) where ``subprocess`` can
otherwise ``vfork``, and nothing the model writes runs before these steps end anyway.

Then it serves cells: each request is one piece of code, run in a namespace kept for the worker's life;
``sys.stdout`` and ``sys.stderr`` forward at most ``max_output_chars`` characters to the parent as they
are written (so a timeout still shows what was printed) and only count the rest.
"""

import _ast  # the C half of ast: what running a cell needs, without ast.py's import cost
import builtins
import json
import os
import resource
import signal
import struct
import sys

# Worker -> parent frames: 1 byte kind + 4 bytes big-endian payload length + payload.
# Parent -> worker requests: 4 bytes big-endian length + the code as UTF-8.
FRAME = struct.Struct(">cI")
REQUEST = struct.Struct(">I")
HELLO = b"H"  # JSON: what confinement the worker obtained (the isolation report)
OUTPUT = b"O"  # UTF-8 text the cell printed
RESULT = b"R"  # JSON: {"error": kind | None, "traceback": str, "dropped": int}
FAILED = b"X"  # UTF-8 text: the worker could not confine itself; it exits
MEMORY_EXIT = 3  # exit status when even reporting a MemoryError ran out of memory
FAILED_EXIT = 2
MAX_OPEN_FILES = 64

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 32, 4096, 16384, 1 << 18
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 1
PR_SET_NO_NEW_PRIVS = 38


def _send(fd: int, kind: bytes, payload: bytes) -> None:
    data = FRAME.pack(kind, len(payload)) + payload
    while data:
        data = data[os.write(fd, data) :]


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, missing = [], n
    while missing:
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------- confinement (runs with the start privileges)


def _confine(config: dict) -> dict:
    """Steps 2-4 of the module docstring; returns the isolation report sent to the parent in HELLO."""
    uid, gid, workdir = config["uid"], config["gid"], config["workdir"]
    report = {"net_namespace": False, "mount_namespace": False, "read_only_root": False, "masked": []}
    report["notes"] = notes = []
    if sys.platform.startswith("linux"):
        _linux_namespaces(report, config, notes)
    if uid is not None:  # after the masks, if any: can nobody reach the import path and the working dir?
        unreachable = [p for p in filter(os.path.exists, [workdir, *config["sys_path"]]) if not _reachable(p, uid, gid)]
        if unreachable:  # dropping to nobody would break imports: keep the uid, say why
            notes.append(f"kept uid {os.getuid()}: uid {uid} cannot reach {unreachable[0]}")
            uid = None
    _lower_limit(resource.RLIMIT_CORE, 0)
    _lower_limit(resource.RLIMIT_CPU, config["cpu_s"], config["cpu_s"] + 1)
    _lower_limit(resource.RLIMIT_AS, config["memory_mb"] << 20)
    _lower_limit(resource.RLIMIT_FSIZE, config["file_mb"] << 20)
    _lower_limit(resource.RLIMIT_NOFILE, MAX_OPEN_FILES)
    if uid is not None:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if 0 in os.getresuid() or 0 in os.getresgid():
            raise RuntimeError("could not drop root privileges")
    _lower_limit(resource.RLIMIT_NPROC, config["max_processes"])
    os.chdir(workdir)  # again: the cwd inherited from the parent is the working dir before its rw bind mount
    report["uid"] = os.getuid()
    return report


def _lower_limit(kind: int, soft: int, hard: int | None = None) -> None:
    """Set a limit, never above the inherited hard limit (an unprivileged process cannot raise it)."""
    hard = soft if hard is None else hard
    _, current = resource.getrlimit(kind)
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    resource.setrlimit(kind, (soft, hard))


def _reachable(path: str, uid: int, gid: int) -> bool:
    """Whether ``uid`` may traverse every folder above ``path`` (by mode bits; root's override aside)."""
    parts = path.strip("/").split("/")
    return all(_traversable("/" + "/".join(parts[:i]), uid, gid) for i in range(1, len(parts)))


def _traversable(folder: str, uid: int, gid: int) -> bool:
    st = os.stat(folder)
    if st.st_uid == uid:
        return bool(st.st_mode & 0o100)
    if st.st_gid == gid:
        return bool(st.st_mode & 0o010)
    return bool(st.st_mode & 0o001)


def _linux_namespaces(report: dict, config: dict, notes: list[str]) -> None:
    """New network + mount namespaces, a read-only view of every mount but the working dir, masks.

    Each step that the kernel or the container refuses is skipped and noted; the rest still apply.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]

    def call(name: str, *args) -> None:
        if getattr(libc, name)(*args) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"{name}: {os.strerror(errno)}")

    def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
        encoded = [None if s is None else s.encode() for s in (source, target, fstype, data)]
        call("mount", *encoded[:3], flags, encoded[3])

    def set_read_only(path: str, read_only: bool) -> None:
        attr_set, attr_clear = (MOUNT_ATTR_RDONLY, 0) if read_only else (0, MOUNT_ATTR_RDONLY)
        attr = (ctypes.c_uint64 * 4)(attr_set, attr_clear, 0, 0)  # struct mount_attr
        call("syscall", ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), path.encode(),
             ctypes.c_uint(AT_RECURSIVE), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))  # fmt: skip

    user = 0 if os.geteuid() == 0 else CLONE_NEWUSER
    for flags in (user | CLONE_NEWNET | CLONE_NEWNS, user | CLONE_NEWNET, user | CLONE_NEWNS):
        try:
            call("unshare", flags)
        except OSError as exc:
            last_error = exc
            continue
        report["net_namespace"] = bool(flags & CLONE_NEWNET)
        report["mount_namespace"] = bool(flags & CLONE_NEWNS)
        break
    else:
        notes.append(f"no namespaces ({last_error})")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        notes.append("no PR_SET_NO_NEW_PRIVS")
    if not report["mount_namespace"]:
        return
    workdir, uid, gid = config["workdir"], config["uid"], config["gid"]
    try:
        mount(None, "/", None, MS_REC | MS_PRIVATE)
    except OSError as exc:
        notes.append(f"no private mounts ({exc})")
        return
    if config.get("new_root"):
        try:
            _enter_new_root(config, mount, set_read_only, call, libc)
            report["read_only_root"] = report["private_root"] = True
            report["visible"] = config["visible"]
            return
        except OSError as exc:  # the host refused a step: fall back to the read-only view of everything
            notes.append(f"no private root ({exc}); the filesystem is visible read-only")
    try:
        if uid is not None:
            report["masked"] = _mask_unreachable([workdir, *config["sys_path"]], uid, gid, mount)
        set_read_only("/", True)
    except OSError as exc:
        notes.append(f"no read-only root ({exc})")
        return
    try:
        mount(workdir, workdir, None, MS_BIND)
        mount(None, workdir, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)
        report["read_only_root"] = True
    except OSError as exc:  # the working dir must stay writable: undo the read-only view
        notes.append(f"no read-only root ({exc})")
        try:
            set_read_only("/", False)
        except OSError as undo:
            notes.append(f"the working directory is read-only ({undo})")


def _enter_new_root(config: dict, mount, set_read_only, call, libc) -> None:
    """Make the filesystem the sandbox sees a fresh tmpfs holding only ``config["visible"]`` (the
    standard library, the declared packages, system libraries, a few device files), each bound
    read-only at its own path, plus the working directory read-write; then ``pivot_root`` into it
    and detach the old root, so nothing else (the project, the data, the run directory, the home
    directory, the user's cache) exists from inside, and there is no old root to escape back to."""
    import ctypes

    root, workdir = config["new_root"], config["workdir"]
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m")
    hidden = set(config.get("hidden", []))
    for path in [*config["visible"], workdir]:
        target = root + path
        if os.path.islink(path):  # /lib -> usr/lib on merged-/usr systems: the same link inside
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(os.readlink(path), target)
            continue
        if os.path.isdir(path):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
        mount(path, target, None, MS_BIND | MS_REC)
        if path != workdir:
            set_read_only(target, True)
    for folder in hidden:  # inside a visible folder (the base interpreter's site-packages): an empty cover
        if not os.path.isdir(root + folder):
            continue
        mount("tmpfs", root + folder, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
        for path in config.get("packages", []):  # declared packages inside it, bound back
            if path.startswith(folder + "/") and os.path.exists(path):
                mount(path, _placeholder(root + path, os.path.isdir(path)), None, MS_BIND | MS_REC)
                set_read_only(root + path, True)
        set_read_only(root + folder, True)
    os.chdir(root)
    machine = os.uname().machine
    number = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}.get(machine)
    if number is None:
        raise OSError(0, f"pivot_root: unknown syscall number on {machine}")
    call("syscall", ctypes.c_long(number), b".", b".")
    call("umount2", b".", ctypes.c_int(2))  # MNT_DETACH: the old root goes away from this namespace
    os.chdir("/")
    attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY, 0, 0, 0)  # the tmpfs itself (not the working dir) read-only
    call("syscall", ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), b"/", ctypes.c_uint(0),
         ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))  # fmt: skip


def _placeholder(target: str, is_dir: bool) -> str:
    if is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
    return target


def _mask_unreachable(paths: list[str], uid: int, gid: int, mount) -> list[str]:
    """Cover each top-most folder that ``uid`` cannot traverse with an empty tmpfs, and bind back only the
    ``paths`` below it: imports keep working after ``setuid`` and the rest of the folder stays hidden."""
    exposed: dict[str, list[str]] = {}
    for path in filter(os.path.exists, paths):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            folder = "/" + "/".join(parts[:i])
            if not _traversable(folder, uid, gid):
                exposed.setdefault(folder, []).append(path)
                break
    for folder, below in exposed.items():
        below = [p for p in below if not any(p != q and p.startswith(q + "/") for q in below)]
        fds = [os.open(p, os.O_PATH | os.O_CLOEXEC) for p in below]
        mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
        for path, fd in zip(below, fds, strict=True):
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.makedirs(path, exist_ok=True)
            else:  # a zip file on sys.path
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
            mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            os.close(fd)
    return sorted(exposed)


# ---------------------------------------------------------------- the audit hook (defense in depth)


def _neuter_ctypes() -> None:
    """Keep ``import ctypes`` working (sympy imports ``ctypes.c_long`` at start) without its raw-memory tools.

    Python 3.11 raises no audit event when a ctypes function pointer is called, so the hook alone cannot
    stop ``ctypes.memmove(address, ...)``: the functions built on C addresses (memmove, memset, cast,
    string_at) and ``pythonapi`` are replaced by stubs that raise, and so are the addresses and the
    dlopen/dlsym/call functions of ``_ctypes``; the hook refuses loading libraries, looking up symbols,
    ``from_address``/``from_buffer`` and ``addressof``, and a fresh import of ``_ctypes``.
    """
    import _ctypes
    import ctypes

    def refuse(*args, **kwargs):
        raise PermissionError("sandbox: raw memory access through ctypes is not allowed")

    for module, names in (
        (ctypes, "memmove memset cast string_at wstring_at _cast _string_at _wstring_at pythonapi _memmove_addr "
                 "_memset_addr _string_at_addr _cast_addr"),
        (_ctypes, "_memmove_addr _memset_addr _string_at_addr _wstring_at_addr _cast_addr dlopen dlsym dlclose "
                  "call_function call_cdeclfunction PyObj_FromPtr Py_INCREF Py_DECREF"),
    ):  # fmt: skip
        for name in names.split():
            setattr(module, name, refuse)


def _stub_process_spawning() -> None:
    """``_posixsubprocess.fork_exec`` (what multiprocessing's spawn calls) raises no audit event of its own."""
    import _posixsubprocess

    def fork_exec(*args, **kwargs):
        raise PermissionError("sandbox: starting processes is not allowed")

    _posixsubprocess.fork_exec = fork_exec


def _install_audit_hook(workdir: str, readable: list[str] | None = None, import_path: list[str] = ()) -> None:
    """Refuse, at the Python level, what a cell has no business doing.

    Blocked: changing directory (``os.chdir``, ``os.fchdir``); listing or reading files outside the visible
    paths (``readable``) and the working directory; creating processes
    (``os.fork``/``forkpty``/``system``/``exec*``/``posix_spawn``/``spawn*``, ``subprocess.Popen``); signals to
    other processes (``os.kill`` of another pid, ``os.killpg``, ``signal.pthread_kill``); sockets (every
    ``socket.*`` event but ``gethostname``); every ``ctypes.*`` event and a re-import of ``_ctypes`` (see
    :func:`_neuter_ctypes`); ``gc`` walks that could find this hook's closure; building code objects by hand;
    opening for writing, creating, removing, renaming, linking or changing files outside the working directory
    (``/dev/null`` aside); reading other processes' ``/proc/<pid>`` files (their environment).

    A hook cannot be removed, and everything it uses is bound in its closure, so rebinding ``os.path`` or a
    builtin does not change it. It is still NOT a security boundary: a C extension, crafted bytecode
    (``marshal``), an ``os.open`` relative to a ``dir_fd`` it cannot see, or a path object whose
    ``__fspath__`` changes its answer can get past it. The kernel layers (namespaces, read-only mounts,
    uid, rlimits) are the ones that hold.
    """
    lstat, readlink, getcwd, fspath = os.lstat, os.readlink, os.getcwd, os.fspath
    denied, no_import, type_, str_, bytes_, int_ = PermissionError, ImportError, type, str, bytes, int
    pid, write_flags = os.getpid(), os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    forbidden = frozenset(
        "os.fork os.forkpty os.system os.exec os.posix_spawn os.spawn subprocess.Popen pty.spawn os.killpg "
        "signal.pthread_kill gc.get_objects gc.get_referrers gc.get_referents code.__new__".split()
    )
    path_args = {
        "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.chmod": (0,), "os.chown": (0,),
        "os.truncate": (0,), "os.utime": (0,), "os.mkfifo": (0,), "os.mknod": (0,), "os.chflags": (0,),
        "os.rename": (0, 1), "os.link": (0, 1), "os.symlink": (1,), "shutil.chown": (0,),
    }  # fmt: skip

    def resolve(path) -> str:
        """The absolute path with every symlink resolved; a missing tail is kept as written."""
        if type_(path) is not str_ and type_(path) is not bytes_:
            path = fspath(path)
        if type_(path) is bytes_:
            path = path.decode("utf-8", "surrogateescape")
        pending = (path if path.startswith("/") else getcwd() + "/" + path).split("/")
        pending.reverse()
        resolved, hops = "", 0
        while pending:
            part = pending.pop()
            if part == "" or part == ".":
                continue
            if part == "..":
                resolved = resolved.rpartition("/")[0]
                continue
            candidate = resolved + "/" + part
            try:
                mode = lstat(candidate).st_mode
            except OSError:
                resolved = candidate
                continue
            if mode & 0o170000 != 0o120000:  # not a symlink
                resolved = candidate
                continue
            hops += 1
            if hops > 40:
                raise denied("sandbox: too many symbolic links")
            target = readlink(candidate).split("/")
            target.reverse()
            pending.extend(target)
            if target[-1] == "":  # absolute target
                resolved = ""
        return resolved or "/"

    home = resolve(workdir)
    roots = tuple(resolve(p) for p in readable) if readable is not None else None
    listable = frozenset(resolve(p) for p in import_path)
    own_proc = ("/proc/self", f"/proc/{pid}", "/proc/thread-self")

    def check_readable(path) -> None:
        """With ``readable``, reading anything but those paths and the working directory is refused."""
        if roots is None or type_(path) is int_:
            return
        where = resolve(path)
        if where == home or where.startswith(home + "/") or where.startswith(own_proc):
            return
        for root in roots:
            if where == root or where.startswith(root + "/"):
                return
        raise denied(
            f"sandbox: reading {where} is not allowed (only the interpreter's files and the working directory)"
        )

    def check_inside(event: str, path) -> None:
        if type_(path) is int_:  # an open file descriptor
            return
        where = resolve(path)
        if where != home and not where.startswith(home + "/") and where != "/dev/null":
            raise denied(f"sandbox: {event} outside the working directory is not allowed: {where}")

    def hook(event: str, args: tuple) -> None:
        if event in forbidden or event.startswith("ctypes.") or event.startswith("socket."):
            if event != "socket.gethostname":
                raise denied(f"sandbox: {event} is not allowed")
        elif event == "import":
            if args[0] == "_ctypes":  # a fresh copy would bring back what _neuter_ctypes removed
                raise no_import("sandbox: re-importing _ctypes is not allowed")
        elif event == "os.kill":
            if args[0] != pid:
                raise denied("sandbox: signalling other processes is not allowed")
        elif event == "open":
            path, flags = args[0], args[2]
            if type_(flags) is int_ and flags & write_flags:
                check_inside("writing", path)
            elif type_(path) is not int_:
                where = resolve(path)
                if where.startswith("/proc/"):
                    owner = where[6:].partition("/")[0]
                    if owner.isdigit() and owner != str_(pid):
                        raise denied("sandbox: reading other processes' /proc files is not allowed")
                check_readable(path)
        elif event in path_args:
            for i in path_args[event]:
                if i < len(args):
                    check_inside(event, args[i])
        elif event == "os.chdir" or event == "os.fchdir":
            # the hook resolves relative paths against the cwd, the kernel against a dir_fd: a cell that
            # moved its cwd away from the fd's folder could make the two disagree, so it stays put
            raise denied("sandbox: changing the working directory is not allowed")
        elif event == "os.listdir" or event == "os.scandir":  # the import path's folders list (imports need it)
            if args and args[0] is not None and (type_(args[0]) is int_ or resolve(args[0]) not in listable):
                check_readable(args[0])

    sys.addaudithook(hook)


# ---------------------------------------------------------------- serving cells


class _CappedWriter:
    """``sys.stdout`` and ``sys.stderr`` of the cells: forwards the first ``limit`` characters of a cell's
    output to the parent as written, then only counts what it drops, so a cell printing gigabytes costs
    neither worker nor parent memory."""

    encoding, errors = "utf-8", "replace"

    def __init__(self, fd: int, limit: int) -> None:
        self.fd, self.limit = fd, limit
        self.sent = self.dropped = 0

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = self.limit - self.sent
        if room > 0 and text:
            chunk = text[:room]
            _send(self.fd, OUTPUT, chunk.encode("utf-8", "replace"))
            self.sent += len(chunk)
            self.dropped += len(text) - len(chunk)
        else:
            self.dropped += len(text)
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False


def _format_exception(exc: BaseException, limit: int, sources: dict[str, str]) -> str:
    """The traceback as Python prints it, without this file's frames (the cell runner, the audit hook).

    ``traceback`` and ``linecache`` are imported here, at the first exception, to keep the start fast.
    """
    import linecache
    import traceback

    for filename, code in sources.items():
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    if isinstance(exc, SyntaxError):
        text = "".join(traceback.format_exception_only(type(exc), exc))
    else:
        report = traceback.TracebackException(type(exc), exc, exc.__traceback__, compact=True)
        seen: set[int] = set()
        pending = [report]
        while pending:
            te = pending.pop()
            if te is None or id(te) in seen:
                continue
            seen.add(id(te))
            te.stack = traceback.StackSummary.from_list([f for f in te.stack if f.filename != __file__])
            pending += [te.__cause__, te.__context__]
        text = "".join(report.format())
    text = text.rstrip("\n")
    return text if len(text) <= limit else "..." + text[-limit:]


def _run_cell(code: str, filename: str, namespace: dict, out: _CappedWriter, limit: int, sources: dict) -> dict:
    """Run one cell like a Jupyter cell: statements, then the value of a final bare expression, if not None."""
    sources[filename] = code
    try:
        tree = compile(code, filename, "exec", _ast.PyCF_ONLY_AST)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], _ast.Expr) else None
        exec(compile(tree, filename, "exec"), namespace)
        if last is not None:
            value = eval(compile(_ast.Expression(last.value), filename, "eval"), namespace)
            if value is not None:
                out.write(repr(value) + "\n")
    except SystemExit as exc:
        return {"error": "exit", "traceback": f"SystemExit: {exc.code}"}
    except MemoryError as exc:
        try:
            return {"error": "memory", "traceback": _format_exception(exc, limit, sources)}
        except MemoryError:
            return {"error": "memory", "traceback": "MemoryError"}
    except BaseException as exc:
        return {"error": "exception", "traceback": _format_exception(exc, limit, sources)}
    return {"error": None, "traceback": ""}


def _serve(requests: int, replies: int, limit: int, backstop_s: float) -> None:
    """Answer requests until the parent closes the pipe (or a cell calls ``sys.exit``).

    ``backstop_s`` arms SIGALRM (default action: terminate) during a cell: the parent kills the worker at
    its own timeout, this only ends a cell orphaned by a parent that died mid-call.
    """
    namespace = {"__name__": "__main__", "__builtins__": builtins, "exit": sys.exit, "quit": sys.exit}
    out, sources = _CappedWriter(replies, limit), {}
    sys.stdout = sys.stderr = sys.__stdout__ = sys.__stderr__ = out
    cell = 0
    while True:
        header = _read_exact(requests, REQUEST.size)
        code = None if header is None else _read_exact(requests, REQUEST.unpack(header)[0])
        if code is None:
            return
        cell += 1
        out.sent = out.dropped = 0
        signal.setitimer(signal.ITIMER_REAL, backstop_s)
        result = _run_cell(code.decode("utf-8", "replace"), f"<cell {cell}>", namespace, out, limit, sources)
        signal.setitimer(signal.ITIMER_REAL, 0)
        result["dropped"] = out.dropped
        _send(replies, RESULT, json.dumps(result).encode())
        if result["error"] == "exit":
            return


def main() -> None:
    config = json.loads(sys.argv[1])
    sys.argv[:] = [""]
    sys.path[:] = config["sys_path"]
    requests, replies = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    try:
        report = _confine(config)
        _neuter_ctypes()
        _stub_process_spawning()
        if config["audit_hook"]:
            _install_audit_hook(config["workdir"], config.get("visible"), config["sys_path"])
    except Exception as exc:  # reported to the parent, which raises
        _send(replies, FAILED, f"{type(exc).__name__}: {exc}".encode())
        os._exit(FAILED_EXIT)
    _send(replies, HELLO, json.dumps(report).encode())
    try:
        _serve(requests, replies, config["max_output_chars"], config["timeout_s"] * 2 + 5)
    except MemoryError:
        os._exit(MEMORY_EXIT)
    except OSError:  # the parent went away
        pass
    os._exit(0)


if __name__ == "__main__":
    main()

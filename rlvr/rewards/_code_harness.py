"""The test harness of :mod:`rlvr.rewards.code`: its source is sent as one cell to a FRESH sandbox interpreter.

Never imported by rlvr: :data:`rlvr.rewards.code.HARNESS` reads this file's text and appends one call,
``_rlvr_code_harness(...)`` with the program, the test cases and a per-call nonce as literals. The
interpreter is thrown away afterwards, so the harness may change it for good (audit hook, signals, stdout).

Order: bind every function used after the program starts (``os.write``, the reply pipe's descriptor, the
frame packer, ``exec``, ``repr``...) while the interpreter is still clean; compile the tests; import the
modules the stub and the tests use and snapshot their namespaces; run the problem's stub (its helpers,
e.g. HumanEval's ``poly``, are what the tests call, whatever the program redefines); then lock down
(stdout to /dev/null, an audit hook that refuses frame objects, tracing and new audit hooks, no new
signal handlers) and run the program, then each case, each under the remaining time budget (SIGALRM ->
KeyboardInterrupt). After the program and after every call of the entry point, the snapshotted modules
are put back, gc callbacks are cleared and the entry point's return value must be a *plain value*
(exact builtin types, recursively), so an object whose ``__eq__`` always says True fails.

Cases: ``("v", expr, limit)`` is evaluated and its ``repr`` sent back (the parent compares it with an
expected value that never enters the sandbox); ``("s", statements)`` passes if it raises nothing.
The report is one line written straight to the reply pipe with the bound ``os.write``:
``<nonce> <len>:<status><len>:<case 1>...`` where a value case is its repr, ``""`` (raised, not a plain
value) or ``"~0"``/``"~1"`` (longer than its limit, and its truth value), and a statement case is 1 or 0.
Nothing the program controls is ever concatenated into the line (a ``str`` subclass's ``__radd__``
would see the nonce): only exact ``str`` values the harness built itself.
"""


def _rlvr_code_harness(program, cases, setup, stub, entry, guard, nonce, budget):
    import _signal
    import builtins
    import gc
    import os
    import signal
    import sys
    import time

    worker = sys.modules["__main__"]
    write, pack, output_kind, reply_fd = os.write, worker.FRAME.pack, worker.OUTPUT, sys.stdout.fd
    clock, set_timer, real_timer = time.monotonic, signal.setitimer, signal.ITIMER_REAL
    exec_, eval_, compile_, repr_, type_, id_, len_, bool_, str_ = exec, eval, compile, repr, type, id, len, bool, str
    base_exception, value_error, permission_error, runtime_error, system_exit, keyboard_interrupt = (
        BaseException, ValueError, PermissionError, RuntimeError, SystemExit, KeyboardInterrupt,
    )  # fmt: skip
    syntax_error, memory_error, recursion_error = SyntaxError, MemoryError, RecursionError
    module_type, modules, gc_callbacks, gc_disable = type_(sys), sys.modules, gc.callbacks, gc.disable
    clean_builtins = dict(builtins.__dict__)
    plain_ids = frozenset(
        id_(t) for t in (int, float, complex, bool, str, bytes, type(None), list, tuple, dict, set, frozenset)
    )
    container_ids = frozenset(id_(t) for t in (list, tuple, set, frozenset))
    dict_id = id_(dict)
    started = clock()
    graveyard = []  # what restore() takes out of a module: kept alive, so no __del__ runs mid-test

    def send(status, results):
        parts = [nonce, " ", str_(len_(status)), ":", status]
        for text in results:
            parts += [str_(len_(text)), ":", text]
        payload = ("".join(parts) + "\n").encode("utf-8", "surrogatepass")
        data = pack(output_kind, len_(payload)) + payload
        while data:
            data = data[write(reply_fd, data) :]

    # ---- trusted set-up (nothing of the program has run yet)
    try:
        compiled = [
            (kind, compile_(source, f"<test {i}>", "eval" if kind == "v" else "exec"), limit)
            for i, (kind, source, limit) in enumerate(cases)
        ]
        setup_code = compile_(setup, "<test setup>", "exec") if setup else None
    except base_exception:
        return send("bad_test", [])
    saved = []
    for name in guard:
        try:
            __import__(name)
            module = modules[name]
        except base_exception:
            continue
        saved.append((name, module, module.__dict__, dict(module.__dict__)))
    helpers = {}
    if stub:
        stub_ns = {"__name__": "__stub__", "__builtins__": clean_builtins}
        try:
            exec_(compile_(stub, "<stub>", "exec"), stub_ns)
        except base_exception:
            return send("bad_stub", [])
        helpers = {k: v for k, v in stub_ns.items() if k != entry and not k.startswith("__")}

    tampered = []

    def restore():
        """Undo what the program did to the modules the stub and the tests use."""
        gc_disable()
        del gc_callbacks[:]
        for name, module, namespace, snapshot in saved:
            modules[name] = module
            graveyard.append(list(namespace.values()))  # always: a changed value's __eq__ must not decide
            namespace.clear()
            namespace.update(snapshot)
            if type_(module) is not module_type:  # __class__ reassigned: its attribute lookups are the program's
                tampered.append(name)

    def is_plain(value):
        """Exact builtin types all the way down (ids compared: a metaclass's __eq__ or __hash__ never runs)."""
        stack, seen, size = [value], set(), 0
        seen_add = seen.add
        while stack:
            item = stack.pop()
            kind = id_(type_(item))
            if kind not in plain_ids:
                return False
            if kind in container_ids or kind == dict_id:
                if id_(item) in seen:
                    continue
                seen_add(id_(item))
                size += len_(item)
                if size > 1_000_000:
                    return False
                if kind == dict_id:
                    stack.extend(item.keys())
                    stack.extend(item.values())
                else:
                    stack.extend(item)
        return True

    def guarded(fn):
        def candidate(*args, **kwargs):
            try:
                value = fn(*args, **kwargs)
            finally:
                restore()
            if not is_plain(value):
                raise value_error("the entry point returned something other than a plain value")
            return value

        return candidate

    def remaining():
        return budget - (clock() - started)

    def arm():
        left = remaining()
        if left <= 0:
            raise keyboard_interrupt
        set_timer(real_timer, left)

    def disarm():
        set_timer(real_timer, 0)

    # ---- lock-down
    signal.signal(signal.SIGALRM, signal.default_int_handler)  # the case budget: KeyboardInterrupt

    def no_handlers(*args, **kwargs):
        raise permission_error("sandbox: installing signal handlers is not allowed here")

    signal.signal = _signal.signal = no_handlers
    sink = open(os.devnull, "w")  # noqa: SIM115  (the interpreter is thrown away)
    sys.stdout = sys.stderr = sys.__stdout__ = sys.__stderr__ = sink
    frame_attributes = frozenset(("tb_frame", "gi_frame", "cr_frame", "ag_frame"))

    def audit(event, args):
        if event == "sys._getframe" or event == "sys._current_frames":
            raise value_error("sandbox: frame objects are not available")  # what stdlib callers expect
        if event == "object.__getattr__" and args[1] in frame_attributes:
            raise permission_error("sandbox: frame objects are not available")
        if event == "sys.settrace" or event == "sys.setprofile":
            raise permission_error("sandbox: tracing is not allowed")
        if event == "sys.addaudithook":
            raise runtime_error("sandbox: audit hooks are not allowed")  # RuntimeError: silently not added

    sys.addaudithook(audit)

    # ---- the program
    namespace = {"__name__": "__solution__", "__builtins__": builtins}
    status = "ok"
    try:
        code = compile_(program, "<program>", "exec")
        arm()
        try:
            exec_(code, namespace)
        finally:
            disarm()
    except base_exception as exc:
        kind = type_(exc)
        status = (
            "exit" if kind is system_exit else "timeout" if kind is keyboard_interrupt
            else "syntax" if kind is syntax_error else "memory" if kind is memory_error
            else "recursion" if kind is recursion_error else "error"
        )  # fmt: skip
    if status != "ok":
        return send(status, [])
    restore()
    tests = dict(namespace)
    tests.update(helpers)
    tests["__builtins__"], tests["__name__"] = clean_builtins, "__test__"
    if entry and entry in namespace:
        tests[entry] = tests["candidate"] = guarded(namespace[entry])
    if setup_code is not None:
        try:
            arm()
            try:
                exec_(setup_code, tests)
            finally:
                disarm()
        except base_exception:  # the program left no time, or broke what the test code needs
            return send("setup", [])

    # ---- the cases
    results = []
    for kind, code, limit in compiled:
        text = "" if kind == "v" else "0"
        try:
            try:
                arm()
                try:
                    value = eval_(code, tests) if kind == "v" else exec_(code, tests)
                finally:
                    disarm()
            finally:
                restore()
            if kind == "s":
                text = "1"
            elif is_plain(value):
                text = repr_(value)
                if len_(text) > limit:
                    text = "~1" if bool_(value) else "~0"
        except base_exception:
            text = "" if kind == "v" else "0"
        results.append(text)
    disarm()
    send("tampered" if tampered else "ok", results)

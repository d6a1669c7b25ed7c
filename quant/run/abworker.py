"""One side of an A/B comparison: a worker process that runs one checkout's code (its ``quant`` package first on
``PYTHONPATH``) and times its builds of the variants on command from the coordinator (:mod:`quant.run.ab`).

Started as a script, so that it imports nothing of the coordinator's checkout: it only calls what every
checkout of the restructured package has (``quant.run.options.defaults`` and ``open_session``, the builder, the
evaluations). It speaks JSON lines: one request on stdin, one answer on stdout (``{"error": ...}`` on failure)::

    {"cmd": "open", "options": {...}}        -> {"quant": "<path of the package it imported>"}
    {"cmd": "prepare", "variants": [...]}    -> {"rows": {name: {"cached", "artifact", "map50_95", ...}},
                                                 "unknown": [names this checkout does not register]}
    {"cmd": "load", "variant": name}         -> {}          (its runner, on the run's sample input)
    {"cmd": "time", "variant": name, "calls": n} -> {"times": [seconds of each call]}
    {"cmd": "quit"}

May import: anything in quant (of the checkout it runs).
"""

import json
import os
import sys
import time
import traceback


def _rows(session, names):
    builder, evals = session.suite.builder, session.suite.evaluations
    rows, unknown = {}, [n for n in names if n not in builder.variants]
    for name in names:
        if name in unknown:
            continue
        path = builder.artifact(name)
        m = builder.manifest(name)
        acc = evals.accuracy(name)
        rows[name] = {"cached": bool(m.cached), "artifact": str(path), "map50_95": 100 * acc.map50_95,
                      "map50": 100 * acc.map50}
    return rows, unknown


def serve(stdin, stdout) -> None:
    from quant.util import offline

    offline.configure()
    guard = offline.NetworkGuard().__enter__()
    session, runners, x = None, {}, None
    try:
        for line in stdin:
            req = json.loads(line)
            try:
                cmd = req["cmd"]
                if cmd == "quit":
                    break
                if cmd == "open":
                    import quant
                    from quant.run.options import defaults, open_session

                    known = vars(defaults())
                    session = open_session(defaults(**{k: v for k, v in req["options"].items() if k in known}))
                    out = {"quant": os.path.dirname(quant.__file__)}
                elif cmd == "prepare":
                    rows, unknown = _rows(session, req["variants"])
                    out = {"rows": rows, "unknown": unknown}
                elif cmd == "load":
                    runners[req["variant"]] = session.suite.builder.runner(req["variant"])
                    x = session.suite.inputs.sample_input() if x is None else x
                    out = {}
                elif cmd == "time":
                    run, times = runners[req["variant"]], []
                    for _ in range(int(req["calls"])):
                        t0 = time.perf_counter()
                        run(x)
                        times.append(time.perf_counter() - t0)
                    out = {"times": times}
                else:
                    out = {"error": f"unknown command {cmd!r}"}
            except Exception as e:  # noqa: BLE001  (said to the coordinator, which words it in one line)
                traceback.print_exc(file=sys.stderr)
                out = {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"}
            stdout.write(json.dumps(out) + "\n")
            stdout.flush()
    finally:
        guard.__exit__(None, None, None)


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]  # the checkout's package, not this folder
    protocol = os.fdopen(os.dup(1), "w", buffering=1)  # answers only: whatever the libraries print goes to stderr
    os.dup2(2, 1)
    serve(sys.stdin, protocol)

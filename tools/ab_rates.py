"""How often the A/B latency gate (--compare-to REF) raises a false alarm, and how often it catches a slowdown,
measured on this machine: REPEATS A/B comparisons of this checkout against a scratch copy of itself, clean (A/A)
and with the OpenVINO runner slowed by a busy-wait of each PLANTED fraction of its call time (one row's runner:
ov-int8's). The figures on the docs' results page come from it.

    python tools/ab_rates.py --cache-dir DIR [--repeats 10] [--planted 0.05 0.10 0.20] [--variants ...]

The cache should hold the variants' artifacts (a warm run first); the scratch copies share its keys (only the
runner changes), so nothing is rebuilt.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from quant.gate.thresholds import HISTORY_DEFAULTS  # noqa: E402
from quant.run.ab import run_ab  # noqa: E402
from quant.run.options import defaults  # noqa: E402
from quant.run.reference import Checkout  # noqa: E402

SLOW = "ov-int8"
PLANT = ("        run = lambda x: request.infer({0: x})  # noqa: E731\n",
         "        import time\n\n"
         "        def run(x):  # planted slowdown\n"
         "            t0 = time.perf_counter()\n"
         "            out = request.infer({0: x})\n"
         "            slow = {fraction} if variant.name == '" + SLOW + "' else 0.0\n"
         "            end = time.perf_counter() + slow * (time.perf_counter() - t0)\n"
         "            while time.perf_counter() < end:\n"
         "                pass\n"
         "            return out\n")


def scratch(dst: Path, fraction: float | None) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "quant"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dst / f)
    if fraction:
        path = dst / "quant" / "backends" / "openvino.py"
        text = path.read_text()
        assert PLANT[0] in text, "the OpenVINO runner's line to plant in has changed"
        path.write_text(text.replace(PLANT[0], PLANT[1].replace("{fraction}", repr(fraction))))
    return dst


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--planted", type=float, nargs="*", default=[0.05, 0.10, 0.20])
    ap.add_argument("--variants", nargs="*", default=["onnx-fp32", "onnx-int8-percentile", "ov-int8", "onnx-int8-auto"])
    ap.add_argument("--out", default="ab-rates.json")
    a = ap.parse_args()
    options = defaults(cache_dir=a.cache_dir)
    limit = HISTORY_DEFAULTS["max_ab_latency_regression"]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        reference = Checkout(scratch(Path(tmp) / "ref", None), "a clean copy")
        for fraction in [0.0, *a.planted]:
            candidate = scratch(Path(tmp) / f"cand-{fraction}", fraction)
            for i in range(a.repeats):
                t0 = time.monotonic()
                r = run_ab(options, reference, a.variants, {}, lambda v: {}, candidate=candidate,
                           log_dir=Path(tmp) / "logs")
                rows = {x.variant: x for x in r.rows}
                results.append({"planted": fraction, "repeat": i, "seconds": round(time.monotonic() - t0, 1),
                                "ratios": {v: round(x.latency.ratio, 4) for v, x in rows.items()},
                                "ci": {v: [round(c, 4) for c in x.latency.ci] for v, x in rows.items()},
                                "flagged": sorted(v for v, x in rows.items() if x.failures)})
                print(json.dumps(results[-1]), flush=True)
    Path(a.out).write_text(json.dumps(results, indent=1))
    print(f"the default limit is +{100 * limit:.0f} %; the verdicts at other limits, from the same runs:")
    for lim in (0.03, 0.04, 0.05, 0.06, 0.08, 0.10):
        print(f"limit +{100 * lim:.0f} %: " + "; ".join(verdicts(results, fraction, lim) for fraction in [0.0, *a.planted]))
    return 0


def verdicts(results: list[dict], fraction: float, limit: float) -> str:
    """How the runs with ``fraction`` planted fare at ``limit``: the slowed row caught, other rows flagged."""
    runs = [x for x in results if x["planted"] == fraction]
    flag = lambda x, v: x["ratios"][v] > 1 + limit and x["ci"][v][0] > 1 + limit / 2  # noqa: E731  (the gate's rule)
    caught = sum(flag(x, SLOW) for x in runs)
    others = [(x, v) for x in runs for v in x["ratios"] if v != SLOW or not fraction]
    false = sum(flag(x, v) for x, v in others)
    head = f"planted {100 * fraction:.0f} %: " + (f"{SLOW} caught {caught}/{len(runs)}, " if fraction else "")
    return head + f"false alarms {false}/{len(others)}"


if __name__ == "__main__":
    sys.exit(main())

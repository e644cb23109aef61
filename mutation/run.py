"""Mutation testing of the core: cosmic-ray's operators, each module against its own tests.

    python mutation/run.py [--module actors/_state.py] [--lines 80-95] [--jobs 2] [--timeout 20]

For each module of mutation/config.toml, every mutant cosmic-ray's operators make of it (none in
type annotations, which `from __future__ import annotations` never evaluates; only inside the
functions named by `only`, when given) is written into a private copy of the tree and the
module's tests run there with pytest `-x`: a failure kills the mutant, passing lets it survive,
running past the timeout counts as killed (hung). Forked from one process that has the test
dependencies imported already, which saves seconds per mutant. Mutants listed in
mutation/equivalent.toml are left out of the score. The working tree itself is never touched.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import fnmatch
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
RESULTS = HERE / ".results"
COPIED = ("actors", "runtime", "storage", "tests", "examples", "pyproject.toml", "README.md")
# Imported once in the driver, before any fork: what every test run would import again.
PRELOAD = ("pytest", "_pytest.python", "hypothesis", "pytest_asyncio", "msgspec", "asyncio",
           "uvloop", "asyncpg", "redis", "starlette.applications", "httpx", "websockets",
           "uvicorn")


@dataclass
class Mutant:
    module: str
    operator: str
    occurrence: int
    line: int
    before: str
    after: str = ""
    outcome: str = ""  # killed, hung, error (the mutated tree broke before a test ran), survived
    equivalent: str = ""  # why, when listed as equivalent


@dataclass
class Score:
    module: str
    mutants: list[Mutant] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for m in self.mutants if m.outcome == outcome and not m.equivalent)

    @property
    def equivalent(self) -> int:
        return sum(1 for m in self.mutants if m.equivalent)

    @property
    def score(self) -> float:
        counted = len(self.mutants) - self.equivalent
        killed = self.count("killed") + self.count("hung") + self.count("error")
        return 100.0 * killed / counted if counted else 100.0


def annotation_lines(tree: ast.Module) -> set[tuple[int, int, int, int]]:
    """Spans (line, col, end line, end col) of every annotation: never evaluated here."""
    spans = set()
    for node in ast.walk(tree):
        found: list[ast.expr | None] = []
        if isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.append(node.returns)
            args = node.args
            for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
                if a is not None:
                    found.append(a.annotation)
        for ann in found:
            if ann is not None:
                spans.add((ann.lineno, ann.col_offset, ann.end_lineno or ann.lineno,
                           ann.end_col_offset or 0))
    return spans


def function_lines(tree: ast.Module, names: list[str]) -> list[tuple[int, int]]:
    """Line ranges of the functions named `Class.method` or `function`."""
    ranges, found = [], set()
    for node in tree.body:
        members = [(node.name, node)] if isinstance(node, (ast.FunctionDef,
                                                           ast.AsyncFunctionDef)) else []
        if isinstance(node, ast.ClassDef):
            members = [(f"{node.name}.{m.name}", m) for m in node.body
                       if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for name, fn in members:
            if name in names:
                found.add(name)
                ranges.append((fn.lineno, fn.end_lineno or fn.lineno))
    if set(names) - found:
        raise SystemExit(f"mutation/config.toml names functions not found: {set(names) - found}")
    return ranges


def mutants_of(module: str, only: list[str] | None, excluded: list[str]) -> list[Mutant]:
    """Every mutant cosmic-ray's operators make of `module`, in its (deterministic) order."""
    from cosmic_ray.commands.init import _all_work_items
    from cosmic_ray.mutating import mutate_code
    from cosmic_ray.plugins import get_operator

    source = (ROOT / module).read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    annotations = annotation_lines(tree)
    ranges = function_lines(tree, only) if only else None
    found = []
    for item in _all_work_items([Path(module)], {}):
        spec = item.mutations[0]
        if any(re.fullmatch(x, spec.operator_name.split("/")[-1]) for x in excluded):
            continue
        (line, col), end = spec.start_pos, spec.end_pos
        if any((a, b) <= (line, col) and end <= (c, d) for a, b, c, d in annotations):
            continue
        if ranges is not None and not any(lo <= line <= hi for lo, hi in ranges):
            continue
        mutant = Mutant(module, spec.operator_name, spec.occurrence, line, lines[line - 1].strip())
        code = mutate_code(source, get_operator(spec.operator_name)(), spec.occurrence)
        if code is None:
            continue
        changed = [b for a, b in zip(lines, code.splitlines(), strict=False) if a != b]
        mutant.after = changed[0].strip() if changed else "(lines removed)"
        mutant.code = code  # type: ignore[attr-defined]
        found.append(mutant)
    return found


def results_path(module: str) -> Path:
    return RESULTS / (module.replace("/", "_") + ".json")


def source_hash(module: str) -> str:
    return hashlib.sha256((ROOT / module).read_bytes()).hexdigest()


def save_results(score: Score) -> None:
    """Each mutant's outcome, for `--again`: valid while the module's source is unchanged."""
    RESULTS.mkdir(exist_ok=True)
    outcomes = [[m.operator, m.occurrence, m.outcome] for m in score.mutants if m.outcome]
    results_path(score.module).write_text(json.dumps(
        {"source": source_hash(score.module), "outcomes": outcomes}, indent=0))


def reuse_kills(mutants: list[Mutant], module: str) -> int:
    """Take the kills of the last run of `module` (tests are only ever added, so a mutant
    killed stays killed); how many were taken. Survivors are tested again."""
    path = results_path(module)
    if not path.exists():
        return 0
    saved = json.loads(path.read_text())
    if saved["source"] != source_hash(module):
        return 0
    killed = {(op, n): outcome for op, n, outcome in saved["outcomes"]
              if outcome in ("killed", "hung", "error")}
    taken = 0
    for m in mutants:
        if not m.equivalent and (m.operator, m.occurrence) in killed:
            m.outcome = killed[m.operator, m.occurrence]
            taken += 1
    return taken


def load_equivalents() -> list[dict[str, object]]:
    path = HERE / "equivalent.toml"
    return tomllib.loads(path.read_text()).get("equivalent", []) if path.exists() else []


def mark_equivalents(mutants: list[Mutant], equivalents: list[dict[str, object]]) -> None:
    """Mark the mutants each entry names: its module, its operator (a glob on cosmic-ray's name
    without "core/"), and any of `line`, `occurrence`, `match` (text of the original line) and
    `mutated` (text of the mutated line)."""
    for entry in equivalents:
        hits = [m for m in mutants if m.module == entry["module"]
                and fnmatch.fnmatchcase(m.operator.split("/")[-1], str(entry["operator"]))
                and ("line" not in entry or m.line == entry["line"])
                and ("occurrence" not in entry or m.occurrence == entry["occurrence"])
                and ("match" not in entry or str(entry["match"]) in m.before)
                and ("mutated" not in entry or str(entry["mutated"]) in m.after)]
        for m in hits:
            m.equivalent = str(entry["why"])


def preload() -> None:
    import importlib

    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    if any(name.split(".")[0] in ("actors", "runtime", "storage") for name in sys.modules):
        raise SystemExit("the driver must not import the code it mutates")


def make_copy() -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="subjects-mutation-"))
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, tmp / name)
    return tmp


def start(copy: Path, mutant: Mutant, tests: list[str], seed: int) -> int:
    """Write the mutant into `copy` and fork a child running the tests there; its pid."""
    (copy / mutant.module).write_text(mutant.code)  # type: ignore[attr-defined]
    pid = os.fork()
    if pid:
        return pid
    code = 3
    try:
        os.setpgid(0, 0)
        log = os.open(copy / "mutant.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.chdir(copy)
        sys.path.insert(0, str(copy))
        sys.dont_write_bytecode = True
        import pytest

        code = int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", "--no-header",
                                f"--hypothesis-seed={seed}", "-o", "addopts=", *tests]))
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def baseline(tests: dict[str, list[str]], seed: int) -> None:
    """The tests must pass on the code as it is, or every mutant would look killed."""
    copy = make_copy()
    try:
        for module, files in tests.items():
            original = Mutant(module, "none", 0, 0, "")
            original.code = (ROOT / module).read_text()  # type: ignore[attr-defined]
            _, status = os.waitpid(start(copy, original, files, seed), 0)
            if os.waitstatus_to_exitcode(status) != 0:
                print((copy / "mutant.log").read_text()[-3000:])
                raise SystemExit(f"the tests of {module} fail without any mutant")
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def outcome_of(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return {0: "survived", 1: "killed"}.get(code, "error")


def run(mutants: list[Mutant], tests: dict[str, list[str]], jobs: int, timeout: float,
        seed: int) -> None:
    """Test every mutant not known to be equivalent, `jobs` at a time."""
    todo = [m for m in mutants if not m.equivalent and not m.outcome]
    copies = [make_copy() for _ in range(jobs)]
    free = list(copies)
    running: dict[int, tuple[Mutant, Path, float]] = {}
    done = 0
    try:
        while todo or running:
            while todo and free:
                mutant, copy = todo.pop(0), free.pop()
                pid = start(copy, mutant, tests[mutant.module], seed)
                running[pid] = (mutant, copy, time.monotonic() + timeout)
            time.sleep(0.02)
            for pid, (mutant, copy, deadline) in list(running.items()):
                finished, status = os.waitpid(pid, os.WNOHANG)
                if finished:
                    mutant.outcome = outcome_of(status)
                elif time.monotonic() > deadline:
                    os.killpg(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    mutant.outcome = "hung"
                else:
                    continue
                del running[pid]
                shutil.copy2(ROOT / mutant.module, copy / mutant.module)
                free.append(copy)
                done += 1
                if mutant.outcome == "error" and os.environ.get("MUTATION_SHOW_ERRORS"):
                    print((copy / "mutant.log").read_text()[-2000:])
                print(f"\r  {done}/{done + len(todo) + len(running)} {mutant.module}",
                      end="", file=sys.stderr, flush=True)
    finally:
        for pid in running:
            os.killpg(pid, signal.SIGKILL)
        for copy in copies:
            shutil.rmtree(copy, ignore_errors=True)
        print(file=sys.stderr)


def report(scores: list[Score]) -> None:
    for s in scores:
        for m in s.mutants:
            if m.outcome in ("survived", "hung") and not m.equivalent:
                print(f"  {m.outcome} {m.module}:{m.line} {m.operator} #{m.occurrence}\n"
                      f"      - {m.before}\n      + {m.after}")
    print(f"\n{'module':28} {'mutants':>7} {'killed':>6} {'hung':>4} {'error':>5} "
          f"{'survived':>8} {'equiv':>5} {'score':>6}")
    for s in scores:
        print(f"{s.module:28} {len(s.mutants):7} {s.count('killed'):6} {s.count('hung'):4} "
              f"{s.count('error'):5} {s.count('survived'):8} {s.equivalent:5} {s.score:5.1f}%")
    print("score = (killed + hung + error) / (mutants - equivalent); error: the tests could not "
          "run (the mutant broke an import); equivalent mutants (mutation/equivalent.toml) "
          "are not run.")


def main() -> int:
    config = tomllib.loads((HERE / "config.toml").read_text())
    settings = config["run"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--module", action="append", help="only this module (repeatable)")
    parser.add_argument("--lines", help="only mutants on lines A-B")
    parser.add_argument("--jobs", type=int, default=settings.get("jobs", 1))
    parser.add_argument("--timeout", type=float, default=settings["timeout"])
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--again", action="store_true",
                        help="test only what survived the last run (mutation/.results)")
    args = parser.parse_args()
    seed = int(settings["seed"])
    if os.environ.get("PYTHONHASHSEED") != str(seed):  # the children inherit the hash seed
        os.environ["PYTHONHASHSEED"] = str(seed)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    modules = config["modules"]
    chosen = args.module or list(modules)
    unknown = set(chosen) - set(modules)
    if unknown:
        raise SystemExit(f"not in mutation/config.toml: {sorted(unknown)}")
    equivalents = load_equivalents()
    scores, everything = [], []
    for module in chosen:
        mutants = mutants_of(module, modules[module].get("only"),
                             settings.get("exclude-operators", []))
        if args.lines:
            lo, hi = (int(x) for x in args.lines.split("-"))
            mutants = [m for m in mutants if lo <= m.line <= hi]
        mark_equivalents(mutants, equivalents)
        if args.again and not args.list:
            print(f"{module}: {reuse_kills(mutants, module)} kills taken from the last run",
                  file=sys.stderr)
        scores.append(Score(module, mutants))
        everything += mutants
    if args.list:
        for m in everything:
            print(f"{m.module}:{m.line} {m.operator} #{m.occurrence}: {m.before} -> {m.after}"
                  + (f"  [equivalent: {m.equivalent}]" if m.equivalent else ""))
        return 0
    preload()
    tests = {}
    for module in chosen:
        tests[module] = [t for t in modules[module]["tests"] if (ROOT / t).exists()]
        if missing := set(modules[module]["tests"]) - set(tests[module]):
            print(f"warning: {module}: no such test files {sorted(missing)}", file=sys.stderr)
    baseline(tests, seed)
    run(everything, tests, max(1, args.jobs), args.timeout, seed)
    if not args.lines:
        for score in scores:
            save_results(score)
    report(scores)
    return 0


if __name__ == "__main__":
    sys.exit(main())

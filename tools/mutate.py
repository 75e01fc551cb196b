"""Mutation check: does `mechsim check` catch a broken mechanism?

Applies single-line mutations to copies of model files and checks each mutant the way
`mechsim check` does (load and unit check, conservation laws, a short run, then the
model's [[expect]] entries, stopping at the first one falsified).  Kinds of mutation:

  remove  each reaction's rate set to 0
  sign    each + or - in a rate law or rule flipped, each unary minus removed
  drop    each term of a sum or difference in a rate law or rule dropped

Prints the mutation score per model and kind (caught / total) and lists the survivors.

    python tools/mutate.py                         # both flagship models, every kind
    python tools/mutate.py cd40_apc --kinds remove --workers 2
"""

from __future__ import annotations

import argparse
import ast
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

KINDS = ("remove", "sign", "drop")
MODELS = ("cd38_myeloma", "cd40_apc")


@dataclass(frozen=True)
class Mutant:
    model: str          # the model's name
    kind: str           # one of KINDS
    where: str          # "reaction binding" / "rule CL"
    before: str
    after: str
    text: str           # the whole mutated model file

    def __str__(self) -> str:
        return f"{self.model}  {self.kind:<6}  {self.where}: {self.before!r} -> {self.after!r}"


def mutants(path: Path, kinds=KINDS) -> list[Mutant]:
    """Every single-line mutant of the model file at ``path`` of the given kinds."""
    import tomllib

    from mechsim.io.toml_source import TomlSource

    text = path.read_text()
    src = TomlSource(text, str(path))
    data = tomllib.loads(text)
    name = data.get("model", {}).get("name", path.stem)
    lines = text.splitlines(keepends=True)
    found = []

    def line_of(table, key) -> int:
        return int(src.where(table, key).rsplit(":", 1)[1]) - 1

    def add(kind, where, index, before, after):
        line = lines[index]
        quoted = f'"{before}"'
        if after == before or quoted not in line:
            return
        changed = lines[:index] + [line.replace(quoted, f'"{after}"', 1)] + lines[index + 1:]
        found.append(Mutant(name, kind, where, before, after, "".join(changed)))

    expressions = []
    for rname, reaction in data.get("reactions", {}).items():
        index = line_of(("reactions", rname), "rate")
        if "remove" in kinds:
            # times 0, not "0": the rate keeps its dimension, so the mutant still loads
            add("remove", f"reaction {rname}", index, reaction["rate"],
                f"0*({reaction['rate']})")
        expressions.append((f"reaction {rname}", index, reaction["rate"]))
    for rule, value in data.get("rules", {}).items():
        expr = value["expr"] if isinstance(value, dict) else value
        if isinstance(expr, str):
            expressions.append((f"rule {rule}", line_of(("rules",), rule), expr))
    for where, index, expr in expressions:
        for kind in ("sign", "drop"):
            if kind in kinds:
                for after in _variants(expr, kind):
                    add(kind, where, index, expr, after)
    return found


def _variants(expr: str, kind: str) -> list[str]:
    """Texts of ``expr`` with one sign flipped, or one term dropped."""
    tree = ast.parse(expr, mode="eval")
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.BinOp)
             and isinstance(n.op, (ast.Add, ast.Sub))]
    negations = [n for n in ast.walk(tree) if isinstance(n, ast.UnaryOp)
                 and isinstance(n.op, ast.USub)]
    out = []
    for i in range(len(nodes) if kind == "sign" else 0):
        copy = ast.parse(expr, mode="eval")
        target = _same(copy, nodes[i], tree)
        target.op = ast.Sub() if isinstance(target.op, ast.Add) else ast.Add()
        out.append(ast.unparse(copy))
    for i in range(len(negations) if kind == "sign" else 0):
        copy = ast.parse(expr, mode="eval")
        target = _same(copy, negations[i], tree)
        _replace(copy, target, target.operand)
        out.append(ast.unparse(copy))
    for i in range(len(nodes) if kind == "drop" else 0):
        for keep in ("left", "right"):
            copy = ast.parse(expr, mode="eval")
            target = _same(copy, nodes[i], tree)
            kept = getattr(target, keep)
            if keep == "right" and isinstance(target.op, ast.Sub):
                kept = ast.UnaryOp(ast.USub(), kept)
            _replace(copy, target, kept)
            out.append(ast.unparse(copy))
    return list(dict.fromkeys(v for v in out if v != ast.unparse(tree)))


def _same(copy: ast.AST, node: ast.AST, original: ast.AST) -> ast.AST:
    """The node of ``copy`` at the position ``node`` has in ``original``."""
    position = list(ast.walk(original)).index(node)
    return list(ast.walk(copy))[position]


def _replace(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list) and old in value:
                value[value.index(old)] = new
                return


def caught(mutant: Mutant, examples: int | None = None) -> tuple[bool, str, float]:
    """(caught, by what, seconds): checks ``mutant`` as `mechsim check` does, stopping at
    the first failure."""
    import warnings

    from mechsim.behaviour import DEFAULT_EXAMPLES, check_expectation
    from mechsim.checks import check_model
    from mechsim.errors import MechsimError
    from mechsim.io import load_model

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(folder) / f"{mutant.model}.toml"
        path.write_text(mutant.text)
        try:
            model = load_model(path)
        except MechsimError as exc:
            return True, f"load: {exc.message}", time.perf_counter() - started
        structural = check_model(model.replace(expectations=()))
        if not structural.ok:
            failed = next(s for s in structural.steps if not s.ok)
            return True, failed.text, time.perf_counter() - started
        for expectation in model.expectations:
            verdict = check_expectation(model, expectation,
                                        examples=examples or DEFAULT_EXAMPLES)
            if not verdict.ok:
                return True, f"expect {expectation.name!r}", time.perf_counter() - started
    return False, "", time.perf_counter() - started


def _check(args):
    mutant, examples = args
    return caught(mutant, examples)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=list(MODELS),
                        help="built-in model names or model files (default: both flagships)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"comma-separated kinds of mutation ({', '.join(KINDS)})")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--examples", type=int, default=None,
                        help="generated examples per expectation (default: mechsim check's)")
    args = parser.parse_args(argv)
    from mechsim.io.common import resolve

    kinds = tuple(k.strip() for k in args.kinds.split(","))
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kind {unknown[0]!r} (choose from {', '.join(KINDS)})")
    everything = [m for name in args.models for m in mutants(resolve(name, "models"), kinds)]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        outcomes = list(pool.map(_check, [(m, args.examples) for m in everything]))
    survivors = []
    print(f"{len(everything)} mutants, {time.perf_counter() - started:.0f} s "
          f"({args.workers} workers)")
    for model in dict.fromkeys(m.model for m in everything):
        for kind in kinds:
            rows = [(m, o) for m, o in zip(everything, outcomes) if m.model == model
                    and m.kind == kind]
            if rows:
                hit = sum(o[0] for _, o in rows)
                print(f"  {model:<14} {kind:<7} {hit:>3} / {len(rows):<3} caught "
                      f"({100 * hit / len(rows):.0f} %)")
                survivors += [m for m, o in rows if not o[0]]
    if survivors:
        print("survivors:")
        for m in survivors:
            print(f"  {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

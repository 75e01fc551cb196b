"""Population files (TOML): variability, covariates, covariate effects, correlations, seed.

Format (documented with an example in docs/populations.md)::

    [meta]
    model = "cd38_myeloma"
    seed = 20190302

    [variability]
    CLinf_ref = { distribution = "lognormal", cv = "47.5 %", source = "Fau et al. 2020" }

    [covariates.WT]
    distribution = "lognormal"
    median = "75.6 kg"
    cv = "20 %"

    [covariates.myeloma_type]
    categories = { IgG = 0.65, non_IgG = 0.35 }

    [covariates.BSA]                 # body surface area from the covariates HT and WT
    formula = "mosteller"            # or "dubois"

    [[effects]]
    covariate = "myeloma_type"
    level = "non_IgG"
    parameter = "CLinf_ref"
    multiply = 0.47

    [[correlations]]
    between = ["CLinf_ref", "V1_ref"]
    value = 0.3

Every value is read through the unit parser; nothing is evaluated.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import ParseError
from ..population import (
    BSA_FORMULAS,
    Categorical,
    Derived,
    Distribution,
    Effect,
    Fixed,
    Population,
)
from ..units import format_quantity, parse_quantity, ureg
from .common import resolve
from .toml_source import TomlSource

__all__ = ["is_population", "load_population", "read_population"]

_TABLES = {"meta", "variability", "covariates", "effects", "correlations", "fixed", "error"}
_DIST_KEYS = {"distribution", "median", "mean", "cv", "omega", "sd", "lower", "upper",
              "source", "note"}
_KINDS = ("lognormal", "normal", "uniform")


def load_population(name_or_path: str | Path) -> Population:
    """A built-in population (in params/) by name, or a population file by path."""
    return read_population(resolve(name_or_path, "params"))


def is_population(name_or_path: str | Path) -> bool:
    """Whether a file in params/ (or a path) is a population rather than a parameter set."""
    data = TomlSource.read(resolve(name_or_path, "params")).data
    return bool({"variability", "covariates"} & set(data))


def read_population(path: Path | str) -> Population:
    src = TomlSource.read(path)
    data = src.data
    unknown = sorted(set(data) - _TABLES)
    if unknown:
        raise ParseError(f"unknown table [{unknown[0]}] in a population file (allowed: "
                         f"{', '.join(sorted(_TABLES))})", src.where((unknown[0],)))
    meta = _table(src, data, "meta")
    bad = sorted(set(meta) - {"model", "description", "seed"})
    if bad:
        raise ParseError(f"[meta]: unknown key {bad[0]!r} (allowed: description, model, seed)",
                         src.where(("meta",), bad[0]))
    seed = meta.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ParseError(f"[meta] seed must be a non-negative integer, got {seed!r}",
                         src.where(("meta",), "seed"))
    variability = tuple(_distribution(src, ("variability",), name, entry)
                        for name, entry in _table(src, data, "variability").items())
    covariates = []
    for name, entry in _table(src, data, "covariates").items():
        if isinstance(entry, dict) and "categories" in entry:
            covariates.append(_categorical(src, name, entry))
        elif isinstance(entry, dict) and "formula" in entry:
            covariates.append(_derived(src, name, entry))
        else:
            covariates.append(_distribution(src, ("covariates",), name, entry))
    names = [d.name for d in variability] + [c.name for c in covariates]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ParseError(f"{twice[0]} is both varied and a covariate: give it once", src.path)
    effects = tuple(_effect(src, i, e) for i, e in enumerate(_array(src, data, "effects")))
    correlations = tuple(_correlation(src, i, c)
                         for i, c in enumerate(_array(src, data, "correlations")))
    if not variability and not covariates:
        raise ParseError("a population file needs [variability] or [covariates]", src.path)
    fixed = tuple(_fixed(src, name, entry)
                  for name, entry in _table(src, data, "fixed").items())
    from .params_file import read_error_table

    return Population(name=Path(src.path).stem, model=meta.get("model"),
                      variability=variability, covariates=tuple(covariates), effects=effects,
                      correlations=correlations, fixed=fixed,
                      errors=read_error_table(src, data.get("error", {})), seed=seed,
                      description=str(meta.get("description", "")), path=src.path)


def _table(src: TomlSource, data: dict, name: str) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ParseError(f"[{name}] must be a table", src.where((name,)))
    return value


def _array(src: TomlSource, data: dict, name: str) -> list:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ParseError(f"{name} must be written as [[{name}]] tables", src.where((name,)))
    return value


def _provenance(entry: dict, what: str, where: str) -> None:
    for key in ("source", "note"):
        if key in entry and not isinstance(entry[key], str):
            raise ParseError(f"{what}: {key} must be text", where)


def _distribution(src: TomlSource, table: tuple[str, ...], name: str, entry) -> Distribution:
    where = src.entry_where(table[0], name)
    what = f"{table[0]} {name}"
    if not isinstance(entry, dict):
        raise ParseError(f"{what}: write a table such as {{ distribution = \"lognormal\", "
                         f"cv = \"30 %\" }}", where)
    unknown = sorted(set(entry) - _DIST_KEYS)
    if unknown:
        raise ParseError(f"{what}: unknown key {unknown[0]!r} (allowed: "
                         f"{', '.join(sorted(_DIST_KEYS))})", where)
    _provenance(entry, what, where)
    kind = entry.get("distribution")
    if kind not in _KINDS:
        raise ParseError(f"{what}: distribution must be one of {', '.join(_KINDS)}, got "
                         f"{kind!r}", where)
    allowed = {"lognormal": {"median", "cv", "omega"}, "normal": {"mean", "sd", "cv"},
               "uniform": set()}[kind]
    wrong = sorted(set(entry) & {"median", "mean", "cv", "omega", "sd"} - allowed)
    if wrong:
        raise ParseError(f"{what}: {wrong[0]!r} does not apply to a {kind} distribution", where)

    def quantity(key):
        if key not in entry:
            return None
        q = parse_quantity(entry[key], what=f"{what} {key}", where=where)
        if not math.isfinite(q.magnitude):
            raise ParseError(f"{what}: {key} must be finite, got {entry[key]!r}", where)
        return q

    lower, upper = quantity("lower"), quantity("upper")
    if lower is not None and upper is not None:
        if lower.dimensionality != upper.dimensionality:
            raise ParseError(f"{what}: lower and upper bounds have different dimensions",
                             where)
        if not lower < upper:
            raise ParseError(f"{what}: lower bound must be below the upper bound", where)
    if kind == "uniform":
        if lower is None or upper is None:
            raise ParseError(f"{what}: a uniform distribution needs lower and upper", where)
        return Distribution(name, kind, None, None, lower, upper, where)
    center = quantity("median" if kind == "lognormal" else "mean")
    if kind == "lognormal":
        if ("cv" in entry) == ("omega" in entry):
            raise ParseError(f"{what}: give exactly one of cv or omega", where)
        if "cv" in entry:
            cv = _dimensionless(quantity("cv"), what, "cv", where)
            spread = math.sqrt(math.log1p(cv * cv))
        else:
            spread = _dimensionless(quantity("omega"), what, "omega", where)
        if center is not None and not center.magnitude > 0:
            raise ParseError(f"{what}: a log-normal median must be positive", where)
    else:
        if ("cv" in entry) == ("sd" in entry):
            raise ParseError(f"{what}: give exactly one of sd or cv", where)
        if "sd" in entry:
            spread = quantity("sd")
            if spread.magnitude < 0:
                raise ParseError(f"{what}: sd must not be negative", where)
            if center is not None and spread.dimensionality != center.dimensionality:
                raise ParseError(f"{what}: sd and mean have different dimensions", where)
        else:
            if center is None:
                raise ParseError(f"{what}: cv needs a mean (or give sd)", where)
            spread = abs(center) * _dimensionless(quantity("cv"), what, "cv", where)
    for bound in (lower, upper):
        if center is not None and bound is not None and \
                bound.dimensionality != center.dimensionality:
            raise ParseError(f"{what}: bounds and center have different dimensions", where)
    if center is not None and ((lower is not None and center < lower) or
                               (upper is not None and center > upper)):
        raise ParseError(f"{what}: the {'median' if kind == 'lognormal' else 'mean'} lies "
                         "outside the bounds", where)
    return Distribution(name, kind, center, spread, lower, upper, where)


def _fixed(src: TomlSource, name: str, entry) -> Fixed:
    """``[fixed] NAME = { value = "...", scale = "linear" }``: a typical value without
    variability (value optional: the model's)."""
    where = src.entry_where("fixed", name)
    what = f"fixed {name}"
    if not isinstance(entry, dict):
        raise ParseError(f"{what}: write a table such as {{ value = \"0.1\" }}", where)
    unknown = sorted(set(entry) - {"value", "scale", "source", "note"})
    if unknown:
        raise ParseError(f"{what}: unknown key {unknown[0]!r} (allowed: note, scale, source, "
                         "value)", where)
    _provenance(entry, what, where)
    scale = entry.get("scale", "log")
    if scale not in ("log", "linear"):
        raise ParseError(f"{what}: scale must be 'log' or 'linear', got {scale!r}", where)
    value = None
    if "value" in entry:
        value = parse_quantity(entry["value"], what=f"{what} value", where=where)
        if not math.isfinite(value.magnitude):
            raise ParseError(f"{what}: value must be finite", where)
    return Fixed(name, value, scale, where)


def _dimensionless(q, what: str, key: str, where: str) -> float:
    if q.dimensionality:
        raise ParseError(f"{what}: {key} must be a number or a percentage, "
                         f"got {format_quantity(q)}", where)
    value = float(q.to("").magnitude)
    if not value >= 0:
        raise ParseError(f"{what}: {key} must not be negative", where)
    return value


def _derived(src: TomlSource, name: str, entry: dict) -> Derived:
    """``[covariates.BSA] formula = "mosteller"``: body surface area from HT and WT."""
    where = src.entry_where("covariates", name)
    what = f"covariate {name}"
    unknown = sorted(set(entry) - {"formula", "source", "note"})
    if unknown:
        raise ParseError(f"{what}: unknown key {unknown[0]!r} (allowed: formula, note, source)",
                         where)
    _provenance(entry, what, where)
    formula = entry["formula"]
    if not isinstance(formula, str) or formula not in BSA_FORMULAS:
        raise ParseError(f"{what}: formula {formula!r} is not one of "
                         f"{', '.join(sorted(BSA_FORMULAS))} (body surface area from HT and "
                         "WT)", where)
    return Derived(name, formula, where=where)


def _categorical(src: TomlSource, name: str, entry: dict) -> Categorical:
    where = src.entry_where("covariates", name)
    what = f"covariate {name}"
    unknown = sorted(set(entry) - {"categories", "source", "note"})
    if unknown:
        raise ParseError(f"{what}: unknown key {unknown[0]!r} (allowed: categories, note, "
                         "source)", where)
    _provenance(entry, what, where)
    levels = entry["categories"]
    if not isinstance(levels, dict) or not levels:
        raise ParseError(f"{what}: categories must be a table of level = share", where)
    for level, share in levels.items():
        if isinstance(share, bool) or not isinstance(share, (int, float)) or \
                not 0 <= share <= 1:
            raise ParseError(f"{what}: share of {level} must be a number in [0, 1], got "
                             f"{share!r}", where)
    total = sum(levels.values())
    if abs(total - 1) > 1e-9:
        raise ParseError(f"{what}: shares must add up to 1, they add up to {total:g}", where)
    return Categorical(name, tuple((str(k), float(v)) for k, v in levels.items()), where)


def _effect(src: TomlSource, i: int, entry: dict) -> Effect:
    where = src.where(("effects",))
    what = f"effect {i + 1}"
    allowed = {"covariate", "parameter", "power", "linear", "reference", "level", "multiply",
               "set", "estimate", "source", "note"}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ParseError(f"{what}: unknown key {unknown[0]!r} (allowed: "
                         f"{', '.join(sorted(allowed))})", where)
    _provenance(entry, what, where)
    for key in ("covariate", "parameter"):
        if not isinstance(entry.get(key), str):
            raise ParseError(f"{what}: {key} (a name) is required", where)
    kinds = [k for k in ("power", "linear", "multiply", "set") if k in entry]
    if len(kinds) != 1:
        raise ParseError(f"{what}: give exactly one of power, linear, multiply or set", where)
    kind = kinds[0]
    cov, par = entry["covariate"], entry["parameter"]
    estimate = entry.get("estimate", False)
    if not isinstance(estimate, bool) or (estimate and kind == "set"):
        raise ParseError(f"{what}: estimate must be true or false (and a set effect has "
                         "nothing to estimate)", where)
    if kind == "power":
        if "level" in entry or "reference" not in entry:
            raise ParseError(f"{what}: a power effect needs reference (and no level)", where)
        exponent = _number(entry["power"], what, "power", where)
        reference = parse_quantity(entry["reference"], what=f"{what} reference", where=where)
        if not reference.magnitude > 0:
            raise ParseError(f"{what}: reference must be positive", where)
        return Effect(cov, par, kind, exponent, reference, None, where, estimate)
    if kind == "linear":
        if "level" in entry or "reference" not in entry:
            raise ParseError(f"{what}: a linear effect needs reference (and no level)", where)
        reference = parse_quantity(entry["reference"], what=f"{what} reference", where=where)
        raw = entry["linear"]
        slope = ureg.Quantity(_number(raw, what, "linear", where)) \
            if isinstance(raw, (int, float)) and not isinstance(raw, bool) else \
            parse_quantity(raw, what=f"{what} linear", where=where)
        if (slope * reference).dimensionality != ureg.Quantity(1).dimensionality:
            raise ParseError(f"{what}: linear (the change per unit of the covariate) must "
                             f"have the dimension of 1/reference, 1/"
                             f"{format_quantity(reference)}; got {format_quantity(slope)}",
                             where)
        return Effect(cov, par, kind, slope, reference, None, where, estimate)
    if "reference" in entry or not isinstance(entry.get("level"), str):
        raise ParseError(f"{what}: a {kind} effect needs level (a category name)", where)
    if kind == "multiply":
        value = _number(entry["multiply"], what, "multiply", where)
        if value < 0:
            raise ParseError(f"{what}: multiply must not be negative", where)
    else:
        value = parse_quantity(entry["set"], what=f"{what} set", where=where)
    return Effect(cov, par, kind, value, None, entry["level"], where, estimate)


def _number(value, what: str, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value):
        raise ParseError(f"{what}: {key} must be a finite number, got {value!r}", where)
    return float(value)


def _correlation(src: TomlSource, i: int, entry: dict) -> tuple[str, str, float]:
    where = src.where(("correlations",))
    what = f"correlation {i + 1}"
    unknown = sorted(set(entry) - {"between", "value", "source", "note"})
    if unknown:
        raise ParseError(f"{what}: unknown key {unknown[0]!r} (allowed: between, note, "
                         "source, value)", where)
    _provenance(entry, what, where)
    pair = entry.get("between")
    if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
            and pair[0] != pair[1]):
        raise ParseError(f"{what}: between must name two different variables", where)
    r = _number(entry.get("value"), what, "value", where)
    if not -1 < r < 1:
        raise ParseError(f"{what}: value must lie strictly between -1 and 1", where)
    return pair[0], pair[1], r

"""The expression parser under hostile input: random text and random syntax trees.

Whatever the text, parsing either gives an Expr whose sympy form and dimension can be built,
or raises a MechsimError; it never evaluates anything (eval, exec and sympify are replaced
by tripwires here) and never hangs (an alarm fails the test after a few seconds).
"""

import builtins
import re
import signal
from contextlib import contextmanager

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from mechsim import MechsimError, ParseError
from mechsim.expr import MAX_CHARS, MAX_EXPONENT, MAX_SUM_POWER, parse_expr
from mechsim.units import ureg

from budget import examples


@contextmanager
def no_code_runs_and_no_hang(seconds=5):
    def tripwire(original):
        # imports run compiled code objects through exec; only text is evaluation of input
        def guarded(*args, **kwargs):
            if args and isinstance(args[0], str | bytes):
                raise AssertionError(f"text evaluated as code: {args[0]!r}")
            return original(*args, **kwargs)
        return guarded

    patch = pytest.MonkeyPatch()
    for module, name in ((builtins, "eval"), (builtins, "exec"), (sympy, "sympify")):
        patch.setattr(module, name, tripwire(getattr(module, name)))

    def hung(signum, frame):
        raise AssertionError(f"parsing took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        patch.undo()


def exercise(text: str) -> None:
    """Parse ``text`` and use the result the way a model load does."""
    try:
        expr = parse_expr(text, where="fuzz")
        form = expr.sympy()
        assert {str(s) for s in form.free_symbols} <= set(expr.names)
        expr.dimension({name: ureg.dimensionless for name in expr.names})
        expr.constant_value()
    except MechsimError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith("fuzz: ")


ALPHABET = st.sampled_from(list("xyk0123456789.e+-*/()_ ,[]{}'\"@!<>=%&|^~:;#\\\n\t")
                           + ["**", "exp(", "log(", "sqrt(", "lambda", "import", "__",
                              "os.", "system", "1e308", "10**", "9" * 30, "\x00", "é"])


RANDOM_TEXT = st.lists(ALPHABET, max_size=40).map("".join)


@examples(300)
@given(RANDOM_TEXT)
def test_random_text_parses_or_fails_cleanly(text):
    with no_code_runs_and_no_hang():
        exercise(text)


@pytest.mark.slow
@settings(max_examples=20_000)
@given(RANDOM_TEXT)
def test_random_text_long_run(text):
    with no_code_runs_and_no_hang():
        exercise(text)


@given(st.text(max_size=60))
def test_arbitrary_unicode_parses_or_fails_cleanly(text):
    with no_code_runs_and_no_hang():
        exercise(text)


# ---- random syntax trees: allowed pieces mixed with forbidden ones ------------------------

LEAVES = st.one_of(
    st.sampled_from(["x", "y", "kon", "t", "C_1"]),
    st.integers(-10**6, 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(repr),
    st.sampled_from(["1e400", "10**10**10", "2**-1075", "'text'", "True", "None",
                     "__import__", "open", "x.real", "x[0]", "...", "9" * 400]),
)


def combine(children):
    binary = st.sampled_from(["+", "-", "*", "/", "**", "%", "//", "^", "<", "and", "@"])
    unary = st.sampled_from(["-", "+", "not ", "~"])
    function = st.sampled_from(["exp", "log", "ln", "log10", "sqrt", "sin", "eval",
                                "__import__", "getattr"])
    return st.one_of(
        st.tuples(children, binary, children).map(lambda p: f"({p[0]} {p[1]} {p[2]})"),
        st.tuples(unary, children).map(lambda p: f"{p[0]}{p[1]}"),
        st.tuples(function, children).map(lambda p: f"{p[0]}({p[1]})"),
        st.tuples(children, children).map(lambda p: f"max({p[0]}, {p[1]})"),
        children.map(lambda c: f"(lambda: {c})()"),
        children.map(lambda c: f"[{c} for _ in ()]"),
        children.map(lambda c: f"{c}.__class__"),
    )


TREES = st.recursive(LEAVES, combine, max_leaves=25)


@examples(300)
@given(TREES)
def test_random_syntax_trees_parse_or_fail_cleanly(text):
    with no_code_runs_and_no_hang():
        exercise(text)


@pytest.mark.slow
@settings(max_examples=20_000)
@given(TREES)
def test_random_syntax_trees_long_run(text):
    with no_code_runs_and_no_hang():
        exercise(text)


ALLOWED = st.recursive(
    st.one_of(st.sampled_from(["x", "y", "k"]), st.integers(1, 9).map(str)),
    lambda c: st.one_of(
        st.tuples(c, st.sampled_from(["+", "-", "*", "/"]), c).map(
            lambda p: f"({p[0]} {p[1]} {p[2]})"),
        st.tuples(c, st.integers(-3, 3)).map(lambda p: f"({p[0]})**{p[1]}"),
        st.tuples(st.sampled_from(["exp", "log", "sqrt"]), c).map(lambda p: f"{p[0]}({p[1]})"),
    ),
    max_leaves=12)


@given(ALLOWED)
def test_whitelisted_trees_are_accepted_with_the_right_names(text):
    """Every expression built only from whitelisted pieces is accepted and reports exactly
    the names written in it, unless a part made only of numbers has no usable value or a
    sum is raised, through nested powers, to an integer power above MAX_SUM_POWER (the
    documented limits)."""
    try:
        expr = parse_expr(text)
    except ParseError as exc:
        message = str(exc)
        power = re.search(r"a sum raised to the power (\d+) ", message)
        if power:
            assert int(power.group(1)) > MAX_SUM_POWER and text.count("**") >= 2, message
        else:
            assert re.search("floating-point number|no real value|division by zero", message)
        return
    written = {name for name in ("x", "y", "k") if name in text.replace("exp", "")
               .replace("sqrt", "")}
    assert set(expr.names) == written


# ---- the limits themselves ---------------------------------------------------------------

@pytest.mark.parametrize(("text", "fragment"), [
    ("10**10**10", "exponent '10 ** 10' is too large"),
    ("x**1e9", "too large"),
    (f"x**{MAX_EXPONENT + 1}", "too large"),
    ("((10**300)**-1000)**1000", "multiplied along nested powers"),
    ("x*((10**300*10**300)**1000)**1000", "multiplied along nested powers"),
    ("(((2*x)**1000)**1000)**1000", "multiplied along nested powers"),
    ("k*(a+b+c+d)**1000", "a sum raised to the power 1000"),
    ("(x*(a+b))**9", "a sum raised to the power 9"),
    ("x*(1e-300*1e-300)", "'1e-300 * 1e-300', is smaller than the smallest floating-point"),
    ("x*(10**300*10**300)", "'10 ** 300 * 10 ** 300', is larger than the largest floating-"),
    ("10**999", "'10 ** 999', is larger than the largest floating-point number"),
    ("exp(1000)", "'exp(1000)', is larger than the largest floating-point number"),
    ("x*exp(-1000)", "'exp(-1000)', is smaller than the smallest floating-point number"),
    ("(-8)**0.5", "'(-8) ** 0.5', has no real value"),
    ("k*log(-1)", "'log(-1)', has no real value"),
    ("1/0", "division by zero"),
    ("9" * 400, "numbers must be finite"),
    ("9" * 5000, "syntax error"),
    ("(" * 300 + "x" + ")" * 300, "syntax error"),
    ("+".join(["x"] * 3000), "nested too deeply"),
    ("-" * 9000 + "x", "nested too deeply"),
    ("x" * (MAX_CHARS + 1), "too long"),
    ("x\x00", "NUL"),
])
def test_limits_give_a_clear_error(text, fragment):
    with pytest.raises(ParseError, match=re.escape(fragment)) as info:
        parse_expr(text, where="model.toml:7")
    message = str(info.value)
    assert message.startswith("model.toml:7: ") and "\n" not in message
    assert len(message) < 300  # long input is shortened in the message


def test_moderate_powers_still_work():
    assert parse_expr(f"x**{MAX_EXPONENT}").sympy() == sympy.Symbol("x", real=True) ** 1000
    assert parse_expr("2**1000").constant_value() == 2.0 ** 1000
    assert parse_expr("x**-2.5").names == {"x"}
    assert parse_expr("((x + 1)**2)**4").names == {"x"}  # 8: the largest power of a sum
    assert parse_expr("(a + b)**y").names == {"a", "b", "y"}  # not expanded: no limit
    # a function other than sqrt ends a chain of powers: its argument is not expanded
    assert parse_expr("log((x + 1)**4)**4").names == {"x"}
    assert parse_expr("sqrt((log(((sqrt(a**2 + 1))**3)**2 + 1))**2 + 1)").names == {"a"}
    assert parse_expr("sqrt(x + 1)**16").names == {"x"}  # (x + 1)**8
    with pytest.raises(ParseError, match="a sum raised to the power 9"):
        parse_expr("sqrt(x + 1)**18")

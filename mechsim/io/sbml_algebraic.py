"""SBML import, algebraic rules: ``0 = f(...)`` rules that are linear in the value they
determine become assignment rules, so the model stays an ODE system.

SBML leaves it to the simulator which value an algebraic rule determines: one that nothing
else determines (not constant, no assignment or rate rule, not a species that reactions
change, not assigned by an event).  Each rule is matched with one such value it mentions (a
bipartite matching, as in SBML's check for overdetermined models), and the rules are solved
in turn by elimination: rule *k*, with the values already solved substituted, must be
affine in its value *x* (``f = a*x + b``, *a* and *b* free of *x*), and then
``x = -b / a`` replaces it as an assignment rule.  Coupled linear rules are thereby solved
exactly; a rule that is nonlinear in every value it could determine makes the model a true
differential-algebraic system, which is refused with one line.

The rewrite works on libsbml's formula trees, so numbers keep their ``sbml:units`` and the
importer then checks the dimensions of the new rules as of any other.  Nothing is parsed
from text here.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["solve_algebraic_rules"]


def solve_algebraic_rules(L, sm, changed: set[str], error: Callable[[str], Exception]) -> None:
    """Replace the algebraic rules of libsbml model ``sm`` by assignment rules, in place.

    ``changed`` holds the species that reactions change; ``error`` makes the exception
    raised for a rule that cannot be solved."""
    rules = [sm.getRule(i) for i in range(sm.getNumRules()) if sm.getRule(i).isAlgebraic()]
    if not rules:
        return
    rules = [r for r in rules if r.isSetMath()]  # SBML L3V2: no math, no effect
    free = _undetermined(sm, changed)
    # each rule's candidates, those it is affine in first
    candidates = []
    for rule in rules:
        names = _names(L, rule.getMath()) & free
        candidates.append(sorted(names, key=lambda n: (not _affine(L, rule.getMath(), n), n)))
    matched = _match(candidates)
    # a value that some rule could determine but none does would keep its own value while
    # another took the rule: which one is the simulator's choice (results would depend on
    # names), so such a model is refused
    left = sorted(set().union(*map(set, candidates)) - set(matched))
    if left and all(m is not None for m in matched):
        rule = next(r for r, c in zip(rules, candidates) if left[0] in c)
        other = next(m for m, c in zip(matched, candidates) if left[0] in c)
        raise error(f"algebraicRule 0 = {L.formulaToL3String(rule.getMath())}: it could "
                    f"determine '{left[0]}' or '{other}' (nothing else determines either), "
                    "so the result would depend on a choice SBML leaves open; make one of "
                    "them constant or give it a rule")
    for k, rule in enumerate(rules):
        if matched[k] is None:
            text = L.formulaToL3String(rule.getMath())
            raise error(f"algebraicRule 0 = {text}: no value is left for it to determine "
                        "(each is constant, set by another rule or event, or changed by "
                        "reactions)")
    solved: list[tuple[str, object]] = []
    for k, rule in enumerate(rules):
        x = matched[k]
        f = rule.getMath().deepCopy()
        for name, value in solved:
            f.replaceArgument(name, value)
        if not _affine(L, f, x):
            raise error(f"algebraicRule 0 = {L.formulaToL3String(rule.getMath())}: it is "
                        f"not linear in '{x}', the value it determines, so the model is a "
                        "differential-algebraic system; algebraic rules are supported when "
                        "linear in that value")
        a, b = _split(L, f, x)
        if _is_number(a) and L.SBMLTransforms.evaluateASTNode(a) == 0:
            raise error(f"algebraicRule 0 = {L.formulaToL3String(rule.getMath())}: "
                        f"'{x}' cancels out of it")
        # x = -b / a  (x = 0 when b is zero)
        value = _number(L, 0) if b is None else _apply(L, L.AST_DIVIDE,
                                                         _apply(L, L.AST_MINUS, b), a)
        solved.append((x, value))
    for i in reversed(range(sm.getNumRules())):
        if sm.getRule(i).isAlgebraic():
            sm.removeRule(i)
    for x, value in solved:
        if sm.getInitialAssignment(x) is not None:  # the rule holds at the start too
            sm.removeInitialAssignment(x)
        new = sm.createAssignmentRule()
        new.setVariable(x)
        new.setMath(value)


def _undetermined(sm, changed: set[str]) -> set[str]:
    """Ids of values that nothing but an algebraic rule can determine."""
    ruled = {sm.getRule(i).getVariable() for i in range(sm.getNumRules())
             if not sm.getRule(i).isAlgebraic()}
    events = {sm.getEvent(i).getEventAssignment(k).getVariable()
              for i in range(sm.getNumEvents())
              for k in range(sm.getEvent(i).getNumEventAssignments())}
    out = set()
    for items in (sm.getListOfParameters(), sm.getListOfCompartments(),
                  sm.getListOfSpecies()):
        for i in range(items.size()):
            item = items.get(i)
            if not item.getConstant():
                out.add(item.getId())
    for i in range(sm.getNumReactions()):
        r = sm.getReaction(i)
        for refs in (r.getListOfReactants(), r.getListOfProducts()):
            for k in range(refs.size()):
                ref = refs.get(k)
                if ref.isSetId() and not ref.getConstant():
                    out.add(ref.getId())
    return out - ruled - events - changed


def _names(L, node) -> set[str]:
    """The SBML ids in a formula (not csymbols such as time)."""
    out = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if n.getType() == L.AST_NAME:
            out.add(n.getName())
        stack.extend(n.getChild(i) for i in range(n.getNumChildren()))
    return out


def _is_number(node) -> bool:
    """Is the formula arithmetic on numbers only (no names, time or functions)?"""
    return (node.isNumber() or node.isOperator()) and \
        all(_is_number(node.getChild(i)) for i in range(node.getNumChildren()))


def _contains(L, node, x: str) -> bool:
    return x in _names(L, node)


def _affine(L, node, x: str) -> bool:
    """Is the formula ``a*x + b`` with ``a`` and ``b`` free of ``x``?  (By its structure:
    sums, differences, products with one factor holding x, quotients by x-free values.)"""
    if not _contains(L, node, x):
        return True
    t = node.getType()
    kids = [node.getChild(i) for i in range(node.getNumChildren())]
    if t == L.AST_NAME:
        return node.getName() == x
    if t == L.AST_PLUS or (t == L.AST_MINUS and len(kids) in (1, 2)):
        return all(_affine(L, k, x) for k in kids)
    if t == L.AST_TIMES:
        holding = [k for k in kids if _contains(L, k, x)]
        return len(holding) == 1 and _affine(L, holding[0], x)
    if t == L.AST_DIVIDE:
        return len(kids) == 2 and not _contains(L, kids[1], x) and _affine(L, kids[0], x)
    return False


def _split(L, node, x: str):
    """``(a, b)`` of an affine ``a*x + b`` (formula trees, None where zero), in one walk:
    sums and differences split term by term, a product or quotient scales both parts by
    its factors free of ``x``."""
    if not _contains(L, node, x):
        return None, node.deepCopy()
    if node.getType() == L.AST_NAME:
        return _number(L, 1), None
    t = node.getType()
    kids = [node.getChild(i) for i in range(node.getNumChildren())]
    parts = [_split(L, k, x) for k in kids] if t in (L.AST_PLUS, L.AST_MINUS) else None
    if t == L.AST_PLUS:
        return tuple(_sum(L, list(side)) for side in zip(*parts))
    if t == L.AST_MINUS:
        if len(kids) == 1:
            return tuple(_scaled(L, L.AST_MINUS, side) for side in parts[0])
        return tuple(_difference(L, first, second) for first, second in zip(*parts))
    if t == L.AST_TIMES:
        holding = next(k for k in kids if _contains(L, k, x))
        others = [k.deepCopy() for k in kids if not _contains(L, k, x)]
        return tuple(_scaled(L, L.AST_TIMES, side, *others)
                     for side in _split(L, holding, x))
    # L.AST_DIVIDE (the only other affine form)
    return tuple(_scaled(L, L.AST_DIVIDE, side, kids[1].deepCopy())
                 for side in _split(L, kids[0], x))


def _scaled(L, kind, part, *others):
    """``part`` negated, multiplied or divided by ``others`` (None stays None: zero)."""
    return None if part is None else _apply(L, kind, part, *others)


def _sum(L, terms):
    terms = [t for t in terms if t is not None]
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else _apply(L, L.AST_PLUS, *terms)


def _difference(L, a, b):
    if b is None:
        return a
    return _apply(L, L.AST_MINUS, b) if a is None else _apply(L, L.AST_MINUS, a, b)


def _apply(L, kind, *children):
    node = L.ASTNode(kind)
    for child in children:
        node.addChild(child.deepCopy())
    return node


def _number(L, value: int):
    node = L.ASTNode(L.AST_INTEGER)
    node.setValue(value)
    return node


def _match(candidates: list[list[str]]) -> list[str | None]:
    """A maximum matching of rules to values (augmenting paths, Kuhn's algorithm)."""
    owner: dict[str, int] = {}

    def assign(k: int, seen: set[str]) -> bool:
        for name in candidates[k]:
            if name in seen:
                continue
            seen.add(name)
            if name not in owner or assign(owner[name], seen):
                owner[name] = k
                return True
        return False

    for k in range(len(candidates)):
        assign(k, set())
    out: list[str | None] = [None] * len(candidates)
    for name, k in owner.items():
        out[k] = name
    return out

"""Risk rules: CEL expressions over a payment's facts, checked and compiled once per version.

CEL (the `common-expression-language` package, the Rust `cel` interpreter) has no statements,
no loops, no imports and no I/O: a rule can only compute over the facts it is given and the
functions registered here. What CEL still allows that could cost time or memory is bounded
before compiling: the length of an expression, its nesting, and comprehension macros (`map`,
`filter`, `all`, `exists`, `exists_one`), which are refused outright, so evaluating a rule is
linear in its length. The interpreter has no static type checker, so types are checked by
evaluating every rule against typed probe facts at publish time.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import cel

from domain.risk.facts import FACTS, FUNCTIONS, PROBES, VELOCITY, resolve
from domain.risk.velocity import Feature, feature_of

MAX_EXPRESSION = 1000  # characters
MAX_DEPTH = 24  # nested brackets
MAX_RULES = 500
MAX_POINTS = 1000
COMPREHENSIONS = frozenset({"map", "filter", "all", "exists", "exists_one"})
_RULE_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SCORE = re.compile(r"^score\s*\+\s*([0-9]{1,4})$")
_SCOPE = re.compile(r"^(platform|agent:[A-Za-z0-9_]{1,64}|merchant:[A-Za-z0-9_]{1,64})$")
_POSITION = re.compile(r"<input>:(\d+):(\d+):")
_TOKEN = re.compile(
    r"""(?P<space>\s+|//[^\n]*)
      | (?P<raw>(?:[rR][bB]?|[bB][rR])(?:\"\"\".*?\"\"\"|'''.*?'''|"[^"\n]*"|'[^'\n]*'))
      | (?P<string>[bB]?(?:\"\"\"(?:\\.|[^\\])*?\"\"\"|'''(?:\\.|[^\\])*?'''
                         |"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'))
      | (?P<number>[0-9][0-9a-fA-FxX.eE+\-uU]*)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>[()\[\]{}.,?:!<>=&|+\-*/%])""",
    re.VERBOSE | re.DOTALL,
)
# The Rust interpreter's own functions (operators are named `_op_`, `@in`, …), and ours.
BUILTIN_FUNCTIONS = frozenset(
    {
        "size",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "bool",
        "has",
        "dyn",
        "type",
        "duration",
        "timestamp",
        "max",
        "min",
    }
)


class Action(StrEnum):
    SCORE = "score"
    REVIEW = "review"
    REJECT = "reject"
    ALLOW = "allow"


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose payments a rule judges: everyone's, an agent's whole subtree, or one merchant's."""

    kind: str  # platform, agent, merchant
    target: str | None = None

    @classmethod
    def parse(cls, text: str) -> Scope:
        if not _SCOPE.match(text):
            raise ValueError("scope is platform, agent:<agent id> or merchant:<merchant id>")
        kind, _, target = text.partition(":")
        return cls(kind, target or None)

    def applies(self, merchant_id: str, agents: Iterable[str]) -> bool:
        if self.kind == "platform":
            return True
        if self.kind == "merchant":
            return self.target == merchant_id
        return self.target in agents

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}:{self.target}"


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    expression: str
    action: str  # "score +N", "review", "reject", "allow"
    description: str = ""
    scope: str = "platform"


@dataclass(frozen=True, slots=True)
class RuleError:
    """What is wrong with one rule, and where: `line` and `column` (1-based) point into the
    expression when the fault has a place in it."""

    rule: str | None
    field: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = f" at {self.line}:{self.column}" if self.line is not None else ""
        return f"rule {self.rule!r}, {self.field}{where}: {self.message}"


class RuleSetInvalid(ValueError):
    def __init__(self, errors: Sequence[RuleError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = tuple(errors)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Score at or above `review` sends a payment to review, at or above `reject` rejects it."""

    review: int = 50
    reject: int = 100


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: Rule
    action: Action
    points: int
    scope: Scope
    program: Any  # cel.Program
    paths: tuple[str, ...]  # the facts it reads, recorded with each firing


@dataclass(frozen=True, slots=True)
class CompiledRuleSet:
    version: int | None
    rules: tuple[CompiledRule, ...]
    thresholds: Thresholds
    features: frozenset[Feature] = field(default_factory=frozenset)
    # the top-level facts any rule reads: a rule's context holds only these (converting every
    # fact into the interpreter's values costs more than most rules)
    reads: frozenset[str] = field(default_factory=frozenset)

    def applicable(self, merchant_id: str, agents: Sequence[str]) -> list[CompiledRule]:
        return [r for r in self.rules if r.scope.applies(merchant_id, agents)]


EMPTY = CompiledRuleSet(None, (), Thresholds())


def parse_action(text: str) -> tuple[Action, int]:
    text = text.strip()
    if match := _SCORE.match(text):
        points = int(match.group(1))
        if not 0 < points <= MAX_POINTS:
            raise ValueError(f"a score is between 1 and {MAX_POINTS} points")
        return Action.SCORE, points
    if text in (Action.REVIEW, Action.REJECT, Action.ALLOW):
        return Action(text), 0
    raise ValueError("action is 'score +N', 'review', 'reject' or 'allow'")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    offset: int


def _tokens(source: str) -> tuple[list[_Token], int | None]:
    """CEL's lexical shape, enough to find identifiers, calls and nesting outside strings and
    comments; and the offset of the first character it cannot read (refused: the checks must
    see the whole expression)."""
    out: list[_Token] = []
    offset = 0
    while offset < len(source):
        match = _TOKEN.match(source, offset)
        if match is None:
            return out, offset
        if match.lastgroup != "space":
            out.append(_Token(match.lastgroup or "", match.group(), offset))
        offset = match.end()
    return out, None


def _line_column(source: str, offset: int) -> tuple[int, int]:
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def _shape(rule_id: str, source: str, tokens: list[_Token]) -> list[RuleError]:
    """The bounds CEL does not set itself: nesting and comprehensions."""
    errors = []
    depth = 0
    for n, token in enumerate(tokens):
        if token.text in "([{" and token.kind == "punct":
            depth += 1
            if depth > MAX_DEPTH:
                errors.append(
                    RuleError(
                        rule_id,
                        "expression",
                        f"nested deeper than {MAX_DEPTH} brackets",
                        *_line_column(source, token.offset),
                    )
                )
                break
        elif token.text in ")]}" and token.kind == "punct":
            depth -= 1
        elif (
            token.kind == "ident"
            and token.text in COMPREHENSIONS
            and n > 0
            and tokens[n - 1].text == "."
            and n + 1 < len(tokens)
            and tokens[n + 1].text == "("
        ):
            errors.append(
                RuleError(
                    rule_id,
                    "expression",
                    f"comprehensions ({token.text}) are not allowed in rules; use `in` or a fact",
                    *_line_column(source, token.offset),
                )
            )
    return errors


def _references(tokens: list[_Token]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Fact paths read (`velocity.ip.count_1h`) and functions called, each with its offset."""
    paths: list[tuple[str, int]] = []
    calls: list[tuple[str, int]] = []
    n = 0
    while n < len(tokens):
        token = tokens[n]
        after_dot = n > 0 and tokens[n - 1].text == "."
        if token.kind != "ident" or after_dot:
            if token.kind == "ident" and n + 1 < len(tokens) and tokens[n + 1].text == "(":
                calls.append((token.text, token.offset))
            n += 1
            continue
        parts = [token.text]
        m = n + 1
        while (
            m + 1 < len(tokens)
            and tokens[m].text == "."
            and tokens[m + 1].kind == "ident"
            and not (m + 2 < len(tokens) and tokens[m + 2].text == "(")
        ):
            parts.append(tokens[m + 1].text)
            m += 2
        if m < len(tokens) and tokens[m].text == "(" and len(parts) == 1:
            calls.append((token.text, token.offset))
        elif token.text not in ("true", "false", "null", "in"):
            paths.append((".".join(parts), token.offset))
        n = m
    return paths, calls


def _check_paths(
    rule_id: str, source: str, paths: list[tuple[str, int]]
) -> tuple[list[RuleError], set[Feature]]:
    errors: list[RuleError] = []
    features: set[Feature] = set()
    for path, offset in paths:
        head, *rest = path.split(".")
        where = _line_column(source, offset)
        if head == VELOCITY:
            if len(rest) < 2:
                errors.append(
                    RuleError(
                        rule_id, "expression", f"{path}: name velocity.<key>.<counter>", *where
                    )
                )
                continue
            try:
                features.add(feature_of(rest[0], rest[1]))
            except ValueError as exc:
                errors.append(RuleError(rule_id, "expression", f"{path}: {exc}", *where))
        elif head not in FACTS:
            errors.append(RuleError(rule_id, "expression", f"unknown fact {head!r}", *where))
        elif rest:
            errors.append(
                RuleError(rule_id, "expression", f"{head} has no field {rest[0]}", *where)
            )
    return errors, features


def _check_calls(rule_id: str, source: str, calls: list[tuple[str, int]]) -> list[RuleError]:
    return [
        RuleError(rule_id, "expression", f"unknown function {name!r}", *_line_column(source, at))
        for name, at in calls
        if name not in BUILTIN_FUNCTIONS and name not in FUNCTIONS
    ]


def _fails(program: Any) -> Exception | None:
    for probe in PROBES:
        try:
            program.execute(cel.Context(probe, dict(FUNCTIONS)))
        except Exception as exc:  # the interpreter's errors are plain Python exceptions
            return exc
    return None


def _culprit(source: str, tokens: list[_Token]) -> tuple[int, int] | tuple[None, None]:
    """Where a type error is: the first top-level `&&`/`||` operand that fails on its own."""
    depth, starts = 0, [0]
    for token in tokens:
        depth += token.text in "([{" and token.kind == "punct"
        depth -= token.text in ")]}" and token.kind == "punct"
        if depth == 0 and token.text in ("&", "|"):
            starts.append(token.offset + 1)
    bounds = [*starts, len(source) + 1]
    for start, end in itertools.pairwise(bounds):
        part = source[start : end - 1].strip("&| \t\n")
        if not part:
            continue
        try:
            failed = _fails(cel.compile(part)) is not None
        except Exception:
            continue
        if failed:
            return _line_column(source, source.index(part, start))
    return None, None


def _probe(rule_id: str, source: str, tokens: list[_Token], program: Any) -> list[RuleError]:
    """Evaluate against typed facts: CEL's interpreter finds a type error only by running."""
    if (exc := _fails(program)) is not None:
        message = f"type error: {_first_sentence(exc)}"
        return [RuleError(rule_id, "expression", message, *_culprit(source, tokens))]
    for probe in PROBES:
        result = program.execute(cel.Context(probe, dict(FUNCTIONS)))
        if not isinstance(result, bool):
            kind = type(result).__name__
            return [RuleError(rule_id, "expression", f"must be true or false, not {kind}")]
    return []


def _first_sentence(exc: Exception) -> str:
    return str(exc).split(". ", 1)[0].rstrip(".")


def compile_rule(rule: Rule) -> tuple[CompiledRule | None, set[Feature], list[RuleError]]:
    errors: list[RuleError] = []
    try:
        action, points = parse_action(rule.action)
    except ValueError as exc:
        errors.append(RuleError(rule.id, "action", str(exc)))
        action, points = Action.SCORE, 0
    try:
        scope = Scope.parse(rule.scope)
    except ValueError as exc:
        errors.append(RuleError(rule.id, "scope", str(exc)))
        scope = Scope("platform")
    if len(rule.description) > 500:
        errors.append(RuleError(rule.id, "description", "at most 500 characters"))
    source = rule.expression
    if not source.strip():
        return None, set(), [*errors, RuleError(rule.id, "expression", "is empty")]
    if len(source) > MAX_EXPRESSION:
        message = f"longer than {MAX_EXPRESSION} characters"
        return None, set(), [*errors, RuleError(rule.id, "expression", message)]
    tokens, unreadable = _tokens(source)
    if unreadable is not None:
        where = _line_column(source, unreadable)
        message = f"unexpected {source[unreadable]!r} (or a string left open)"
        return None, set(), [*errors, RuleError(rule.id, "expression", message, *where)]
    if shape := _shape(rule.id, source, tokens):
        return None, set(), [*errors, *shape]
    try:
        program = cel.compile(source)
    except Exception as exc:  # the parser's ValueError carries `<input>:line:column:`
        text = str(exc)
        match = _POSITION.search(text)
        detail = text.split(": ", 3)[-1].split("\n", 1)[0].split(" expecting ", 1)[0]
        detail = detail if match else _first_sentence(exc)
        line, column = (int(match.group(1)), int(match.group(2))) if match else (None, None)
        return None, set(), [*errors, RuleError(rule.id, "expression", detail, line, column)]
    paths, calls = _references(tokens)
    path_errors, features = _check_paths(rule.id, source, paths)
    errors += path_errors + _check_calls(rule.id, source, calls)
    if errors:
        return None, set(), errors
    if probe := _probe(rule.id, source, tokens, program):
        return None, set(), probe
    compiled = CompiledRule(
        rule, action, points, scope, program, tuple(dict.fromkeys(p for p, _ in paths))
    )
    return compiled, features, []


def compile_rules(
    version: int | None,
    rules: Sequence[Rule],
    thresholds: Thresholds,
) -> CompiledRuleSet:
    """Every rule checked, every error collected: RuleSetInvalid names each rule at fault."""
    errors: list[RuleError] = []
    if len(rules) > MAX_RULES:
        errors.append(RuleError(None, "rules", f"at most {MAX_RULES} rules"))
    if not 0 < thresholds.review <= thresholds.reject:
        errors.append(RuleError(None, "thresholds", "0 < review <= reject"))
    seen: set[str] = set()
    compiled: list[CompiledRule] = []
    features: set[Feature] = set()
    for rule in rules:
        if not _RULE_ID.match(rule.id):
            errors.append(RuleError(rule.id, "id", "lower-case letters, digits and _, ≤ 64"))
        elif rule.id in seen:
            errors.append(RuleError(rule.id, "id", "appears twice"))
        seen.add(rule.id)
        one, used, faults = compile_rule(rule)
        errors += faults
        if one is not None:
            compiled.append(one)
            features |= used
    if errors:
        raise RuleSetInvalid(errors)
    reads = frozenset(path.split(".", 1)[0] for rule in compiled for path in rule.paths)
    return CompiledRuleSet(version, tuple(compiled), thresholds, frozenset(features), reads)


def values_seen(rule: CompiledRule, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The facts a fired rule read, as the decision keeps them: a customer's e-mail and IP
    only in part (the domain, the /24 or /48 network), since decisions are stored in clear."""
    return {path: personal(path, resolve(facts, path)) for path in rule.paths}


def personal(path: str, value: Any) -> Any:
    if not value or path not in ("email", "ip"):
        return value
    if path == "email":
        return "***@" + str(value).rsplit("@", 1)[-1]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return "***"
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))

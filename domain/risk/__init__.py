"""Risk control as pure functions: rules (CEL) compiled per version, facts, lists, velocity
counter names, and `judge`, which turns facts into a decision."""

from domain.risk.engine import Fired, Outcome, Verdict, judge, list_values
from domain.risk.facts import FACTS, Lookups, Transaction, facts_of
from domain.risk.limits import NO_LIMITS, MerchantLimits, outside
from domain.risk.rules import (
    EMPTY,
    CompiledRuleSet,
    Rule,
    RuleError,
    RuleSetInvalid,
    Thresholds,
    compile_rules,
)

__all__ = [
    "EMPTY",
    "FACTS",
    "NO_LIMITS",
    "CompiledRuleSet",
    "Fired",
    "Lookups",
    "MerchantLimits",
    "Outcome",
    "Rule",
    "RuleError",
    "RuleSetInvalid",
    "Thresholds",
    "Transaction",
    "Verdict",
    "compile_rules",
    "facts_of",
    "judge",
    "list_values",
    "outside",
]

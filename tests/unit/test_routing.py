"""Channel selection (routing/select.py)."""

from __future__ import annotations

from routing.select import Candidate, choose_channel


def _candidates(*specs: tuple[str, set[str]]) -> dict[str, Candidate]:
    return {code: Candidate(code, frozenset(currencies)) for code, currencies in specs}


def test_picks_first_accepting_in_mapping_order() -> None:
    candidates = _candidates(("a", {"EUR"}), ("b", {"USD"}), ("c", {"USD"}))
    assert choose_channel("USD", candidates) == "b"
    assert choose_channel("EUR", candidates) == "a"
    reordered = _candidates(("c", {"USD"}), ("b", {"USD"}), ("a", {"EUR"}))
    assert choose_channel("USD", reordered) == "c"


def test_empty_currency_set_accepts_any() -> None:
    candidates = _candidates(("only_eur", {"EUR"}), ("any", set()))
    assert choose_channel("USD", candidates) == "any"
    assert choose_channel("ETH", candidates) == "any"
    assert choose_channel("EUR", candidates) == "only_eur"


def test_skips_unavailable() -> None:
    candidates = _candidates(("a", {"USD"}), ("b", set()), ("c", {"USD"}))
    assert choose_channel("USD", candidates, unavailable={"a"}) == "b"
    assert choose_channel("USD", candidates, unavailable={"a", "b"}) == "c"
    assert choose_channel("USD", candidates, unavailable=frozenset({"b"})) == "a"


def test_none_when_nothing_fits() -> None:
    candidates = _candidates(("a", {"USD"}), ("b", {"EUR"}))
    assert choose_channel("JPY", candidates) is None
    assert choose_channel("USD", candidates, unavailable={"a"}) is None
    assert choose_channel("USD", {}) is None
    assert choose_channel("USD", _candidates(("any", set())), unavailable={"any"}) is None


def test_unavailable_names_outside_candidates_are_harmless() -> None:
    candidates = _candidates(("a", {"USD"}))
    assert choose_channel("USD", candidates, unavailable={"zzz"}) == "a"

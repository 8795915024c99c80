"""The mutation-testing driver (``make mutation``): which mutants it draws, and that it draws the
same ones every time."""

from __future__ import annotations

from tests import mutation

MODULE = """\
def pick(a, b):
    if a < b and b > 0:
        return a + 1
    return 2  # pragma: no mutate
"""


def test_the_sample_is_the_same_every_time_and_only_of_the_chosen_operators(tmp_path):
    module = tmp_path / "pick.py"
    module.write_text(MODULE)
    every, count = mutation._mutants(module, 0)
    assert len(every) == count
    names = {(mutant.start_pos[0], mutant.operator_name.removeprefix("core/")) for mutant in every}
    # The plausible one-line bugs on each line...
    assert {
        (2, "ReplaceComparisonOperator_Lt_LtE"),
        (2, "ReplaceComparisonOperator_Gt_GtE"),
        (2, "ReplaceAndWithOr"),
        (2, "AddNot"),
        (3, "ReplaceBinaryOperator_Add_Sub"),
        (3, "NumberReplacer"),
    } <= names
    # ...none that only crash (a bit shift of a number), and nothing on the line marked no mutate.
    assert not [name for name in names if "Shift" in name[1] or "Bit" in name[1]]
    assert 4 not in {line for line, _ in names}

    picked, of = mutation._mutants(module, 5)
    assert of == count and len(picked) == 5
    assert all(mutant in every for mutant in picked)
    assert mutation._mutants(module, 5)[0] == picked
    # A larger sample keeps the smaller one's mutants: the draw is an order, not a lottery.
    assert set(map(str, picked)) <= set(map(str, mutation._mutants(module, 8)[0]))


def test_every_target_is_a_module_with_test_files(tmp_path):
    from tests.conftest import ROOT

    for module, tests in mutation.TARGETS.items():
        assert (ROOT / module).is_file(), module
        assert any((ROOT / test).is_file() for test in tests), module

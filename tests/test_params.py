"""Declared parameters (hgimb/params.py): coercion, defaults, unknown names, constraints, help."""
import pytest

from hgimb.errors import HgimbError
from hgimb.params import Param, Range, Rule, defaults, describe, validate

SPEC = (
    Param("layers", int, 2, "message-passing layers", Range(1)),
    Param("dropout", float, 0.0, "dropout", Range(0, 1, high_open=True)),
    Param("fast", bool, True, "use the fast path"),
    Param("aggr", str, "sum", "aggregation", choices=("sum", "mean")),
    Param("alpha", float, None, "weight", Range(0, 1, low_open=True, high_open=True), choices=("auto",), none=True),
    Param("epoch", float, 0.8, "start", Rule(lambda v: v > 0 and (v < 1 or v == int(v)), "an epoch >= 1 or a fraction in (0, 1)")),
    Param("key", str, "feat", "attribute name"),
    Param("anything", None, "x", "checked by the owner"),
)


def check(values):
    return validate(SPEC, values, "model 'm'", flag="--model-option")


def test_defaults_fill_every_declared_name():
    assert check({}) == defaults(SPEC) == {"layers": 2, "dropout": 0.0, "fast": True, "aggr": "sum", "alpha": None,
                                           "epoch": 0.8, "key": "feat", "anything": "x"}


def test_strings_from_the_command_line_are_coerced():
    out = check({"layers": "3", "dropout": "0.25", "fast": "off", "aggr": "MEAN", "alpha": "auto", "epoch": "5",
                 "key": " h ", "anything": [1, 2]})
    assert out == {"layers": 3, "dropout": 0.25, "fast": False, "aggr": "mean", "alpha": "auto", "epoch": 5.0,
                   "key": "h", "anything": [1, 2]}
    assert type(out["layers"]) is int and type(out["epoch"]) is float
    assert check({"layers": "1_000", "fast": 1, "alpha": "none"}) == {**defaults(SPEC), "layers": 1000, "fast": True}
    assert check({"layers": 4.0, "alpha": 0.25})["alpha"] == 0.25


@pytest.mark.parametrize("values, message", [
    ({"layers": 0}, "option layers must be an integer >= 1, got 0"),
    ({"layers": 2.5}, "option layers must be an integer >= 1, got 2.5"),
    ({"layers": True}, "option layers must be an integer >= 1, got True"),
    ({"dropout": 1}, "option dropout must be a number in [0, 1), got 1"),
    ({"dropout": "nan"}, "option dropout must be a number in [0, 1), got 'nan'"),
    ({"fast": "maybe"}, "option fast must be true or false, got 'maybe'"),
    ({"aggr": "max"}, "option aggr must be one of sum, mean, got 'max'"),
    ({"alpha": 1.5}, "option alpha must be none, auto or a number in (0, 1), got 1.5"),
    ({"epoch": 2.5}, "option epoch must be an epoch >= 1 or a fraction in (0, 1), got 2.5"),
    ({"key": None}, "option key must be a string, got None"),
])
def test_bad_values_name_owner_option_and_what_is_allowed(values, message):
    with pytest.raises(HgimbError) as err:
        check(values)
    assert str(err.value) == "model 'm': " + message


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(HgimbError) as err:
        check({"layer": 3})
    assert str(err.value) == ("unknown --model-option layer for model 'm' (did you mean 'layers'?); valid options: "
                              "layers, dropout, fast, aggr, alpha, epoch, key, anything")
    with pytest.raises(HgimbError, match="valid options: none"):
        validate((), {"x": 1}, "model 'n'")


def test_help_lines_show_default_help_and_accepted_values():
    text = describe(SPEC, indent="")
    lines = text.splitlines()
    assert lines[0] == "layers=2  message-passing layers (an integer >= 1)"
    assert "fast=true  use the fast path (true or false)" in lines
    assert "alpha=none  weight (none, auto or a number in (0, 1))" in lines
    assert describe(()) == ""


def test_registries_declare_and_validate():
    from hgimb.data.registry import dataset_params, load_dataset
    from hgimb.imbalance import build_remedy
    from hgimb.imbalance.registry import REMEDIES
    from hgimb.models.registry import model_params

    assert [p.name for p in model_params("rgcn", "node")] == ["input_dropout", "use_edge_weight"]
    assert REMEDIES.get("focal").params == {"gamma": 2.0, "alpha": None}  # derived from the spec
    assert build_remedy("focal", {"gamma": "1.5", "alpha": "AUTO"}).parts[0].p == {"gamma": 1.5, "alpha": "auto"}
    assert {p.name for p in dataset_params("crystal:any")} >= {"radius", "max_neighbors", "threshold"}
    with pytest.raises(HgimbError, match="dataset 'synthetic': option homophily must be a number in \\[0, 1\\], got 2"):
        load_dataset("synthetic", homophily=2)


def test_crystal_flags_share_runconfig_rules():
    from hgimb.config import FIELD_RULES, RunConfig
    from hgimb.data.crystal import PARAMS

    by_name = {p.name: p for p in PARAMS}
    for name in ("radius", "max_neighbors", "gaussian_step"):
        assert by_name[name].constraint is FIELD_RULES[name] and by_name[name].default == getattr(RunConfig, name)


def test_train_describe_prints_the_specs(capsys):
    from hgimb import train

    assert train.main(["--describe", "tam"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("remedy tam (--remedy-param)") and "tam_warmup=5  epochs without margins (an integer >= 0)" in out
    assert "rgcn (node): input_dropout=0.0 use_edge_weight=true" in train.registry_listing()
    assert train.main(["--describe", "tamm"]) == 2
    assert "did you mean 'tam'" in capsys.readouterr().err

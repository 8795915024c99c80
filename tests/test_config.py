"""Config files: typed defaults, variant files, --set overrides and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w

from common.core import paths, registry
from common.core.config import (
    FREE_TABLES,
    SHARED_DEFAULTS,
    Config,
    _nest,
    changed_from,
    flatten,
    load_config,
    read_toml,
    require_choice,
)
from common.core.errors import UserError

MNIST_DEFAULTS = paths.PROJECTS_DIR / "mnist" / "config.toml"


def test_defaults_load_with_types():
    config = load_config(MNIST_DEFAULTS)
    assert isinstance(config.train.epochs, int)
    assert isinstance(config.train.learning_rate, float)
    assert config.data.path == ""


def test_the_seed_range_ends_at_numpys_largest_seed():
    assert load_config(MNIST_DEFAULTS, overrides=["seed=4294967295"]).seed == 2**32 - 1
    assert load_config(MNIST_DEFAULTS, overrides=["seed=0"]).seed == 0


def test_overrides_are_parsed_in_the_default_type():
    config = load_config(
        MNIST_DEFAULTS,
        overrides=[
            "train.epochs=3",
            "train.learning_rate=1",  # an int where a float is expected is fine
            "model.batch_norm=false",
            "model.conv_filters=[8, 16]",
            "train.optimizer=sgd",  # bare text for a string key
        ],
    )
    assert config.train.epochs == 3
    assert config.train.learning_rate == 1.0 and isinstance(config.train.learning_rate, float)
    assert config.model.batch_norm is False
    assert config.model.conv_filters == [8, 16]
    assert config.train.optimizer == "sgd"


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("train.epoch=3", ["unknown config key 'train.epoch'"]),
        ("nonsense.key=1", ["unknown config key 'nonsense.key'"]),
        ("train.epochs=three", ["'train.epochs'", "expects int"]),
        ("train.epochs=2.5", ["'train.epochs'", "expects int"]),
        ("model.batch_norm=3", ["'model.batch_norm'", "expects bool"]),
        ("model.conv_filters=[8, 'x']", ["'model.conv_filters'"]),
        ("train.epochs=-1", ["'train.epochs'", "at least 1"]),
        ("train.batch_size=0", ["'train.batch_size'"]),
        ("train.learning_rate=0", ["'train.learning_rate'", "greater than 0"]),
        ("seed=-1", ["'seed'", "from 0 to 2**32 - 1"]),
        ("seed=4294967296", ["'seed'", "from 0 to 2**32 - 1"]),  # one over NumPy's largest seed
        ("data.path=/no/such/file.npz", ["'data.path'", "does not exist"]),
        ("train", ["key=value"]),
        ("train=3", ["is a table"]),
    ],
)
def test_bad_values_name_the_key(override, fragments):
    with pytest.raises(UserError) as raised:
        load_config(MNIST_DEFAULTS, overrides=[override])
    message = str(raised.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_variant_file_overrides_defaults_and_command_line_wins(tmp_path):
    variant = tmp_path / "variant.toml"
    variant.write_text("[train]\nepochs = 7\nbatch_size = 16\n")
    config = load_config(MNIST_DEFAULTS, variant, ["train.epochs=2"])
    assert config.train.epochs == 2
    assert config.train.batch_size == 16


def test_variant_file_with_unknown_key_is_an_error(tmp_path):
    variant = tmp_path / "variant.toml"
    variant.write_text("[train]\nepochz = 7\n")
    with pytest.raises(UserError, match="unknown config key 'train.epochz'"):
        load_config(MNIST_DEFAULTS, variant)


def test_malformed_and_missing_files_are_one_line_errors(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nepochs = ")
    with pytest.raises(UserError, match="not valid TOML"):
        load_config(MNIST_DEFAULTS, broken)
    with pytest.raises(UserError, match="not found"):
        load_config(MNIST_DEFAULTS, tmp_path / "absent.toml")


def test_saved_config_reproduces_the_run(tmp_path):
    config = load_config(MNIST_DEFAULTS, overrides=["train.epochs=4", "model.dense_units=64"])
    saved = tmp_path / "config.toml"
    config.save(saved)
    assert load_config(MNIST_DEFAULTS, saved).to_dict() == config.to_dict()


@pytest.mark.parametrize(
    "config_file",
    [path for name in registry.project_names() for path in registry.get_project(name).config_variants()],
    ids=lambda path: f"{path.parent.name}/{path.name}",
)
def test_every_config_of_every_project_is_valid(config_file):
    """Each project's defaults and variants load; the shared keys are all there."""
    project = registry.get_project(config_file.parent.name)
    config = project.load_config(None if config_file == project.default_config else config_file)
    for key in ("seed", "train.epochs", "train.batch_size", "train.learning_rate", "data.path"):
        config.get(key)


def test_whole_numbers_in_a_list_of_floats_are_accepted(tmp_path):
    defaults = tmp_path / "config.toml"
    defaults.write_text(
        'seed = 1\n[data]\npath = ""\n[model]\nrates = [0.1, 0.2]\n'
        "[train]\nepochs = 1\nbatch_size = 1\nlearning_rate = 0.1\n"
    )
    config = load_config(defaults, overrides=["model.rates=[0, 0.5]"])
    assert config.model.rates == [0.0, 0.5] and isinstance(config.model.rates[0], float)
    with pytest.raises(UserError, match="'model.rates'"):
        load_config(defaults, overrides=["model.rates=[0, 'x']"])


@pytest.mark.parametrize(
    ("override", "key", "expects"),
    [
        ("train.epochs=true", "train.epochs", "int"),
        ("train.early_stopping_patience=false", "train.early_stopping_patience", "int"),
        ("seed=true", "seed", "int"),
        ("train.learning_rate=true", "train.learning_rate", "float"),
        ("model.conv_filters=[8, true]", "model.conv_filters", "int"),
        ("model.batch_norm=1", "model.batch_norm", "bool"),
    ],
)
def test_a_boolean_is_never_taken_for_a_number_nor_a_number_for_a_boolean(override, key, expects, tmp_path):
    # Python counts True as the int 1, which would train for one epoch: refused, naming the key.
    with pytest.raises(UserError) as raised:
        load_config(MNIST_DEFAULTS, overrides=[override])
    message = str(raised.value)
    assert "\n" not in message and f"'{key}'" in message and f"expects {expects}" in message
    # The same from a variant file.
    *tables, name = key.split(".")
    variant = tmp_path / "variant.toml"
    value = override.partition("=")[2]
    variant.write_text("".join(f"[{table}]\n" for table in tables) + f"{name} = {value}\n")
    with pytest.raises(UserError, match=f"'{key}'.*expects {expects}"):
        load_config(MNIST_DEFAULTS, variant)


def test_whole_numbers_become_floats_and_floats_never_become_whole_numbers(tmp_path):
    variant = tmp_path / "variant.toml"
    variant.write_text("[train]\nlearning_rate = 2\n")
    config = load_config(MNIST_DEFAULTS, variant)
    assert config.train.learning_rate == 2.0 and type(config.train.learning_rate) is float
    config = load_config(MNIST_DEFAULTS, overrides=["train.epochs=3", "train.learning_rate=3"])
    assert config.train.epochs == 3 and type(config.train.epochs) is int
    assert config.train.learning_rate == 3.0 and type(config.train.learning_rate) is float
    for whole_float in ("train.epochs=3.0", "train.batch_size=64.0"):
        with pytest.raises(UserError, match="expects int like"):
            load_config(MNIST_DEFAULTS, overrides=[whole_float])


EMOJIFY_DEFAULTS = paths.PROJECTS_DIR / "emojify" / "config.toml"


@pytest.mark.parametrize(
    ("key", "accepted", "refused", "requirement"),
    [
        ("train.early_stopping_patience", [0, 3], [-1], "must be 0 (off) or more epochs"),
        ("train.cpu_devices", [1, 64], [0, 65], "must be 1 (the CPU as one device) to 64"),
        ("train.momentum", [0.0, 0.99], [-0.1, 1.0], "must lie in [0, 1) (0 = off)"),
        ("train.weight_decay", [0.0, 0.01], [-0.001], "must be 0 (off) or more"),
        ("train.plateau_factor", [0.01, 0.99], [0.0, 1.0], "must lie between 0 and 1"),
        ("train.plateau_patience", [0, 2], [-1], "must be 0 (the default rule) or more epochs"),
    ],
)
def test_each_training_key_is_checked_at_the_edges_of_its_range(key, accepted, refused, requirement):
    for value in accepted:
        assert load_config(EMOJIFY_DEFAULTS, overrides=[f"{key}={value}"]).get(key) == value
    for value in refused:
        with pytest.raises(UserError) as raised:
            load_config(EMOJIFY_DEFAULTS, overrides=[f"{key}={value}"])
        assert str(raised.value) == f"config key '{key}' {requirement}; received: {value!r}"


def test_a_config_without_a_required_key_names_it(tmp_path):
    defaults = tmp_path / "config.toml"
    defaults.write_text("seed = 1\n[train]\nbatch_size = 8\n")
    with pytest.raises(UserError) as raised:
        load_config(defaults)
    assert str(raised.value) == "config is missing the required key 'data.path'"


def test_a_project_file_without_shared_keys_takes_them_from_the_shared_defaults(tmp_path):
    """A shared key the project does not set comes from common/core/defaults.toml, its types too."""
    defaults = tmp_path / "config.toml"
    defaults.write_text('[data]\npath = ""\n[train]\nbatch_size = 8\n')
    shared = read_toml(SHARED_DEFAULTS)
    config = load_config(defaults)
    assert config.train.batch_size == 8 and config.sources["train.batch_size"] == "project"
    assert config.train.epochs == shared["train"]["epochs"] and config.sources["train.epochs"] == "default"
    assert config.seed == shared["seed"] and config.sources["seed"] == "default"
    with pytest.raises(UserError, match="'train.epochs'.*expects int"):
        load_config(defaults, overrides=["train.epochs=many"])


def test_a_choice_is_compared_exactly_unless_it_names_a_keras_object():
    """Keras' own names take any case (``Adam`` is ``adam``); a project's choices are compared
    exactly, as the code that reads them compares them, so ``LSTM`` is refused, not let through."""
    config = Config({"model": {"cell": "LSTM"}, "train": {"optimizer": "Adam"}})
    require_choice(config, "train.optimizer", ("adam", "sgd"), "a Keras optimizer", any_case=True)
    with pytest.raises(
        UserError, match=r"^config key 'model.cell': 'LSTM' is not a cell; choose one of lstm, gru$"
    ):
        require_choice(config, "model.cell", ("lstm", "gru"), "a cell")


DEMOS = ("mnist", "emojify", "stock")


def _table_lines(path: Path, table: str) -> list[str]:
    """The non-blank lines (comments included) of one ``[table]`` of a TOML file."""
    lines, inside = [], False
    for line in path.read_text().splitlines():
        if line.startswith("["):
            inside = line.strip() == f"[{table}]"
        elif inside and line.strip():
            lines.append(line)
    return lines


def test_no_train_line_is_written_twice_across_the_demos():
    """The shared [train] keys and their comments are written once, in common/core/defaults.toml."""
    demos = [name for name in DEMOS if name in registry.project_names()]
    for index, first in enumerate(demos):
        for second in demos[index + 1 :]:
            ours, theirs = (
                set(_table_lines(registry.get_project(name).default_config, "train"))
                for name in (first, second)
            )
            assert not ours & theirs, f"{first} and {second} both write {sorted(ours & theirs)}"


@pytest.mark.parametrize("name", [name for name in registry.project_names() if name in DEMOS])
def test_a_demo_sets_no_shared_key_to_its_shared_default(name):
    """A shared key in a project's config.toml changes it: restating the default would hide a later
    change of the shared default from that project."""
    project = registry.get_project(name)
    shared = flatten(read_toml(SHARED_DEFAULTS))
    own = flatten(read_toml(project.default_config))
    restated = {
        key
        for key, value in own.items()
        if key in shared and not changed_from({key: shared[key]}, {key: value})
    }
    assert not restated


@pytest.mark.parametrize("name", [name for name in registry.project_names()])
def test_each_project_declares_the_keys_its_config_toml_holds(name):
    """The declared keys and config.toml agree: every declared key has a default there of the
    declared type, and every key there is declared or shared (``load_config`` refuses the rest)."""
    project = registry.get_project(name)
    keys = project.declared_keys()
    if keys is None:
        pytest.skip(f"{name} declares no keys: its config.toml is its own schema")
    shared = flatten(read_toml(SHARED_DEFAULTS))
    assert not set(keys) & set(shared), "a shared key is declared again"
    own = flatten(read_toml(project.default_config))
    assert set(keys) <= set(own)
    config = project.load_config(check_paths=False)
    assert {key: config.schema[key] for key in keys} == keys


def _misspelt_cases() -> list[tuple[str, str]]:
    cases = []
    for name in registry.project_names():
        project = registry.get_project(name)
        if name in DEMOS and project.declared_keys() is not None:
            cases += [(name, key) for key in flatten(read_toml(project.default_config))]
    return cases


@pytest.mark.parametrize(("name", "key"), _misspelt_cases())
def test_a_misspelt_key_in_a_demos_config_toml_is_one_line_naming_the_file_and_the_key(name, key, tmp_path):
    """Every key of each demo's config.toml, misspelt by its last letter, as a user's typo: one
    line naming the file, the misspelt key and the key meant, before anything else is read."""
    project = registry.get_project(name)
    *tables, last = key.split(".")
    misspelt = ".".join([*tables, last[:-1]])
    values = flatten(read_toml(project.default_config))
    values = {misspelt if other == key else other: value for other, value in values.items()}
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.toml").write_text(tomli_w.dumps(_nest(values)))
    with pytest.raises(UserError) as raised:
        load_config(folder / "config.toml", keys=project.declared_keys())
    message = str(raised.value)
    assert "\n" not in message
    assert f"unknown config key '{misspelt}" in message and str(folder / "config.toml") in message
    if key not in FREE_TABLES:
        assert f"did you mean '{key}'?" in message


def test_a_declared_key_missing_from_config_toml_is_named(tmp_path):
    keys = {"data.path": str, "model.units": int}
    (tmp_path / "config.toml").write_text('[data]\npath = ""\n')
    with pytest.raises(UserError) as raised:
        load_config(tmp_path / "config.toml", keys=keys)
    assert str(raised.value).startswith(f"{tmp_path / 'config.toml'} lacks the key 'model.units'")
    (tmp_path / "config.toml").write_text('[data]\npath = ""\n[model]\nunits = "four"\n')
    with pytest.raises(UserError, match=r"'model.units' \(from .*config.toml\) expects int"):
        load_config(tmp_path / "config.toml", keys=keys)


def test_declared_types_check_every_layer(tmp_path):
    """A declared list type checks each item, and an empty default list still knows its items."""
    keys = {"data.path": str, "model.rates": list[float], "model.names": list[str]}
    (tmp_path / "config.toml").write_text('[data]\npath = ""\n[model]\nrates = [1, 0.5]\nnames = []\n')
    config = load_config(tmp_path / "config.toml", keys=keys, overrides=["model.names=['a']"])
    assert config.model.rates == [1.0, 0.5] and type(config.model.rates[0]) is float
    assert config.model.names == ["a"]
    with pytest.raises(UserError, match="'model.names'.*expects str"):
        load_config(tmp_path / "config.toml", keys=keys, overrides=["model.names=[1, [2]]"])


def test_a_misspelt_key_in_tune_space_is_named_with_the_key_meant(tmp_path):
    variant = tmp_path / "search.toml"
    variant.write_text('[tune.space]\n"model.dense_unit" = [64, 128]\n')
    with pytest.raises(UserError) as raised:
        load_config(MNIST_DEFAULTS, variant)
    assert str(raised.value) == (
        f"[tune.space] (from {variant}) names 'model.dense_unit', which is not a config key "
        "(did you mean 'model.dense_units'?)"
    )


def test_each_value_knows_its_layer_and_the_project_defaults_stay_apart(tmp_path):
    variant = tmp_path / "variant.toml"
    variant.write_text('[train]\nepochs = 7\noptimizer = "sgd"\n')
    config = load_config(MNIST_DEFAULTS, variant, ["train.epochs=2"])
    own = flatten(read_toml(MNIST_DEFAULTS))
    shared = flatten(read_toml(SHARED_DEFAULTS))
    assert config.sources["train.epochs"] == "--set" and config.sources["train.optimizer"] == "variant"
    assert all(config.sources[key] == "project" for key in own)
    untouched = [key for key in shared if key not in own and key not in ("train.epochs", "train.optimizer")]
    assert untouched and all(config.sources[key] == "default" for key in untouched)
    assert config.changed() == {"train.epochs": 2, "train.optimizer": "sgd"}
    assert config.defaults is not None and config.defaults["train.epochs"] == shared["train.epochs"]
    assert config.record() == {"sources": config.sources, "defaults": config.defaults}

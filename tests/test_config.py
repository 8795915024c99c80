"""Config files: typed defaults, variant files, --set overrides and errors that name the key."""

from __future__ import annotations

import pytest

from common.core import paths, registry
from common.core.config import SHARED_DEFAULTS, Config, load_config, read_toml, require_choice
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
    defaults = config_file.parent / "config.toml"
    config = load_config(defaults, None if config_file == defaults else config_file)
    for key in ("seed", "train.epochs", "train.batch_size", "train.learning_rate", "data.path"):
        config.get(key)
    project = registry.get_project(config_file.parent.name)
    validate = project.functions.validate_config
    if validate is not None:
        validate(config)


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

import pytest

from visiontrain.config import Config, ConfigError, build_config, load_yaml, to_yaml


def test_defaults_resolve_to_the_fashion_mnist_preset():
    config = build_config({})
    assert config.preset == "fashion-mnist" and config.dataset == "fashion-mnist" and config.model == "fastnet-s1"


def test_explicit_model_skips_the_dataset_preset():
    config = build_config({"dataset": "mnist", "model": "simple-cnn", "epochs": 1})
    assert config.preset is None and config.model == "simple-cnn" and config.optimizer == Config.optimizer


def test_explicit_fields_override_a_preset():
    config = build_config({"preset": "fashion-mnist", "epochs": 3})
    assert config.epochs == 3 and config.optimizer == "sgd"


@pytest.mark.parametrize("values, words", [
    ({"batch_size": 0}, ["batch_size", "out of range"]),
    ({"lr": -1}, ["lr", "out of range"]),
    ({"lr": "fast"}, ["lr", "not a number"]),
    ({"epochs": 2.5}, ["epochs", "whole number"]),
    ({"optimizer": "rmsprop"}, ["optimizer", "sgd, adam, adamw"]),
    ({"model": "lenett"}, ["model", "did you mean 'lenet'"]),
    ({"dataset": "fashion-mnst"}, ["dataset", "did you mean 'fashion-mnist'"]),
    ({"dataset": "./no/such/folder"}, ["dataset", "does not exist"]),
    ({"batchsize": 3}, ["unknown config field 'batchsize'", "batch_size"]),
    ({"channels": 2}, ["channels"]),
    ({"device": "gpu"}, ["device"]),
    ({"tta": "maybe"}, ["tta", "true or false"]),
])
def test_bad_values_name_the_field(values, words):
    with pytest.raises(ConfigError) as error:
        build_config(values)
    for word in words:
        assert word in str(error.value)


def test_yaml_round_trip_repeats_the_config(tmp_path):
    config = build_config({"dataset": "mnist", "model": "lenet", "lr": 0.01, "epochs": 2})
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(config))
    assert build_config(load_yaml(path), apply_preset=False) == config


def test_a_file_given_as_dataset_is_refused(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(b"x")
    with pytest.raises(ConfigError, match="is a file"):
        build_config({"dataset": str(path)})


def _wrong_value(hint) -> tuple[object, str]:
    """A value of the wrong type for a field of type `hint`, and what the error must say of it."""
    import typing

    if typing.get_origin(hint) is typing.Literal:
        return "no-such-choice", f"is not allowed; choose one of {', '.join(typing.get_args(hint))}"
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return {bool: ("maybe", "is not true or false"), int: ("many", "is not a whole number"),
            float: ("lots", "is not a number"), str: (42, "is not text")}[args[0]]


def test_every_field_rejects_a_wrong_type_naming_the_field():
    import dataclasses
    import typing

    hints = typing.get_type_hints(Config)
    for field in dataclasses.fields(Config):
        value, says = _wrong_value(hints[field.name])
        with pytest.raises(ConfigError) as error:
            build_config({field.name: value}, apply_preset=False)
        assert str(error.value) == f"{field.name}: {value!r} {says}"


def test_a_config_file_from_a_newer_visiontrain_is_refused(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("format_version: 99\nepochs: 2\n")
    with pytest.raises(ConfigError, match="newer than this visiontrain"):
        load_yaml(path)


def test_every_ranged_field_rejects_a_value_out_of_range_on_either_side():
    from visiontrain.config import FIELDS

    ranged = {name: f.metadata["range"] for name, f in FIELDS.items() if f.metadata["range"] is not None}
    assert len(ranged) >= 30  # the numbers users set: none is left unchecked
    for name, (low, high, allowed) in ranged.items():
        kind = int if isinstance(high, int) and isinstance(low, int) else float
        for wrong in (high * 2 + 1, low - 1):
            with pytest.raises(ConfigError) as error:
                build_config({name: kind(wrong)}, apply_preset=False)
            assert str(error.value) == f"{name}: {kind(wrong)!r} is out of range; use {allowed}", name


def test_a_file_given_as_data_dir_is_refused(tmp_path):
    path = tmp_path / "mnist.gz"
    path.write_bytes(b"x")
    with pytest.raises(ConfigError, match="data_dir: .* is not a folder"):
        build_config({"data_dir": str(path)})


def test_train_help_documents_every_field_with_its_default_grouped():
    """`visiontrain train --help`: each field's flag, its help and its default, under its group's heading."""
    import contextlib
    import io

    from visiontrain.cli import main
    from visiontrain.config import FIELDS, GROUPS

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(out.getvalue().split())  # argparse wraps lines
    for title in GROUPS.values():
        assert f"{title}:" in text
    for name, field in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        assert flag in text, flag
        help_text = " ".join(field.metadata["help"].split())
        assert help_text in text, name
        after = text[text.index(help_text) + len(help_text):]
        assert "default:" in help_text or after.startswith(" (default: "), name
    positions = [text.index(f"{title}:") for title in GROUPS.values()]
    assert positions == sorted(positions)
    assert text.index("--batch-size") > positions[2] and text.index("--window") < positions[1]  # in its group

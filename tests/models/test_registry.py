"""Registry, specs and their error messages (no TensorFlow needed for most of these)."""

from __future__ import annotations

import pytest

from models import families
from models.errors import SpecError
from models.spec import InputSpec, ModelSpec, Task


def test_get_known_families() -> None:
    assert set(families.names()) == {"mlp", "cnn1d", "tiny_cnn", "autoencoder"}
    assert families.get("cnn1d").name == "cnn1d"


def test_get_unknown_family_names_the_known_ones() -> None:
    with pytest.raises(SpecError) as err:
        families.get("resnet50")
    msg = str(err.value)
    assert "resnet50" in msg
    for name in ("mlp", "cnn1d", "tiny_cnn", "autoencoder"):
        assert name in msg


def test_family_rejects_unsupported_task() -> None:
    spec = ModelSpec("mlp", Task.FORECAST, InputSpec.tabular(["a", "b"]))
    with pytest.raises(
        SpecError,
        match=r"family 'mlp' supports tasks classify, regress\. "
        r"Received: task='forecast'",
    ):
        families.get("mlp").check(spec)


def test_family_rejects_wrong_rank() -> None:
    spec = ModelSpec("tiny_cnn", Task.CLASSIFY, InputSpec.tabular(["a", "b"]), labels=("x", "y"))
    with pytest.raises(SpecError, match=r"input\.shape=\(2,\)"):
        families.get("tiny_cnn").check(spec)


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: InputSpec(shape=(0,)), "positive integers. Received: input.shape=(0,)"),
        (lambda: InputSpec.tabular(["a"], units=["C", "F"]), "one unit per feature name"),
        (lambda: InputSpec.image(4, 50), "Received: height=4"),
        (
            lambda: ModelSpec("mlp", "classify", InputSpec.tabular(["a"]), labels=("one",)),
            "at least two class labels",
        ),
        (lambda: ModelSpec("mlp", "dance", InputSpec.tabular(["a"])), "Received: task='dance'"),
        (lambda: ModelSpec("mlp", "regress", InputSpec.tabular(["a"])), "at least one output"),
        (
            lambda: ModelSpec("mlp", "regress", InputSpec.tabular(["a"]), outputs=("y",), width=-3),
            "Received: width=-3",
        ),
    ],
)
def test_spec_errors_say_expected_and_received(build: object, fragment: str) -> None:
    with pytest.raises(SpecError) as err:
        build()  # type: ignore[operator]
    assert "expected" in str(err.value)
    assert fragment in str(err.value)


def test_spec_round_trips_through_dict() -> None:
    spec = ModelSpec("cnn1d", Task.FORECAST, InputSpec.windowed(["t", "h"], 16, units=["C", "%"]))
    assert spec.outputs == ("t", "h")
    assert ModelSpec.from_dict(spec.to_dict()) == spec


def test_build_small_enough_for_a_pi() -> None:
    pytest.importorskip("keras")
    from models import synthetic

    counts = {}
    for family, task in [
        ("mlp", "classify"),
        ("cnn1d", "forecast"),
        ("tiny_cnn", "classify"),
        ("autoencoder", "anomaly"),
    ]:
        spec = synthetic.make(family, task, n=8).spec
        counts[family] = families.build(spec).count_params()
    assert all(500 <= n <= 50_000 for n in counts.values()), counts

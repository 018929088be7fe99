from __future__ import annotations

import ast
import importlib.util
import sys
import tomllib
import types
from pathlib import Path

import pytest

from coordinator.federation import fab, strategies
from coordinator.federation.errors import InvalidRunConfig
from coordinator.federation.runconfig import RunSettings, to_toml


def test_the_built_fab_declares_every_run_setting_with_its_default(tmp_path: Path) -> None:
    app = fab.build(tmp_path)
    project = tomllib.loads((app / "pyproject.toml").read_text())
    assert project["tool"]["flwr"]["app"]["config"] == RunSettings().to_run_config()
    assert project["tool"]["flwr"]["app"]["components"]["serverapp"]
    assert sorted(p.name for p in (app / "orchard_fab").glob("*.py")) == [
        "__init__.py",
        "client_app.py",
        "server_app.py",
    ]
    source = tomllib.loads((fab.SOURCE / "pyproject.toml").read_text())
    assert "config" not in source["tool"]["flwr"]["app"]  # one source of defaults
    assert fab.build(tmp_path) == app  # rebuilt in place for the next run


def test_fab_entry_modules_are_thin() -> None:
    """Imports and the name Flower loads, nothing else: the code lives in the packages."""
    for name in ("server_app.py", "client_app.py"):
        tree = ast.parse((fab.SOURCE / "orchard_fab" / name).read_text())
        for node in tree.body:
            body = [*node.body, *node.handlers[0].body] if isinstance(node, ast.Try) else [node]
            for stmt in body:
                assert isinstance(stmt, ast.Import | ast.ImportFrom | ast.Assign | ast.Expr), (
                    name,
                    ast.unparse(stmt),
                )


def test_fab_client_entry_loads_an_older_agents_client_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A board still on an agent from before agent/clientapp/ (mid-update) runs the FAB too."""
    older = types.SimpleNamespace(app=object())
    monkeypatch.setitem(sys.modules, "agent.clientapp.app", None)  # import raises
    monkeypatch.setitem(sys.modules, "agent.federation.client_app", older)
    spec = importlib.util.spec_from_file_location(
        "entry_under_test", fab.SOURCE / "orchard_fab" / "client_app.py"
    )
    assert spec is not None and spec.loader is not None
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    assert entry.app is older.app


def test_run_config_round_trips_through_the_toml_flwr_reads() -> None:
    s = RunSettings(
        model_spec='{"family": "mlp", "note": "a \\"quoted\\" value"}', strategy="fedprox"
    )
    parsed = tomllib.loads(to_toml(s))
    assert RunSettings.from_run_config(parsed) == s


def test_every_wrong_key_is_named_with_value_and_expectation() -> None:
    with pytest.raises(InvalidRunConfig) as info:
        RunSettings.from_mapping(
            {"rounds": 3, "strategy": "fedsgd", "batch_size": 0, "learning-rate": "fast"}
        )
    text = str(info.value)
    assert "run.rounds: expected a known key (did you mean 'num_server_rounds'?)" in text
    assert "run.learning_rate: expected a number. Received: learning_rate='fast'" in text
    errors = info.value.errors
    assert len(errors) == 2  # type errors first; range errors once types are right
    with pytest.raises(InvalidRunConfig) as info:
        RunSettings.from_mapping({"strategy": "fedsgd", "batch_size": 0})
    assert len(info.value.errors) == 2
    assert "one of fedavg" in str(info.value) and "batch_size: expected an integer >= 1" in str(
        info.value
    )


@pytest.mark.parametrize("name", strategies.names())
def test_every_strategy_builds(name: str) -> None:
    strategy = strategies.build(RunSettings(strategy=name), min_nodes=2)
    assert type(strategy).__name__.lower() == name


def test_unknown_strategy_lists_the_known_ones() -> None:
    with pytest.raises(InvalidRunConfig, match="fedavg, fedprox"):
        strategies.get("fedsgd")


def test_the_old_kebab_spelling_is_read_with_a_warning_naming_the_new_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = RunSettings.from_mapping({"num-server-rounds": 7, "min_devices": 3})
    assert (settings.num_server_rounds, settings.min_devices) == (7, 3)
    assert "run.num-server-rounds: the old spelling; write run.num_server_rounds" in caplog.text
    assert "min_devices" not in caplog.text  # the current spelling is not warned about


def test_grouped_tables_read_and_keep_flowers_flat_run_config() -> None:
    doc = tomllib.loads(
        """
        strategy = "fedadam"
        validation = "v.csv"
        [strategy_options]
        eta = 0.05
        [local_dp]
        enabled = true
        epsilon = 2
        """
    )
    s = RunSettings.from_mapping(doc)
    assert s.strategy_options.eta == 0.05 and s.local_dp.enabled
    assert s.local_dp.epsilon == 2.0 and isinstance(s.local_dp.epsilon, float)
    flat = s.to_run_config()
    assert flat["eta"] == 0.05 and flat["local-dp"] is True and flat["local-dp-epsilon"] == 2.0
    assert RunSettings.from_run_config(flat) == s


def test_a_wrong_key_inside_a_group_is_named_with_its_table() -> None:
    with pytest.raises(InvalidRunConfig) as info:
        RunSettings.from_mapping({"local_dp": {"epsilonn": 1.0}, "strategy_options": {"tau": "x"}})
    text = str(info.value)
    assert "run.local_dp.epsilonn: expected a known key (did you mean 'epsilon'?)" in text
    assert "run.strategy_options.tau: expected a number. Received: tau='x'" in text

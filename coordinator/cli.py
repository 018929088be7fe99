"""``orchard-coordinator``: the laptop side (federation, fleet, dashboard, demo)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from coordinator import fleet_cli, rollout_cli
from coordinator.remote import cli as config_cli
from coordinator.software import cli as software_cli

if TYPE_CHECKING:
    from coordinator.config import CoordinatorSettings

CONFIG_ERROR = 78  # as the agent: a config problem, not worth restarting

app = typer.Typer(help="Orchard coordinator: runs on the laptop.", no_args_is_help=True)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@app.command()
def smoke(
    out: Path = typer.Option(Path("runs/smoke"), help="Where the model bundle is written."),
    family: str = typer.Option("mlp", help="Model family: mlp, cnn1d, tiny_cnn, autoencoder."),
    task: str = typer.Option("classify", help="classify, regress, forecast or anomaly."),
    quantization: str = typer.Option("int8", help="float32, float16, dynamic or int8."),
) -> None:
    """Train on synthetic data, export TFLite, and predict with LiteRT in a TF-free process."""
    from coordinator import smoke as smoke_run
    from models.errors import ModelError

    typer.echo(f"training {family}/{task} on synthetic data, exporting {quantization} ...")
    try:
        result = smoke_run.run(out, family=family, task=task, quantization=quantization)
    except ModelError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    m = result.manifest
    parity = m["parity"]
    assert isinstance(parity, dict)
    metrics = ", ".join(f"{k}={v:.3f}" for k, v in result.held_metrics.items() if k != "examples")
    typer.echo(f"held-out {metrics}")
    file = m["file"]
    assert isinstance(file, dict)
    typer.echo(
        f"exported {result.bundle}/{file['name']} ({file['size_bytes']} bytes, "
        f"{m['quantization']}), parity passed: max abs diff {parity['max_abs_diff']:.4f}"
    )
    typer.echo(
        f"predictions from LiteRT ({result.predictions[0]['backend']}, TensorFlow loaded: "
        f"{result.predictions[0]['tensorflow_loaded']}):"
    )
    for p in result.predictions:
        typer.echo(f"  input={p['input']} -> predicted={p['predicted']}  (truth: {p['truth']})")


@app.command()
def demo(
    devices: int = typer.Option(3, min=1, max=32, help="Simulated boards (agent processes)."),
    rounds: int = typer.Option(3, min=1, help="Federated rounds."),
    data: str = typer.Option("synthetic", help="synthetic, or csv:PATH to federate any CSV."),
    task: str = typer.Option(
        "classify", help="classify (mlp), anomaly (autoencoder), forecast (cnn1d)."
    ),
    partition: str = typer.Option(
        "dirichlet:1.0", help="iid or dirichlet:ALPHA (smaller = more skewed)."
    ),
    strategy: str = typer.Option(
        "fedavg", help="fedavg, fedprox, fedadam, fedyogi, fedavgm, fedtrimmedavg, fedmedian."
    ),
    workdir: Path = typer.Option(
        Path("orchard-demo"), help="Where devices, SuperLink state and runs go."
    ),
    quantization: str = typer.Option(
        "int8", help="Export of each round's model: float32, float16, dynamic, int8."
    ),
) -> None:
    """Coordinator + N simulated agents on loopback: train, plot, then ask each device."""
    from coordinator.demo import DemoSettings
    from coordinator.demo import run as run_demo
    from coordinator.errors import CoordinatorError

    opts = DemoSettings(
        devices=devices,
        rounds=rounds,
        data=data,
        task=task,
        partition=partition,
        strategy=strategy,
        workdir=workdir,
        quantization=quantization,
    )
    try:
        result = run_demo(opts, say=typer.echo)
    except CoordinatorError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    plots = [result.run_dir / name for name in ("training.png", "confusion.png")]
    shown = ", ".join(str(p) for p in plots if p.exists())
    typer.echo(f"\ndone in {result.seconds:.0f} s. Plots: {shown}")
    if result.dashboard_url:
        typer.echo(f"(the dashboard was at {result.dashboard_url} while the demo ran)")
    typer.echo("each device's answer from GET /api/predict/latest:")
    for device, answer in result.answers.items():
        typer.echo(f"  {device}: {_answer_line(answer)}")


def _answer_line(answer: dict[str, object]) -> str:
    if "error" in answer:
        return f"error: {answer['error']}"
    result = answer.get("result")
    if isinstance(result, list) and len(result) == 1:
        result = result[0]
    version = answer.get("model_version")
    if isinstance(result, dict) and "label" in result:
        scores = result.get("scores")
        top = max(scores.values()) if isinstance(scores, dict) and scores else None
        share = f" ({top:.2f})" if isinstance(top, float) else ""
        return f"{result['label']}{share} from model {version}"
    if isinstance(result, dict) and "score" in result:
        flag = "ANOMALY" if result.get("anomaly") else "normal"
        return f"{flag} (score {result['score']:.3g}) from model {version}"
    return f"{result} from model {version}"


DEFAULT_CONFIG = Path("coordinator.toml")
DELIVER_WAIT_S = 120.0  # after a run: how long `run` waits for every online board to install


def _load_or_exit(path: Path) -> CoordinatorSettings:
    from coordinator import config
    from coordinator.errors import InvalidConfig

    try:
        return config.load(path)
    except InvalidConfig as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(CONFIG_ERROR) from exc


@app.command("check-config")
def check_config(
    path: Path = typer.Argument(DEFAULT_CONFIG, help="The coordinator.toml to check."),
) -> None:
    """Validate a config file; name every wrong key, its value and what was expected."""
    cfg = _load_or_exit(path)
    model = f"{cfg.model.family}/{cfg.model.task.value}" if cfg.model else "none ([model] missing)"
    broker = cfg.health.mqtt.host or "embedded"
    typer.echo(
        f"{path}: OK — SuperLink {cfg.superlink.host}:{cfg.superlink.port}, model {model}, "
        f"strategy {cfg.run.strategy}, {cfg.run.num_server_rounds} rounds, MQTT {broker}"
    )


@app.command()
def run(
    config_path: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="coordinator.toml"),
    keep_serving: bool = typer.Option(
        False, help="Keep the SuperLink, ingest and dashboard up after the run."
    ),
) -> None:
    """Start the SuperLink, health ingest and dashboard; run the federated training in [run]."""
    from coordinator.errors import CoordinatorError
    from coordinator.service import Coordinator

    cfg = _load_or_exit(config_path)
    if cfg.model is None:
        typer.secho(
            f"{config_path}: [model] is required to train (family, task, features ...)",
            fg="red",
            err=True,
        )
        raise typer.Exit(CONFIG_ERROR)
    try:
        with Coordinator(cfg, say=typer.echo) as coordinator:
            result = coordinator.train()
            typer.echo(f"run {result.run_id} completed: {result.run_dir}")
            typer.echo(f"plots: {result.run_dir / 'training.png'}")
            coordinator.deliver_after_run(result, timeout=DELIVER_WAIT_S)
            if coordinator.models.rollout_active():
                typer.echo(
                    "a canary rollout is running: serving until it is decided "
                    "(orchard-coordinator rollout status; Ctrl-C stops, the rollout resumes "
                    "at the next start)"
                )
                coordinator.wait(until=lambda: not coordinator.models.rollout_active())
            if keep_serving:
                typer.echo("serving until Ctrl-C / SIGTERM ...")
                coordinator.wait()
    except CoordinatorError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc


@app.command()
def serve(
    config_path: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="coordinator.toml"),
) -> None:
    """Serve without training: health, dashboard, models and rollouts, the SuperLink."""
    from coordinator.errors import CoordinatorError
    from coordinator.service import Coordinator

    cfg = _load_or_exit(config_path)
    try:
        with Coordinator(cfg, say=typer.echo) as coordinator:
            typer.echo("serving until Ctrl-C / SIGTERM ...")
            coordinator.wait()
    except CoordinatorError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc


@app.command("runs")
def list_runs(
    runs_dir: Path = typer.Option(Path("orchard-state/runs"), help="Where runs/<run-id>/ live."),
) -> None:
    """List federated runs with their final metrics."""
    from coordinator.federation.runs import summaries

    rows = summaries(runs_dir)
    if not rows:
        typer.echo(f"no runs under {runs_dir}")
        return
    typer.echo(
        f"{'run':<22} {'status':<10} {'strategy':<14} {'rounds':>6} {'central':>8} "
        f"{'devices':>8} {'started':<20}"
    )
    for r in rows:
        typer.echo(
            f"{r.run_id:<22} {r.status:<10} {r.strategy:<14} {r.rounds:>6} {r.central:>8} "
            f"{r.devices:>8} {r.started:<20}"
        )


@app.command()
def predict(
    model: Path = typer.Option(..., help="A model bundle: runs/<run-id>/round-<n>"),
    input_path: Path = typer.Option(
        ..., "--input", help='CSV (feature columns) or JSON {"instances": [...]}'
    ),
) -> None:
    """Predict with a round's TFLite model through LiteRT, as a device would."""
    from coordinator.errors import CoordinatorError
    from coordinator.federation.runs import predict_file
    from models.errors import ModelError

    try:
        for line in predict_file(model, input_path):
            typer.echo(line)
    except (CoordinatorError, ModelError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc


fleet_app = typer.Typer(help="The fleet table; `fleet update` rolls out agent software.")
fleet_app.callback(invoke_without_command=True)(fleet_cli.fleet)
fleet_app.command("update")(software_cli.update)
app.add_typer(fleet_app, name="fleet")
app.add_typer(rollout_cli.app, name="rollout")
app.add_typer(config_cli.app, name="config")


def main() -> None:
    app()

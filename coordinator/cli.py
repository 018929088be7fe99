"""``orchard-coordinator``: the laptop side (federation, fleet, dashboard, demo)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

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
    typer.echo(f"predictions from LiteRT ({result.predictions[0]['backend']}, TensorFlow loaded: "
               f"{result.predictions[0]['tensorflow_loaded']}):")  # fmt: skip
    for p in result.predictions:
        typer.echo(f"  input={p['input']} -> predicted={p['predicted']}  (truth: {p['truth']})")


def main() -> None:
    app()

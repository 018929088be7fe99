"""A corpus of damaged model bundles, built from real exported ones (no binaries committed).

Each :class:`Candidate` is a bundle directory (``model.tflite`` + ``manifest.json``) with a
distinct version, so an accidental swap shows, and the words its refusal reason must contain
(any one of ``why``). Two families:

* :func:`must_refuse`: truncated files (the manifest unchanged, or "synced" to the damaged
  bytes so LiteRT itself has to judge them), seeded bit flips with the manifest unchanged,
  a valid model of another task / input shape / quantization under the good model's manifest,
  manifests that lie about sha256, size or shapes, unreadable manifests, a tensor inflated
  to gigabytes (a memory bomb) and files that are not TFLite at all.
* :func:`synced_flips`: seeded bit flips whose manifest hash matches the damaged file. Such a
  file may be refused for many reasons, or load and still reproduce the golden samples when
  the flip hit something inert (a tensor name); ``why`` is empty for these.

``tests/agent/test_slots.py`` already covers the in-process refusals of one truncation, one
flip with a stale hash, random bytes, lying tensor shapes and golden data; this corpus adds
what reaches LiteRT, several points and seeds, wrong models, and the path through a running
agent's inbox.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flatbuffers  # type: ignore[import-untyped]
from ai_edge_litert import schema_py_generated as tfl

from models.manifest import MANIFEST_FILE, MODEL_FILE, sha256_file

SIZE = ("bytes (manifest)",)
SHA = ("sha256",)
LITERT = ("LiteRT could not load", "TFL3", "expected input tensor", "expected output tensor")
INPUT = ("expected input tensor", "expected input shape")
OUTPUT = ("expected output tensor",)
MANIFEST = ("JSON manifest", "RecursionError", "manifest")
UNTYPED = ("UnicodeDecodeError", "lacks data", *LITERT)


@dataclass(frozen=True)
class Candidate:
    name: str
    path: Path
    why: tuple[str, ...]  # the refusal reason contains one of these; () = may even be accepted

    @property
    def version(self) -> str:
        return json.loads((self.path / MANIFEST_FILE).read_text())["version"]


@dataclass(frozen=True)
class Sources:
    """Exported bundles the corpus is made from (see tests/agent/serve/bundles.py)."""

    good: Path  # the serving model's bundle: mlp classify float32
    other_task: Path  # mlp regress: same input, other output
    other_shape: Path  # cnn1d forecast: windowed input
    other_quantization: Path  # mlp classify int8: same task, other tensors


def _manifest(bundle: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((bundle / MANIFEST_FILE).read_text())
    return data


def _write_manifest(bundle: Path, data: dict[str, Any]) -> None:
    (bundle / MANIFEST_FILE).write_text(json.dumps(data))


def sync(bundle: Path) -> None:
    """Make the manifest's sha256 and size agree with whatever model file is there now."""
    data = _manifest(bundle)
    model = bundle / MODEL_FILE
    data["file"]["sha256"] = sha256_file(model)
    data["file"]["size_bytes"] = model.stat().st_size
    _write_manifest(bundle, data)


def _derive(src: Path, root: Path, name: str) -> Path:
    out = root / name
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(src, out)
    data = _manifest(out)
    data["version"] = f"corrupt-{name}"
    _write_manifest(out, data)
    return out


def flip(data: bytes, rng: random.Random, bits: int) -> bytes:
    out = bytearray(data)
    for _ in range(bits):
        pos = rng.randrange(len(out))
        out[pos] ^= 1 << rng.randrange(8)
    return bytes(out)


def _rewrite(model: bytes, change: Callable[[Any], None]) -> bytes:
    m = tfl.ModelT.InitFromObj(tfl.Model.GetRootAs(model, 0))
    change(m.subgraphs[0])
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def inflate(model: bytes, rows: int) -> bytes:
    """Rewrite the first 2-D intermediate tensor to ``rows`` rows (a flatbuffer, still valid)."""

    def change(graph: Any) -> None:
        ends = {*graph.inputs, *graph.outputs}
        for i, t in enumerate(graph.tensors):
            if i not in ends and t.shapeSignature is not None and len(t.shape) == 2:
                t.shape = [rows, int(t.shape[1])]
                return
        raise AssertionError("no 2-D intermediate tensor to inflate")

    return _rewrite(model, change)


Edit = Callable[[Path], None]


def _model_edit(change: Callable[[bytes], bytes], synced: bool) -> Edit:
    def edit(bundle: Path) -> None:
        model = bundle / MODEL_FILE
        model.write_bytes(change(model.read_bytes()))
        if synced:
            sync(bundle)

    return edit


def _swap_model(other: Path) -> Edit:
    def edit(bundle: Path) -> None:
        shutil.copyfile(other / MODEL_FILE, bundle / MODEL_FILE)
        sync(bundle)

    return edit


def _manifest_edit(change: Callable[[dict[str, Any]], None]) -> Edit:
    def edit(bundle: Path) -> None:
        data = _manifest(bundle)
        change(data)
        _write_manifest(bundle, data)

    return edit


def _raw_manifest(content: bytes) -> Edit:
    def edit(bundle: Path) -> None:
        (bundle / MANIFEST_FILE).write_bytes(content)

    return edit


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = data
        for p in parents:
            node = node[p]
        node[leaf] = value

    return change


def _flipped(i: int) -> Callable[[Sources], Edit]:
    """``1 + i`` bits flipped with seed ``1000 + i``; the manifest left as it was."""

    def change(model: bytes) -> bytes:
        return flip(model, random.Random(1000 + i), 1 + i)

    return lambda _sources: _model_edit(change, False)


def _six_features(data: dict[str, Any]) -> None:
    data["input"]["shape"] = [6]
    data["input"]["feature_names"] = [*data["input"]["feature_names"], "extra"]
    data["input"]["units"] = [*data["input"]["units"], ""]


MUST_REFUSE: dict[str, tuple[Callable[[Sources], Edit], tuple[str, ...]]] = {
    # truncated, the manifest as the trainer wrote it: the size check catches them
    "truncated-header": (lambda s: _model_edit(lambda b: b[:8], False), SIZE),
    "truncated-10pct": (lambda s: _model_edit(lambda b: b[: len(b) // 10], False), SIZE),
    "truncated-90pct": (lambda s: _model_edit(lambda b: b[: len(b) * 9 // 10], False), SIZE),
    "truncated-last-byte": (lambda s: _model_edit(lambda b: b[:-1], False), SIZE),
    # truncated, the manifest agreeing with the damaged file: LiteRT has to refuse them
    "truncated-synced-empty": (lambda s: _model_edit(lambda b: b"", True), LITERT),
    "truncated-synced-header": (lambda s: _model_edit(lambda b: b[:8], True), LITERT),
    "truncated-synced-25pct": (lambda s: _model_edit(lambda b: b[: len(b) // 4], True), LITERT),
    "truncated-synced-50pct": (lambda s: _model_edit(lambda b: b[: len(b) // 2], True), LITERT),
    "truncated-synced-75pct": (lambda s: _model_edit(lambda b: b[: len(b) * 3 // 4], True), LITERT),
    "truncated-synced-last-byte": (lambda s: _model_edit(lambda b: b[:-1], True), LITERT),
    # seeded bit flips, the manifest unchanged: the sha256 check catches them
    **{f"flipped-{i}": (_flipped(i), SHA) for i in range(4)},
    # valid models, but not the one the manifest describes
    "other-task": (lambda s: _swap_model(s.other_task), OUTPUT),
    "other-input-shape": (lambda s: _swap_model(s.other_shape), INPUT),
    "other-quantization": (lambda s: _swap_model(s.other_quantization), INPUT),
    # manifests that lie
    "manifest-sha256-lies": (lambda s: _manifest_edit(_set("file.sha256", "0" * 64)), SHA),
    "manifest-size-lies": (lambda s: _manifest_edit(_set("file.size_bytes", 1)), SIZE),
    "manifest-output-shape-lies": (
        lambda s: _manifest_edit(_set("tensors.output.shape", [-1, 4])),
        OUTPUT,
    ),
    "manifest-input-spec-lies": (lambda s: _manifest_edit(_six_features), INPUT),
    "manifest-nested-100k": (lambda s: _raw_manifest(b"[" * 100_000), MANIFEST),
    "manifest-not-utf8": (lambda s: _raw_manifest(b"\xff\xfe{}"), MANIFEST),
    # a flatbuffer that asks LiteRT for ~10 GB (refused under the agent's address-space limit)
    "memory-bomb-10gb": (lambda s: _model_edit(lambda b: inflate(b, 2**29), True), LITERT),
    # valid flatbuffers LiteRT's Python side trips over (untyped errors, see test_litert_scan)
    "tensor-name-not-utf8": (lambda s: _model_edit(rename_input, True), UNTYPED),
    "weights-without-data": (lambda s: _model_edit(drop_weights, True), UNTYPED),
    # not TFLite at all
    "not-tflite-random": (
        lambda s: _model_edit(lambda b: random.Random(7).randbytes(len(b)), True),
        ("TFL3",),
    ),
}


def must_refuse(sources: Sources, root: Path) -> list[Candidate]:
    out = []
    for name, (make, why) in MUST_REFUSE.items():
        bundle = _derive(sources.good, root, name)
        make(sources)(bundle)
        out.append(Candidate(name, bundle, why))
    return out


def synced_flips(sources: Sources, root: Path, count: int, seed: int) -> list[Candidate]:
    """``count`` seeded flips (1 to 16 bits) with the manifest synced to each damaged file."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        bits = rng.choice((1, 1, 2, 4, 16))
        bundle = _derive(sources.good, root, f"flipped-synced-{i}")
        model = bundle / MODEL_FILE
        model.write_bytes(flip(model.read_bytes(), rng, bits))
        sync(bundle)
        out.append(Candidate(bundle.name, bundle, ()))
    return out


def memory_bomb(sources: Sources, root: Path, rows: int) -> Candidate:
    """The good model with one activation inflated to ``rows`` rows; its manifest agrees."""
    bundle = _derive(sources.good, root, f"memory-bomb-{rows}")
    _model_edit(lambda b: inflate(b, rows), True)(bundle)
    return Candidate(bundle.name, bundle, ())


def rename_input(model: bytes, name: bytes = b"\xff\xfe-not-utf8") -> bytes:
    """The input tensor's name made invalid UTF-8 (LiteRT's Python wrapper decodes names)."""

    def change(graph: Any) -> None:
        graph.tensors[graph.inputs[0]].name = name

    return _rewrite(model, change)


def drop_weights(model: bytes) -> bytes:
    """Point the first constant tensor at the empty buffer 0: it loads, then cannot run."""

    def change(graph: Any) -> None:
        ends = {*graph.inputs, *graph.outputs}
        for i, t in enumerate(graph.tensors):
            if i not in ends and t.buffer > 0 and t.shapeSignature is None:
                t.buffer = 0
                return
        raise AssertionError("no constant tensor to empty")

    return _rewrite(model, change)

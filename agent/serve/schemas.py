"""Request and response models (docs/architecture.md, HTTP): the single source of ``/openapi.json``.

``docgen.py`` turns them into ``agent/serve/openapi.json`` at build time; the running agent never
imports this module (nor pydantic): requests are parsed by ``inputs.py`` and responses built by
hand. Tests check that the answers match these models and that the shipped file is fresh.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeAliasType

from agent.labels.requests import MAX_BATCH, MAX_ID

NumberArray = TypeAliasType("NumberArray", "list[float] | list[NumberArray]")


class ErrorResponse(BaseModel):
    detail: str = Field(description="What was expected and what was received.")
    field: str | None = Field(
        default=None, description="Where the problem is, e.g. 'instances[2][4]' or 'body'."
    )


class ModelRef(BaseModel):
    version: str
    sha256: str
    quantization: str


class HealthResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["ok"] = "ok"
    ready: bool = Field(description="A model is loaded and predictions can be served.")
    model_loaded: bool
    model: ModelRef | None
    uptime_s: float


class InputSchema(BaseModel):
    shape: list[int] = Field(description="One sample's shape, without the batch dimension.")
    feature_names: list[str] = Field(description="Names of the last axis, in order.")
    units: list[str]
    window: int | None = Field(description="Rows per window for windowed models, else null.")
    dtype: str


class OutputSchema(BaseModel):
    labels: list[str] = Field(description="Class labels (classify).")
    names: list[str] = Field(description="Output value names (regress, forecast, anomaly).")
    threshold: float | None = Field(description="Anomaly score threshold (anomaly).")


class RuntimeInfo(BaseModel):
    name: str = Field(description="The LiteRT interpreter package serving the model.")
    version: str


class InfoResponse(BaseModel):
    name: str
    version: str
    task: Literal["classify", "regress", "forecast", "anomaly"]
    family: str
    input: InputSchema
    output: OutputSchema
    quantization: str
    sha256: str
    size_bytes: int
    metrics: dict[str, Any] = Field(description="Training metrics recorded at export.")
    created: str
    runtime: RuntimeInfo
    slot: str | None


_FORBID = ConfigDict(extra="forbid")


class FeaturesRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"features": [21.3, 45.0, 1013.2]}]}
    )

    features: NumberArray = Field(description="One sample, nested as the model's input shape.")


class InstancesRequest(BaseModel):
    model_config = _FORBID

    instances: list[NumberArray] = Field(
        min_length=1, description="A batch: a non-empty list of samples."
    )


class ReadingsRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"readings": {"temp_c": 21.3, "humidity_pct": 45.0}}]},
    )

    readings: dict[str, float] = Field(
        description="Named values: exactly the model's feature_names (single-row models only)."
    )


# Exactly one of the three keys (each variant forbids the others).
PredictRequest = FeaturesRequest | InstancesRequest | ReadingsRequest


class ClassifyResult(BaseModel):
    label: str
    scores: dict[str, float]


class ValuesResult(BaseModel):
    values: dict[str, float] = Field(description="One value per output name.")


class AnomalyResult(BaseModel):
    score: float
    threshold: float | None
    anomaly: bool | None = Field(description="score > threshold; null without a threshold.")


Result = ClassifyResult | ValuesResult | AnomalyResult


class Timing(BaseModel):
    preprocess_ms: float
    inference_ms: float


class PredictResponse(BaseModel):
    result: Result | list[Result] = Field(
        description="One result for features/readings; a list for instances."
    )
    model_version: str
    timing: Timing
    prediction_id: str | None = Field(
        default=None,
        description="The id to label this prediction with (POST /api/labels); features, "
        "readings and GET /api/predict/latest.",
    )
    prediction_ids: list[str] | None = Field(
        default=None, description="One id per instance, in order (instances)."
    )


# -- labels ---------------------------------------------------------------------------------

Label = str | float | dict[str, float]
LABEL = (
    "A class of the serving model (classify), a number (a one-output regress or forecast "
    "model) or an object with a number per output name, within the outputs' range."
)


class PredictionLabel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"prediction_id": "3f9a01c2-1b", "label": "occupied"}]},
    )

    prediction_id: str = Field(
        min_length=1, max_length=MAX_ID, description="An id from POST /api/predict."
    )
    label: Label = Field(description=LABEL)


class ReadingLabel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"timestamp": 1717430400.5, "label": "occupied"}]},
    )

    timestamp: float = Field(
        ge=0,
        description="Unix seconds: labels the newest stored reading at most "
        "[labels] match_tolerance_s before it, and the predictions computed from it.",
    )
    label: Label = Field(description=LABEL)


class LabelBatch(BaseModel):
    model_config = _FORBID

    labels: list[PredictionLabel | ReadingLabel] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"Several labels, stored all together or none (at most {MAX_BATCH}, and at "
        "most [labels] max_per_minute).",
    )


# Exactly one of the three forms.
LabelRequest = PredictionLabel | ReadingLabel | LabelBatch


class Labelled(BaseModel):
    prediction_ids: list[str] = Field(description="The logged predictions that got the label.")
    sample_ts: float | None = Field(
        description="The stored reading that got it (its time), or null: none (a prediction "
        "on a request body)."
    )


class LabelsResponse(BaseModel):
    accepted: int = Field(description="How many labels were stored.")
    results: list[Labelled] = Field(description="Per label, in the order sent.")

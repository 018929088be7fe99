"""Labels on the device and live metrics per model version (docs/architecture.md, HTTP).

    labels = LabelService(settings, store, model=current_manifest, on_event=event)
    app = create_app(..., labels=labels)      # predictions are logged; POST /api/labels
    labels.start()
    reporter.subscribe(settings.mqtt_topic, labels.on_mqtt)   # optional MQTT label topic
    HealthParts(models=labels.live_models(manifest))
    labels.close()                            # writes the pending predictions

settings.py   the [labels] table
log.py        PredictionLog: every served prediction, bounded, written by a background thread
logdb.py      its SQLite schema and queries
requests.py   label bodies to checked labels, LabelError naming the field
bucket.py     the token bucket that rate-limits labels
service.py    LabelService: checks, stores on the log and the reading, MQTT intake
live.py       LiveModel per version from the log's aggregates; PSI
"""

from __future__ import annotations

from agent.labels.log import PredictionLog
from agent.labels.requests import LabelError
from agent.labels.service import Labelled, LabelService, open_log
from agent.labels.settings import LabelSettings

__all__ = ["LabelError", "LabelService", "LabelSettings", "Labelled", "PredictionLog", "open_log"]

"""Model delivery, the coordinator's side (docs/architecture.md, Model delivery).

- settings.py  ``[delivery]``: where the artifact server listens, its TLS, the model signer
- catalog.py   the rounds' bundles under ``runs/`` as signed :class:`Artifact` s
- server.py    ``GET /models/{version}/{name}`` over HTTP, HTTPS or mutual TLS
- publisher.py each device's desired model, retained on MQTT
- errors.py    ``DeliveryError`` and its kinds
"""

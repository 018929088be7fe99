"""Remote configuration, the coordinator's side (docs/remote-config.md, On the coordinator).

- patch.py   ``KEY=VALUE`` arguments as a patch, refused before sending when wrong
- sender.py  one signed command per device: build, sign, store, publish retained
- store.py   ``config.sqlite``: every command issued, its ``seq`` only growing per device
- mqtt.py    the CLI's own short-lived MQTT client (``[mqtt]`` of coordinator.toml)
- view.py    commands joined with the acks the ingest stores in the registry: show, history
- cli.py     ``orchard-coordinator config set | show | history``
- errors.py  ``RemoteError`` and its kinds

The message itself (``Command``, ``signed_bytes``, ``FORBIDDEN``) is the agent's contract,
agent/remote/command.py; the answers are ``agent.health.schema.Ack`` on ``<base>/ack``.
"""

"""Model rollout (docs/rollout.md): each device's desired model, canaries, automatic rollback.

    policy.py      pure: a canary group against its control group -> wait, promote, rollback
    store.py       SQLite: desired state per device, rollouts, operator requests
    controller.py  RolloutController: start, deliver, tick, resume, after_run, status
    view.py        what status, the CLI and GET /api/models show, from store + registry
    render.py      the text of ``orchard-coordinator rollout status``
    settings.py    [rollout] in coordinator.toml; --soak and --canary parsing
    ports.py       ArtifactSource and Publisher: what the coordinator hands the controller
    errors.py      RolloutError, RolloutRefused, NoPreviousModel

The CLI is ``coordinator/rollout_cli.py`` (it reads coordinator.toml, whose loader imports
``settings.py``: living here it would make an import cycle).
"""

"""A remote change that needed a restart is on trial until the agent is healthy with it.

``orchard-agent run`` calls :func:`begin` before it loads the config: it counts this start in
``pending.json``, and once the change has used its ``trial_starts`` (it crashed or stalled each
time: a port in use, a driver that cannot start) it puts the last good overlay back, so this
start already runs the last good config. The running agent then decides with :func:`healthz`
(:class:`agent.remote.service.RemoteConfig`): healthy within ``healthy_within_s`` keeps the
change, else the last good overlay comes back and the agent restarts. Either way the ack
(``applied`` or ``rolled_back``) is sent once the MQTT link is up.
"""

from __future__ import annotations

import json
import logging
import tomllib
from dataclasses import replace
from pathlib import Path

from agent.remote.state import RemoteFiles

logger = logging.getLogger(__name__)

DEFAULT_STATE_DIR = "/var/lib/orchard"  # agent.config's; read here without validating the file


class Trial:
    """This start of a change on trial; :meth:`failed` records why the start failed."""

    def __init__(self, files: RemoteFiles) -> None:
        self.files = files

    def failed(self, error: str) -> None:
        try:
            pending = self.files.read_pending()
            if pending is not None and pending.outcome is None:
                self.files.write_pending(replace(pending, last_error=error[:500]))
        except OSError as exc:
            logger.warning("cannot record why the start failed: %s", exc)


def begin(config_path: Path) -> Trial | None:
    """Count this start against a change on trial, or roll the change back when it has used
    its starts. Never raises: the agent must start whatever the remote files hold."""
    try:
        data = tomllib.loads(Path(config_path).read_text(encoding="utf-8"))
        state_dir = data.get("state_dir", DEFAULT_STATE_DIR)
        if not isinstance(state_dir, str) or not state_dir:
            return None
        files = RemoteFiles(Path(state_dir))
        pending = files.read_pending()
        if pending is None or pending.outcome is not None:
            return None
        if pending.starts >= pending.trial_starts:
            files.restore_last_good()
            why = pending.last_error or "it did not become healthy"
            reason = f"not healthy in {pending.starts} start(s): {why}"
            files.write_pending(replace(pending, outcome="rolled_back", reason=reason))
            logger.warning("remote config %d rolled back to the last good: %s", pending.seq, why)
            return None
        files.write_pending(replace(pending, starts=pending.starts + 1))
        logger.info(
            "remote config %d on trial: start %d of %d",
            pending.seq,
            pending.starts + 1,
            pending.trial_starts,
        )
        return Trial(files)
    except (OSError, ValueError) as exc:  # unreadable files: start as configured
        logger.warning("remote config trial not checked: %s", exc)
        return None


def healthz(
    url: str, *, token: str | None, model_expected: bool, timeout: float = 2.0
) -> str | None:
    """``None`` when ``GET {url}/healthz`` answers 200 (and ``ready`` when a model is
    installed), else why not."""
    # urllib here, not at import: this module runs before the agent serves (every start), and
    # on a board each import before serving is downtime of a restart.
    import urllib.error
    import urllib.request

    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the agent's own port
    request = urllib.request.Request(f"{url}/healthz")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with direct.open(request, timeout=timeout) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return f"GET /healthz answered {exc.code}"
    except (OSError, ValueError) as exc:
        return f"GET /healthz failed: {exc}"
    if model_expected and not (isinstance(body, dict) and body.get("ready") is True):
        return "GET /healthz: not ready (the installed model does not serve)"
    return None

"""Remote operations: signed commands from the coordinator (configuration patches).

    command.py   the retained command message (the contract, pure stdlib)
    auth.py      is it the fleet's? the signature against [models] trust_ca
    patch.py     the patch as the next config, checked by check-config's validator
    live.py      which keys the running agent takes, and taking them
    state.py     <state_dir>/remote/: overlay, last-good, last seq, the change on trial
    trial.py     a change that needed a restart: counted at start, judged healthy or rolled back
    service.py   RemoteConfig: takes commands from MQTT and answers with an Ack

The overlay file itself is agent/overlay.py (agent.config applies it). See
docs/remote-config.md, On the board.
"""

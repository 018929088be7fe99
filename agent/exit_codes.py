"""Exit codes of ``orchard-agent`` (the unit's ``RestartPreventExitStatus=`` uses them).

| code | meaning                                      | systemd restarts? |
|------|----------------------------------------------|-------------------|
| 0    | clean stop (SIGTERM/SIGINT)                  | no                |
| 1    | runtime failure (store, HTTP bind, crash)    | yes               |
| 2    | command-line usage error (argparse)          | no                |
| 65   | bad input data (``EX_DATAERR``, import-csv)  | no                |
| 75   | restart for a remote config change, or back  | yes (on-failure)  |
|      | to the last good one (``EX_TEMPFAIL``)       |                   |
| 78   | configuration error (``EX_CONFIG``)          | no: fix the file  |
"""

from __future__ import annotations

OK = 0
RUNTIME_FAILURE = 1
USAGE = 2
DATA_ERROR = 65
RESTART = 75
CONFIG_ERROR = 78

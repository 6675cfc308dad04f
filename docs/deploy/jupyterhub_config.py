"""JupyterHub for a class on one machine, as `make hub` starts it (docs/deploy.md, docs/teaching.md).

`make hub` runs `jupyterhub -f docs/deploy/jupyterhub_config.py` from the project's folder with the state in
.state/hub/; what it sets is in `explorer.serve.hub.configure`, overridden by the environment variables HUB_IP,
HUB_PORT, HUB_API_PORT, HUB_PROXY_API_PORT, HUB_MEM_LIMIT, HUB_IDLE_TIMEOUT, HUB_THREADS (torch threads per
kernel, 1) and HUB_USERS_FILE. Settings of your own go below the call, e.g. `c.Spawner.mem_limit = "3G"`.
"""

import os
import sys
from pathlib import Path

from explorer.serve.hub import configure

ROOT = Path(__file__).resolve().parents[2]
c = get_config()  # type: ignore[name-defined]  # noqa: F821  (JupyterHub defines it for its config files)
configure(c, root=ROOT, state=Path(os.environ.get("HUB_STATE", ROOT / ".state" / "hub")), venv=Path(sys.prefix))

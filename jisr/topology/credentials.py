"""The topology's lasting secrets: made once per run folder, kept in its data directory, mode 0600.

The topology runs with `JISR_ENVIRONMENT=production`, as compose does, so the settings
refuse the development defaults (shared/settings.py) and it needs real secrets. The admin's
password and the pseudonym secret must outlive a restart on the same folder: the database
keeps the admin's password hash, and pseudonyms already handed to partners derive from the
secret. The other credentials (Orthanc's, TURN's) are made anew for each run.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

FILE = "secrets.json"
LASTING = ("JISR_ADMIN_PASSWORD", "JISR_PSEUDONYM_SECRET")


def write_private(path: Path, text: str) -> None:
    """Write `text` readable by this user alone (mode 0600), from the first byte on."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def lasting(folder: Path) -> dict[str, str]:
    """The `LASTING` settings kept in `folder/secrets.json`, made (and written) when missing."""
    path = folder / FILE
    try:
        kept = json.loads(path.read_text())
    except FileNotFoundError:
        kept = {}
    if not isinstance(kept, dict):
        raise ValueError(f"{path} is not a JSON object of settings")
    made = {name: secrets.token_urlsafe(24) for name in LASTING if not kept.get(name)}
    if made:
        kept = {**kept, **made}
        write_private(path, json.dumps(kept, indent=2) + "\n")
    else:
        path.chmod(0o600)
    return {name: str(kept[name]) for name in LASTING}

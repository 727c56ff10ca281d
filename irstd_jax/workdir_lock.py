"""One writer per workdir: a lock that a second training run on the same workdir meets.

`hold(workdir)` takes an exclusive `fcntl.flock` on `WORKDIR/lock` for the duration of a
`with` block and writes who holds it (pid, host, start time, command) into the file. The
kernel releases a flock when its process ends, however it ends, so a lock file left by a
dead process is stale by construction and the next run simply takes it. A second run
while the first is alive gets `WorkdirInUse`, whose message names the holder, before it
has read or written anything else in the workdir. Multi-host jobs take one lock per job:
only process 0 calls `hold` (main.py). flock works on local file systems; on NFS it
depends on the server.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys

LOCK_NAME = "lock"


class WorkdirInUse(RuntimeError):
  """Another live process holds the workdir's lock; str: one line naming it."""


def _holder_text(path: str) -> str:
  try:
    with open(path) as f:
      holder = json.load(f)
    return (
      f"pid {holder['pid']} on {holder['host']} since {holder['started']} ({holder['command']})"
    )
  except (OSError, ValueError, KeyError, TypeError):
    return "another process (its lock file names no holder)"


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[str]:
  """Holds WORKDIR/lock for the block (the workdir is created if needed); yields its path.

  Raises WorkdirInUse when a live process holds it. A workdir this call created and that
  holds nothing but the lock at the end (the run stopped before writing anything) is
  removed again, so a refused run leaves nothing behind.
  """
  created = not os.path.isdir(workdir)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_NAME)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise WorkdirInUse(
        f"{workdir} is in use by {_holder_text(path)}: one training run per workdir; "
        f"wait for it to end, stop it, or pass another --workdir"
      ) from None
    holder = {
      "pid": os.getpid(),
      "host": socket.gethostname(),
      "started": datetime.datetime.now().isoformat(timespec="seconds"),
      "command": " ".join(sys.argv)[:300],
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    yield path
  finally:
    if created and os.listdir(workdir) == [LOCK_NAME]:
      os.unlink(path)  # still held: nobody can take the lock of a file being removed
      os.rmdir(workdir)
    os.close(fd)  # releases the flock

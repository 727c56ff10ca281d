"""What a write the file system refused says, in one line: the OS error and the free space.

A leaf module (standard library only), shared by the checkpoint saves (checkpointing.py),
the TFDS preparation (datasets.prepare) and `python -m irstd_jax.prepare_data`. The error behind a
refused write reaches them in three shapes: an OSError (Python's own writes), a ValueError
from tensorstore (orbax's array writer) with `[os_error_code='28']` in its text, and a
RuntimeError from ArrayRecord (TFDS's writer) with only the C library's text
('write() failed: No space left on device'). `os_error_number` reads all three.
"""

from __future__ import annotations

import errno
import os
import re
import shutil

# A full file system: the message says to make room.
STORAGE_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# Errors recognised by their text alone (ArrayRecord's messages carry no number).
_BY_TEXT = STORAGE_FULL + (errno.EROFS, errno.EACCES, errno.EIO)
_TENSORSTORE_ERRNO = re.compile(r"os_error_code='?(\d+)")


def os_error_number(error: BaseException | None) -> int | None:
  """The OS error number behind `error` (an OSError's errno, the code tensorstore puts in
  its message, or a refused write's strerror text), following the exception chain; None
  when there is none."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno:
      return error.errno
    text = str(error)
    found = _TENSORSTORE_ERRNO.search(text)
    if found:
      return int(found.group(1))
    for number in _BY_TEXT:
      if os.strerror(number) in text:
        return number
    error = error.__cause__ or error.__context__
  return None


def os_error_text(error: BaseException) -> str:
  """'[Errno 28] No space left on device (ENOSPC)' (EFBIG: with the file-size limit named);
  `Type: message` when `error` carries no OS error."""
  number = os_error_number(error)
  if number is None:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
  text = f"[Errno {number}] {os.strerror(number)} ({errno.errorcode.get(number, '?')})"
  if number == errno.EFBIG:
    text += ": a file would exceed this process's file-size limit (ulimit -f)"
  return text


def _size_text(num_bytes: float) -> str:
  for unit in ("B", "KiB", "MiB", "GiB"):
    if num_bytes < 1024:
      return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
    num_bytes /= 1024
  return f"{num_bytes:.1f} TiB"


def _existing_folder(path: str) -> str:
  """`path` or its nearest existing ancestor folder."""
  directory = os.path.abspath(os.path.expanduser(path))
  while not os.path.isdir(directory) and os.path.dirname(directory) != directory:
    directory = os.path.dirname(directory)
  return directory


def free_space_text(path: str) -> str:
  """'<free> free of <total> on the file system of <dir>', <dir> the nearest existing
  folder at or above `path` (or why the free space is unknown)."""
  directory = _existing_folder(path)
  try:
    usage = shutil.disk_usage(directory)
  except OSError as e:
    return f"free space on the file system of {directory} unknown ({e.strerror})"
  return (
    f"{_size_text(usage.free)} free of {_size_text(usage.total)} on the file system of {directory}"
  )


def directory_problem(path: str) -> str | None:
  """Why `path` cannot be a folder to write into ('<path> is an existing file, not a
  directory', '... is not writable', '... cannot be created: ...'); None when it can.

  Writes nothing. os.access asks the kernel, so a read-only mount is refused for root too
  (plain permission bits are not: root writes through them).
  """
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.exists(path):
    if not os.path.isdir(path):
      return f"{path} is an existing file, not a directory"
    if not os.access(path, os.W_OK | os.X_OK):
      return f"{path} is not writable"
    return None
  parent = os.path.dirname(path)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    return f"{path} cannot be created: {parent} is a file"
  if not os.access(parent, os.W_OK | os.X_OK):
    return f"{path} cannot be created: {parent} is not writable"
  return None

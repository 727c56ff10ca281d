"""Reading and validating a manually downloaded IRST data set (numpy + PIL only, no TF).

A manual directory is recognised in one of the layouts its data set's spec lists
(`specs.DatasetSpec.layouts`): the uniform one this project stages data in (images/,
masks/, splits/{train,test}.txt) and each set's original published layout. This module
knows no data set by name: callers pass the spec. `scan` resolves the split files, finds
every image and mask, decodes every file and checks it, and either returns a `Plan` (what
to write) or raises `errors.BadInputError` listing every problem found, before anything
is written.

Bad-input policy (see docs/data.md):
- refused: manual_dir missing or empty; no recognised layout; split file missing, empty or
  not UTF-8 text (a UTF-8 byte-order mark is fine; UTF-16 is not); an id listed twice in a
  split; an id with no image; an image with no mask; a file that
  does not decode (corrupt or truncated); 16-bit / float images; a mask whose size differs
  from its image's (unless `fix_mask_size` and the aspect ratios agree: nearest-neighbour
  resize, with a warning); a lossless (PNG/BMP) mask with values other than {0, 255} or
  {0, 1} (unless `binarize_masks`: threshold at 128, with a warning).
- converted with a warning: RGB / RGBA / LA / palette images -> PIL convert("L") (the
  originals of NUAA-SIRST mix grayscale and RGB; the staged copies were made the same way);
  RGB masks -> convert("L") then the value check above.
- always thresholded at 128 (with one warning per split): JPEG masks (SIRST-UAVB ships its
  masks as JPEG, which is lossy, so they are never exactly binary).
- warned: an id in both the train and the test split (leakage).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
import concurrent.futures
import dataclasses
import io
import os
import sys

import numpy as np
from PIL import Image

from irstd_jax.datasets import errors
from irstd_jax.datasets import specs

IMAGE_EXTS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
LOSSY_EXTS = (".jpg", ".jpeg")
MASK_THRESHOLD = 128
ASPECT_TOLERANCE = 0.02  # fix_mask_size: relative aspect-ratio difference allowed
MAX_LISTED_PROBLEMS = 50


@dataclasses.dataclass(frozen=True)
class Policy:
  binarize_masks: bool = False  # threshold non-binary lossless masks at 128 instead of refusing
  fix_mask_size: bool = False  # nearest-resize masks whose size differs (same aspect ratio)


@dataclasses.dataclass(frozen=True)
class Entry:
  id: str
  image_path: str
  mask_path: str


@dataclasses.dataclass
class Plan:
  root: str
  layout: specs.Layout
  splits: dict[str, list[Entry]]  # "train", "test" (those scanned)
  split_files: dict[str, str]
  warnings: list[str]


class _Problems:
  """Collects problems; raise_if_any() turns them into one BadInputError (first line first)."""

  def __init__(self):
    self.items: list[str] = []

  def add(self, message: str):
    self.items.append(message)

  def raise_if_any(self, root: str):
    if not self.items:
      return
    raise errors.BadInputError(self.items[0], problems=self.items, root=root)


# ------------------------------------------------------------------------------ layout


def check_manual_dir(root: str, dataset: str) -> str:
  """The absolute manual dir, or BadInputError when it is missing or empty."""
  root = os.path.abspath(os.path.expanduser(root))
  if not os.path.isdir(root):
    raise errors.BadInputError(
      f"{root}: manual_dir for {dataset!r} does not exist (or is not a directory)", root=root
    )
  if not os.listdir(root):
    raise errors.BadInputError(f"{root}: manual_dir for {dataset!r} is empty", root=root)
  return root


def detect_layout(
  root: str,
  spec: specs.DatasetSpec,
  custom_splits: bool = False,
  splits: Sequence[str] = specs.SPLITS,
) -> specs.Layout:
  """The first of `spec.layouts` found in root: its folders and the default files of
  `splits` exist (custom_splits: only its folders need to)."""
  for layout in spec.layouts:
    if custom_splits:
      if (
        any(os.path.isdir(os.path.join(root, d)) for d in layout.image_dirs)
        and os.path.isdir(os.path.join(root, layout.mask_dir))
        and (not layout.split_dir or os.path.isdir(os.path.join(root, layout.split_dir)))
      ):
        return layout
    elif layout.matches(root, splits):
      return layout
  expected = "; ".join(layout.description for layout in spec.layouts)
  raise errors.BadInputError(
    f"{root}: no recognised {spec.name} layout (expected one of: {expected})", root=root
  )


def _split_text(path: str, problems: _Problems) -> str | None:
  """The text of a split file: UTF-8, with or without a byte-order mark; None if not UTF-8."""
  with open(path, "rb") as f:
    data = f.read()
  try:
    return data.decode("utf-8-sig")  # a leading BOM (Windows editors) is dropped
  except UnicodeDecodeError as e:
    utf16 = data[:2] in (b"\xff\xfe", b"\xfe\xff")
    guess = ": it starts with a UTF-16 byte-order mark" if utf16 else ""
    problems.add(
      f"{path}: split file is not UTF-8 text (byte 0x{data[e.start]:02x} at "
      f"offset {e.start}{guess}); save it as UTF-8, one id per line"
    )
    return None


def read_split(path: str, problems: _Problems, also_looked_for: Sequence[str] = ()) -> list[str]:
  """Ids listed in a split file (blank lines ignored, a trailing image extension dropped).

  The file must be UTF-8 text (a byte-order mark is allowed); anything else, e.g. UTF-16
  as some Windows editors save, is a problem naming the file. A missing file is a problem
  naming it and `also_looked_for` (the other places a chosen name was looked up).
  """
  if not os.path.isfile(path):
    others = [p for p in also_looked_for if p != path]
    nor = f" (nor {' or '.join(others)})" if others else ""
    problems.add(f"{path}: split file does not exist{nor}")
    return []
  text = _split_text(path, problems)
  if text is None:
    return []
  ids, seen = [], {}
  for number, line in enumerate(io.StringIO(text, newline=None), 1):
    name = line.strip()
    if not name:
      continue
    stem, ext = os.path.splitext(name)
    if ext.lower() in IMAGE_EXTS:
      name = stem
    if name in seen:
      problems.add(f"{path}:{number}: id {name!r} is listed twice (first on line {seen[name]})")
      continue
    seen[name] = number
    ids.append(name)
  if not ids:
    problems.add(f"{path}: split file is empty (lists no ids)")
  return ids


def _find_file(directory: str, stem: str) -> str | None:
  for ext in IMAGE_EXTS:
    for candidate in (stem + ext, stem + ext.upper()):
      path = os.path.join(directory, candidate)
      if os.path.isfile(path):
        return path
  return None


# ------------------------------------------------------------------------------ decoding


def _open(path: str) -> Image.Image:
  try:
    with Image.open(path) as im:
      im.load()  # decode now: a truncated or corrupt file raises here
      return im.copy()
  except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... on bad files
    detail = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise errors.BadInputError(
      f"{path}: cannot decode ({detail}): corrupt or truncated file?", path=path
    ) from None


_HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F", "I;32")


def load_image(path: str, notes: list[str] | None = None) -> np.ndarray:
  """(H, W) uint8 grayscale; colour images converted with PIL convert("L")."""
  im = _open(path)
  if im.mode in _HIGH_DEPTH_MODES:
    raise errors.BadInputError(
      f"{path}: {im.mode} image ({'16-bit' if '16' in im.mode else 'high '}"
      f"depth); this project stores 8-bit images: convert it to 8-bit "
      f"grayscale first",
      path=path,
    )
  if im.mode != "L":
    if notes is not None:
      notes.append(f"{path}: {im.mode} image converted to grayscale with PIL convert('L')")
    im = im.convert("L")
  return np.asarray(im, dtype=np.uint8)


def load_mask(path: str, policy: Policy, notes: list[str] | None = None) -> np.ndarray:
  """(H, W) uint8 in {0, 1}, or BadInputError for values that are not a binary mask."""
  im = _open(path)
  if im.mode in _HIGH_DEPTH_MODES:
    raise errors.BadInputError(
      f"{path}: {im.mode} mask; expected an 8-bit mask with values {{0, 255}} or {{0, 1}}",
      path=path,
    )
  if im.mode == "P":
    values = np.asarray(im)  # palette indices: the usual way masks are stored as P
  else:
    if im.mode not in ("L", "1") and notes is not None:
      notes.append(f"{path}: {im.mode} mask converted to grayscale with PIL convert('L')")
    values = np.asarray(im.convert("L"), dtype=np.uint8)
  if os.path.splitext(path)[1].lower() in LOSSY_EXTS:
    return (values >= MASK_THRESHOLD).astype(np.uint8)
  present = np.unique(values)
  if set(present.tolist()) <= {0, 255} or set(present.tolist()) <= {0, 1}:
    return (values > 0).astype(np.uint8)
  if policy.binarize_masks:
    if notes is not None:
      notes.append(
        f"{path}: non-binary mask values {_describe(present)} thresholded at {MASK_THRESHOLD}"
      )
    return (values >= MASK_THRESHOLD).astype(np.uint8)
  raise errors.BadInputError(
    f"{path}: mask is not binary: values {_describe(present)}, expected "
    f"{{0, 255}} or {{0, 1}} (set config.dataset.binarize_masks=True to "
    f"threshold at {MASK_THRESHOLD})",
    path=path,
  )


def _describe(values: np.ndarray) -> str:
  shown = ", ".join(str(int(v)) for v in values[:8])
  return "{" + shown + (f", ... ({len(values)} distinct)" if len(values) > 8 else "") + "}"


def load_pair(
  entry: Entry, policy: Policy, notes: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """The checked (image (H,W) uint8, mask (H,W) uint8 {0,1}) of one entry."""
  image = load_image(entry.image_path, notes)
  mask = load_mask(entry.mask_path, policy, notes)
  if image.shape != mask.shape:
    (ih, iw), (mh, mw) = image.shape, mask.shape
    same_aspect = abs((iw / ih) / (mw / mh) - 1.0) <= ASPECT_TOLERANCE
    if policy.fix_mask_size and same_aspect:
      if notes is not None:
        notes.append(f"{entry.mask_path}: mask {mw}x{mh} resized (nearest) to its image {iw}x{ih}")
      resized = Image.fromarray(mask * 255).resize((iw, ih), Image.NEAREST)
      mask = (np.asarray(resized) > 0).astype(np.uint8)
    else:
      hint = (
        " (set config.dataset.fix_mask_size=True to resize it, nearest-neighbour)"
        if same_aspect
        else " (aspect ratios differ too: not a resized mask)"
      )
      raise errors.BadInputError(
        f"{entry.mask_path}: mask is {mw}x{mh} (WxH) but its image "
        f"{entry.image_path} is {iw}x{ih}{hint}",
        path=entry.mask_path,
      )
  return image, mask


# ------------------------------------------------------------------------------ scan


def scan(
  manual_dir: str,
  spec: specs.DatasetSpec,
  train_split: str = "",
  test_split: str = "",
  policy: Policy = Policy(),
  progress: Callable[[Iterable, int], Iterable] | None = None,
  num_threads: int = 4,
  splits: Sequence[str] = specs.SPLITS,
) -> Plan:
  """Validates the manual directory of data set `spec` for `splits` (both by default; evaluation reads
  ('test',) alone, so a folder without a train split evaluates); returns what to write or
  raises BadInputError.

  Every problem is collected (not just the first), so one run lists them all; the error's
  message is the first problem on one line, `.problems` holds all of them.
  `progress(iterable, total)`, if given, wraps the per-image checks (e.g. a tqdm bar).
  """
  root = check_manual_dir(manual_dir, spec.name)
  chosen = {"train": train_split, "test": test_split}
  custom = any(chosen[split] for split in splits)
  layout = detect_layout(root, spec, custom_splits=custom, splits=splits)
  problems = _Problems()
  split_files, looked_for = {}, {}
  for split in splits:
    if chosen[split]:
      looked_for[split] = layout.split_candidates(root, chosen[split])
      split_files[split] = layout.split_path(root, chosen[split])
    else:
      split_files[split] = os.path.join(root, layout.default_split(split))
  image_dir, mask_dir = layout.image_dir(root), os.path.join(root, layout.mask_dir)
  entries_of: dict[str, list[Entry]] = {}
  for split, path in split_files.items():
    entries = []
    for name in read_split(path, problems, looked_for.get(split, ())):
      image_path = _find_file(image_dir, name)
      if image_path is None:
        problems.add(
          f"{path}: id {name!r} has no image (looked for "
          f"{os.path.join(image_dir, name)}.png and other extensions)"
        )
        continue
      mask_path = _find_file(mask_dir, name + layout.mask_suffix)
      if mask_path is None:
        problems.add(
          f"{image_path}: image has no mask (looked for "
          f"{os.path.join(mask_dir, name + layout.mask_suffix)}.png and other "
          f"extensions)"
        )
        continue
      entries.append(Entry(name, image_path, mask_path))
    entries_of[split] = entries

  warnings: list[str] = []
  overlap = sorted(
    set(e.id for e in entries_of.get("train", ())) & set(e.id for e in entries_of.get("test", ()))
  )
  if overlap:
    warnings.append(
      f"{len(overlap)} id(s) are in both the train and the test split "
      f"(e.g. {overlap[:3]}): test results would be optimistic"
    )

  def check(entry: Entry) -> tuple[list[str], str | None]:
    notes: list[str] = []
    try:
      load_pair(entry, policy, notes)
    except errors.BadInputError as e:
      return notes, str(e)
    return notes, None

  everything = [e for split in splits for e in entries_of[split]]
  with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
    results = pool.map(check, everything)
    if progress is not None:
      results = progress(results, len(everything))
    for notes, error in results:
      warnings.extend(notes)
      if error:
        problems.add(error)
  problems.raise_if_any(root)
  lossy = sum(os.path.splitext(e.mask_path)[1].lower() in LOSSY_EXTS for e in everything)
  if lossy:
    warnings.append(f"{lossy} JPEG mask(s) (lossy) thresholded at {MASK_THRESHOLD}")
  return Plan(root, layout, entries_of, split_files, warnings)


def summarize_warnings(warnings: Sequence[str], limit: int = 5) -> list[str]:
  """Warnings grouped for a log: conversions are counted, the first few shown."""
  if len(warnings) <= limit:
    return list(warnings)
  return list(warnings[:limit]) + [f"... and {len(warnings) - limit} more warnings"]


def print_warnings(name: str, warnings: Sequence[str], limit: int = 5) -> None:
  """The one place a scan's warnings reach the user (main, evaluate, prepare_data, either
  source): `warning: <name>: <text>` lines on stderr, the first `limit` of them."""
  for line in summarize_warnings(warnings, limit):
    print(f"warning: {name}: {line}", file=sys.stderr, flush=True)

"""What each real data set is: the folder layouts it is read from, where to get it.

A leaf module (no import from this package). `SPECS` is the one list of real data sets:
`dataset.name`'s choices, prepare_data's --dataset, the TFDS builders (builders.py makes
one per spec) and the layout detection (manual.py reads a spec's layouts) all derive from
it. Adding a data set is a `DatasetSpec` here, a config file and its rows in docs/data.md.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import os

SPLITS = ("train", "test")  # the splits a layout names; evaluation reads ("test",) alone


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where one layout keeps its files, relative to the manual directory."""

  name: str
  image_dirs: tuple[str, ...]  # the first that exists is used
  mask_dir: str
  train_split: str  # default split files
  test_split: str
  mask_suffix: str = ""  # appended to the id: NUAA-SIRST's "<id>_pixels0.png"
  split_dir: str = ""  # where user-chosen split file names are looked up first
  description: str = ""

  def split_candidates(self, root: str, name: str) -> list[str]:
    """Where a chosen split file name is looked for, in order: split_dir/name, root/name."""
    places = [os.path.join(root, self.split_dir, name)] if self.split_dir else []
    return places + [os.path.join(root, name)]

  def split_path(self, root: str, name: str) -> str:
    """A split file name -> path: the first of split_candidates that exists, else the
    first (split_dir/name: where the layout keeps its split files)."""
    candidates = self.split_candidates(root, name)
    return next((c for c in candidates if os.path.exists(c)), candidates[0])

  def default_split(self, split: str) -> str:
    """The layout's own split file of 'train' or 'test', relative to the manual dir."""
    return {"train": self.train_split, "test": self.test_split}[split]

  def matches(self, root: str, splits: Sequence[str] = SPLITS) -> bool:
    """Its folders and the default files of `splits` exist in root."""
    return (
      any(os.path.isdir(os.path.join(root, d)) for d in self.image_dirs)
      and os.path.isdir(os.path.join(root, self.mask_dir))
      and all(os.path.isfile(os.path.join(root, self.default_split(s))) for s in splits)
    )

  def image_dir(self, root: str) -> str:
    for d in self.image_dirs:
      if os.path.isdir(os.path.join(root, d)):
        return os.path.join(root, d)
    return os.path.join(root, self.image_dirs[0])


UNIFORM = Layout(
  "uniform",
  ("images",),
  "masks",
  "splits/train.txt",
  "splits/test.txt",
  split_dir="splits",
  description="images/<id>.png, masks/<id>.png, splits/train.txt + splits/test.txt",
)
MSHNET = Layout(
  "flat",
  ("images",),
  "masks",
  "trainval.txt",
  "test.txt",
  description="images/<id>.png, masks/<id>.png, trainval.txt + test.txt (MSHNet/BasicIRSTD)",
)
DNANET = Layout(
  "dnanet",
  ("images",),
  "masks",
  "50_50/train.txt",
  "50_50/test.txt",
  split_dir="50_50",
  description="images/<id>.png, masks/<id>.png, 50_50/train.txt + 50_50/test.txt (DNANet)",
)
SIRST_427 = Layout(
  "sirst_idx_427",
  ("images",),
  "masks",
  "idx_427/trainval.txt",
  "idx_427/test.txt",
  mask_suffix="_pixels0",
  split_dir="idx_427",
  description="images/<id>.png, masks/<id>_pixels0.png, idx_427/trainval.txt + test.txt "
  "(YimianDai/sirst)",
)
SIRST_320 = dataclasses.replace(
  SIRST_427,
  name="sirst_idx_320",
  train_split="idx_320/trainval.txt",
  test_split="idx_320/test.txt",
  split_dir="idx_320",
  description="images/<id>.png, masks/<id>_pixels0.png, idx_320/trainval.txt + test.txt",
)
ISNET = Layout(
  "isnet",
  ("IRSTD1k_Img",),
  "IRSTD1k_Label",
  "trainval.txt",
  "test.txt",
  description="IRSTD1k_Img/<id>.png, IRSTD1k_Label/<id>.png, trainval.txt + test.txt "
  "(RuiZhang97/ISNet)",
)
UAVB = Layout(
  "sirst_uavb",
  ("images/all", "images"),
  "masks",
  "train.txt",
  "val.txt",
  description="images/all/<id>.jpg (or images/<id>.jpg), masks/<id>.jpg, train.txt + "
  "val.txt (val used as the test split; JN-Yang/PConv-SDloss-Data)",
)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """One real data set: its name, how its folder may be laid out, where to get it."""

  name: str  # dataset.name, prepare_data's --dataset and the TFDS builder's name
  summary: str  # one line: what the images are
  layouts: tuple[Layout, ...]  # tried in order: the first whose folders and split files exist
  homepage: str
  citation: str
  instructions: str  # where to download it and which folder to pass as manual_dir

  @property
  def builder_class_name(self) -> str:
    """The TFDS builder's class name: 'nuaa_sirst' -> 'NuaaSirst'."""
    return "".join(part.capitalize() for part in self.name.split("_"))


SPECS: dict[str, DatasetSpec] = {
  spec.name: spec
  for spec in (
    DatasetSpec(
      "nuaa_sirst",
      "NUAA-SIRST (SIRST): 427 real images, official idx_427 split 341 / 86.",
      (UNIFORM, SIRST_427, SIRST_320, DNANET, MSHNET),
      homepage="https://github.com/YimianDai/sirst",
      citation="Dai, Wu, Zhou, Barnard. Asymmetric Contextual Modulation for Infrared Small "
      "Target Detection. WACV 2021 (arXiv 2009.14530).",
      instructions="""\
  Clone or download https://github.com/YimianDai/sirst (Dai et al., ACM, WACV 2021) and pass
  its folder as manual_dir: images/<id>.png, masks/<id>_pixels0.png, idx_427/trainval.txt
  and idx_427/test.txt (idx_320/ is used when idx_427/ is absent). Also accepted: the
  uniform layout images/<id>.png, masks/<id>.png (0/255), splits/train.txt, splits/test.txt
  (e.g. ../shared/datasets/nuaa_sirst), and DNANet's 50_50/train.txt + 50_50/test.txt
  (https://github.com/YeRen123455/Infrared-Small-Target-Detection, dataset/NUAA-SIRST).
  Note: the original Misc_111 mask is 592x400 for a 325x220 image; the build refuses it
  unless config.dataset.fix_mask_size=True (nearest-neighbour resize).
  """,
    ),
    DatasetSpec(
      "nudt_sirst",
      "NUDT-SIRST: 1327 256x256 images (synthetic backgrounds, real targets), 50/50 split.",
      (UNIFORM, MSHNET, DNANET),
      homepage="https://github.com/YeRen123455/Infrared-Small-Target-Detection",
      citation="B. Li et al. Dense Nested Attention Network for Infrared Small Target "
      "Detection. IEEE TIP 2023 (arXiv 2106.00487).",
      instructions="""\
  Get NUDT-SIRST from the DNANet authors' repository
  https://github.com/YeRen123455/Infrared-Small-Target-Detection (download link in its README;
  the split lists are in dataset/NUDT-SIRST/50_50/) and pass the NUDT-SIRST folder as
  manual_dir: images/<id>.png, masks/<id>.png and either 50_50/train.txt + 50_50/test.txt
  (DNANet) or trainval.txt + test.txt (MSHNet / BasicIRSTD). Also accepted: the uniform
  layout images/, masks/, splits/train.txt, splits/test.txt.
  """,
    ),
    DatasetSpec(
      "irstd1k",
      "IRSTD-1k: 1001 real 512x512 images, 800 / 201 split.",
      (UNIFORM, ISNET, MSHNET),
      homepage="https://github.com/RuiZhang97/ISNet",
      citation="M. Zhang et al. ISNet: Shape Matters for Infrared Small Target Detection. "
      "CVPR 2022.",
      instructions="""\
  Get IRSTD-1k from the ISNet authors' repository https://github.com/RuiZhang97/ISNet
  (download link in its README) and pass the IRSTD-1k folder as manual_dir:
  IRSTD1k_Img/<id>.png, IRSTD1k_Label/<id>.png, trainval.txt, test.txt. Also accepted:
  MSHNet's copy (images/, masks/, trainval.txt, test.txt) and the uniform layout
  images/, masks/, splits/train.txt, splits/test.txt.
  """,
    ),
    DatasetSpec(
      "sirst_uavb",
      "SIRST-UAVB: ~3000 real 640x512 images of drones and birds (PConv / SD-loss authors).",
      (UNIFORM, UAVB, MSHNET),
      homepage="https://github.com/JN-Yang/PConv-SDloss-Data",
      citation="J. Yang et al. Pinwheel-shaped Convolution and Scale-based Dynamic Loss for "
      "Infrared Small Target Detection. AAAI 2025 (arXiv 2412.16986).",
      instructions="""\
  Download SIRST-UAVB from the links in https://github.com/JN-Yang/PConv-SDloss-Data
  (Google Drive / Baidu Pan; also IEEE DataPort "SIRST-UAVB"), extract it and pass the
  SIRST-UAVB folder as manual_dir. Assumed published layout (not verified against the
  archive here): images/all/<id>.jpg (or images/<id>.jpg), masks/<id>.jpg, train.txt and
  val.txt (val is used as the test split). JPEG masks are thresholded at 128. Also accepted:
  images/, masks/, trainval.txt, test.txt and the uniform layout images/, masks/,
  splits/train.txt, splits/test.txt.
  """,
    ),
  )
}
REAL_DATASETS = tuple(SPECS)

"""tools.analysis.learning_curve: parses main.py logs (both Fa formats, resumed runs), draws a PNG."""

import json

import pytest

from tools.analysis import learning_curve

LOG = """training l1_gp_rotated on nuaa_sirst: 213 train / 214 test images, 26 steps/epoch
epoch 1/4 step 26/104 loss 0.9696 13.0 img/s ETA 45m24s
epoch 2/4 step 52/104 loss 0.9000 12.7 img/s ETA 39m22s
  test @ epoch 2: mIoU 0.1221 nIoU 0.1357 Pd 0.3878 Fa 28.06e-6
resumed from step 52 (epoch 2)
epoch 3/4 step 78/104 loss 0.8000 12.9 img/s ETA 35m54s
epoch 4/4 step 104/104 loss 0.7000 12.9 img/s ETA 0m00s
  test @ epoch 4: mIoU 0.5000 nIoU 0.4000 Pd 0.9000 Fa 12.50e-6 Fa_strict 20.00e-6
  test @ epoch 4: mIoU 0.5100 nIoU 0.4100 Pd 0.9100 Fa 11.50e-6 Fa_strict 21.00e-6
"""


def test_parse_log_reads_both_fa_formats_and_keeps_the_last_of_a_repeated_epoch():
  curve = learning_curve.parse_log(LOG)
  assert [r["epoch"] for r in curve["eval"]] == [2, 4]
  assert curve["eval"][0] == pytest.approx(
    {"epoch": 2, "miou": 0.1221, "niou": 0.1357, "pd": 0.3878, "fa": 28.06e-6}
  )
  assert curve["eval"][1]["miou"] == 0.51 and curve["eval"][1]["fa_strict"] == 21e-6
  assert [r["step"] for r in curve["loss"]] == [26, 52, 78, 104]
  assert [r["epoch"] for r in curve["loss"]] == [1.0, 2.0, 3.0, 4.0]
  assert curve["loss"][-1]["loss"] == 0.7


def test_cli_writes_png_and_json_and_refuses_a_log_without_evaluations(tmp_path, capsys):
  log = tmp_path / "run.log"
  log.write_text(LOG)
  out = tmp_path / "curve.png"
  assert (
    learning_curve.main(
      [f"--log={log}", "--label=paper", f"--output={out}", f"--json={tmp_path / 'c.json'}"]
    )
    == 0
  )
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert json.loads((tmp_path / "c.json").read_text())["paper"]["eval"][1]["miou"] == 0.51
  assert "best mIoU 0.5100 at epoch 4" in capsys.readouterr().out
  empty = tmp_path / "empty.log"
  empty.write_text("nothing here\n")
  assert learning_curve.main([f"--log={empty}", f"--output={tmp_path / 'x.png'}"]) == 2
  assert "no 'test @ epoch' lines" in capsys.readouterr().err

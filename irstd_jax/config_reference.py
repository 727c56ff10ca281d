"""The config reference, docs/config.md, generated from the schema (`default_config.FIELDS`).

  python -m irstd_jax.config_reference > docs/config.md

tests/test_config_check.py fails when the file is stale.
"""

from __future__ import annotations

from irstd_jax import config_check
from irstd_jax import default_config


def reference_markdown() -> str:
  """docs/config.md: every field of the schema (`python -m irstd_jax.config_reference`)."""
  lines = [
    "# Config reference",
    "",
    "Generated from the schema in `irstd_jax/default_config.py` by",
    "`python -m irstd_jax.config_reference > docs/config.md`; tests/test_config_check.py fails",
    "when it is stale. Override any field with `--config.<field>=<value>`. *Checked for*: the",
    "commands whose validation checks the field (train checks every field); *resume*: a",
    "change refused when resuming (`equal`: any change, `on_off`: turning it on or off).",
  ]
  section = None
  for path, field in default_config.FIELDS.items():
    head = path.split(".")[0] if "." in path else "top level"
    if head != section:
      section = head
      lines += [
        "",
        f"## {section}",
        "",
        "| field | default | allowed | checked for | resume | meaning |",
        "|---|---|---|---|---|---|",
      ]
    lines.append(
      f"| `{path}` | `{field.default!r}` | {config_check.allowed_text(field)} | "
      f"{', '.join(field.check)} | {field.state or ''} | {field.doc} |"
    )
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  print(reference_markdown(), end="")

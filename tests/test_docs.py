"""README.md and docs/**/*.md: every relative link resolves, no unfilled placeholder."""

import re

from conftest import REPO
import pytest

DOCS = [REPO / "README.md"] + sorted((REPO / "docs").rglob("*.md"))
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_PLACEHOLDER = re.compile(
  r"^\s*[A-Z][A-Z0-9]*(_[A-Z0-9]+)+\s*$|PLACEHOLDER|\bTODO\b|\bTBD\b|"
  r"\bFIXME\b|\{\{|\}\}|<placeholder>",
  re.M,
)


def github_slug(heading: str) -> str:
  """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces -> '-'."""
  text = heading.strip().lower()
  text = re.sub(r"[^\w\- ]", "", text)
  return text.replace(" ", "-")


def anchors(path) -> set[str]:
  text = path.read_text()
  text = re.sub(r"```.*?```", "", text, flags=re.S)  # headings inside code are not headings
  return {github_slug(m[1]) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def _links(path):
  text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
  text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
  return [m[1] for m in _LINK.finditer(text)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc):
  broken = []
  for target in _links(doc):
    if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
      continue
    file_part, _, anchor = target.partition("#")
    resolved = (doc.parent / file_part).resolve() if file_part else doc
    if not resolved.exists():
      broken.append(f"{target} (no file {resolved})")
    elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
      broken.append(f"{target} (no heading with anchor #{anchor})")
  assert not broken, f"{doc.relative_to(REPO)}: broken links: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_unfilled_placeholder(doc):
  text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
  found = [m[0].strip() for m in _PLACEHOLDER.finditer(text)]
  assert not found, f"{doc.relative_to(REPO)}: unfilled placeholders {found}"


def test_checker_catches_what_it_should(tmp_path):
  doc = tmp_path / "x.md"
  doc.write_text(
    "# Title here\n\n[ok](#title-here) [bad](missing.png) `[code](nope.md)`\nSOME_FILLED_SECTION\n"
  )
  assert _links(doc) == ["#title-here", "missing.png"]
  assert "title-here" in anchors(doc)
  assert _PLACEHOLDER.search(doc.read_text())
  assert (
    github_slug("Metrics (`irstd_jax.metrics`, `irstd_jax.visualize`)")
    == "metrics-irstd_jaxmetrics-irstd_jaxvisualize"
  )

"""The documentation stays short, current and linked: README.md and the pages in docs/ keep
their size limits, no issue-tracker number is left in the docs or in the code's comments and
docstrings, the node's parameter table is the one generated from its declarations, and every
relative link points to a file that exists."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 300
README_MAX_CHARS = 100
PAGE_MAX_LINES = 400
#: Folders whose Python files' comments and docstrings must hold no issue numbers.
CODE_FOLDERS = ("reloc_ros", "train", "reloc_sim", "launch", "scripts")
PARAMETERS_BEGIN = "<!-- parameters:begin -->"
PARAMETERS_END = "<!-- parameters:end -->"

#: An issue-tracker reference: "issue 12", "Issue #15", "issues 9–14", or a bare "#15". A
#: bare "#N" counts only where it does not continue a word, a path, an HTML entity or a
#: quoted string (colours such as "#333", anchors such as "page.md#12", "owner/repo#2010"),
#: and only with 1 to 4 digits that end the number (so "#123456" and "#1f2a3b" do not match).
ISSUE_NUMBER = re.compile(r"\bissues?\s*#?\s*\d+|(?<![\w/&#'\"])#\d{1,4}(?![\w-])", re.IGNORECASE)


def pages() -> list[Path]:
    """The documentation pages: docs/**/*.md outside docs/results/."""
    return sorted(p for p in (ROOT / "docs").rglob("*.md") if "results" not in p.relative_to(ROOT / "docs").parts)


def issue_numbers(text: str) -> list[str]:
    return [m.group(0) for m in ISSUE_NUMBER.finditer(text)]


# --------------------------------------------------------------------------- the pattern
@pytest.mark.parametrize("text", [
    "see issue 12 for the details",
    "Issue 15: auxiliary heads",
    "issues 9–14 were resolved",
    "ISSUES 3 and 4",
    "fixed in #15",
    "(#7)",
    "issue #12",
    "the next issue (#123)",
    "Issue12",
    "#15.",
])
def test_the_pattern_finds_issue_numbers(text):
    assert issue_numbers(text), text


@pytest.mark.parametrize("text", [
    "colour #fff and #1f2a3b and #123456",
    'color="#333"',
    "see [the section](#map-coverage) and page.md#12",
    "eProsima/Fast-DDS#2010",
    "&#8212; an HTML entity",
    "/camera/color/image_raw and ~/relocalize on /tf",
    "the issue's 64 KB budget",
    "a tissue 3 mm thick",
    "## 1. A numbered heading",
    "# 12 frames in a comment",
    "cuda:0, seq-04, frame-000046",
    "##15 (a heading marker, not a reference)",
])
def test_the_pattern_leaves_other_text_alone(text):
    assert not issue_numbers(text), text


# --------------------------------------------------------------------------- sizes
def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"
    long = [f"README.md:{i}: {len(line)} characters" for i, line in enumerate(lines, 1)
            if len(line) > README_MAX_CHARS]
    assert not long, "\n".join(long)


def test_quick_start_commands_are_in_the_readme():
    text = README.read_text(encoding="utf-8")
    assert "scripts/demo" in text and "scripts/test" in text


def test_every_page_is_at_most_400_lines():
    assert pages(), "docs/ has no pages"
    long = [f"{p.relative_to(ROOT)}: {n} lines" for p in pages()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > PAGE_MAX_LINES]
    assert not long, "\n".join(long)


# --------------------------------------------------------------------------- issue numbers
def test_no_issue_numbers_in_the_docs():
    found = []
    for path in [README] + pages():
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found += [f"{path.relative_to(ROOT)}:{i}: {hit!r}" for hit in issue_numbers(line)]
    assert not found, "\n".join(found)


def comments_and_docstrings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every comment (tokenize) and docstring (ast) of a Python file."""
    source = path.read_text(encoding="utf-8")
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out.append((tok.start[0], tok.string.lstrip("#")))  # the comment's own "#" is no reference
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                first = node.body[0].lineno
                out += [(first + k, line) for k, line in enumerate(doc.splitlines())]
    return out


def test_comments_and_docstrings_hold_no_issue_numbers():
    found = []
    for folder in CODE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, text in comments_and_docstrings(path):
                found += [f"{path.relative_to(ROOT)}:{line}: {hit!r}" for hit in issue_numbers(text)]
    assert not found, "issue numbers in code comments or docstrings (describe the feature instead):\n" + "\n".join(found)


def test_comments_and_docstrings_are_found(tmp_path):
    """The scanner sees comments, module, class and function docstrings, with their lines."""
    path = tmp_path / "m.py"
    path.write_text('"""Module: issue 1."""\n\n\nclass A:\n    """Class,\n    see #2."""\n\n'
                    '    def f(self):  # from issue 3\n        """Function: issues 4 and 5."""\n'
                    '        return "issue 6 in a string is not a docstring"\n')
    hits = [(line, hit) for line, text in comments_and_docstrings(path) for hit in issue_numbers(text)]
    assert hits == [(8, "issue 3"), (1, "issue 1"), (6, "#2"), (9, "issues 4")]


# --------------------------------------------------------------------------- the parameter table
def test_node_parameter_table_is_generated():
    from reloc_ros.ros import parameters

    text = (ROOT / "docs" / "node.md").read_text(encoding="utf-8")
    assert text.count(PARAMETERS_BEGIN) == 1 and text.count(PARAMETERS_END) == 1
    table = text.split(PARAMETERS_BEGIN)[1].split(PARAMETERS_END)[0]
    assert table.strip() == parameters.markdown_table().strip(), (
        "docs/node.md's parameter table is out of date: paste the output of\n"
        "python -c 'from reloc_ros.ros.parameters import markdown_table; print(markdown_table())'")


# --------------------------------------------------------------------------- links
#: Markdown links and images: [text](target) or ![alt](target "title").
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def relative_links(text: str) -> list[str]:
    """The relative targets of the Markdown links in ``text``, outside code blocks and spans."""
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    out = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
            continue  # a URL (https:, mailto:) or an anchor in the same page
        out.append(target)
    return out


def test_relative_links_point_to_files_that_exist():
    broken = []
    for path in [README] + sorted((ROOT / "docs").glob("*.md")):
        for target in relative_links(path.read_text(encoding="utf-8")):
            file = target.split("#")[0].split("?")[0]
            if not (path.parent / file).exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert not broken, "links to missing files:\n" + "\n".join(broken)


def test_relative_links_are_found():
    text = ("[a](docs/a.md) ![b](docs/b.png \"title\") [c](https://x.org/c) [d](#anchor) "
            "[e](e.md#part) `[f](not/a/link.md)`\n```\n[g](in/a/block.md)\n```\n")
    assert relative_links(text) == ["docs/a.md", "docs/b.png", "e.md#part"]

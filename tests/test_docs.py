"""Docs that run and print what they say: every ```python block of the READMEs and docs/*.md.

Running. A block runs in a fresh namespace unless its first line is the comment
`# continues the block above`: then it runs in the namespace of the block before it. A block and the
blocks that continue it form a chain; each chain is one test, run in a fresh Python process with a
temporary directory as its working directory, MPLBACKEND unset, JAXNET_DATA_DIR pointing at the folder
that holds the shared MNIST files (`conftest.MNIST_DIR`; a chain that calls `load_mnist` is skipped
when they are absent), and without the test run's `JAX_DISABLE_MOST_OPTIMIZATIONS` and fake devices
(conftest): the docs state what a user's default configuration prints, and XLA's optimisation level
changes the rounding of long runs (the lr-70 XOR run of docs/lr_schedule.md decays first at epoch 313
with optimisations, 251 without). Blocks fenced as ```text (output, formulas), ```bash or ```console
are not run; a fence without a language fails, so that no block is skipped silently.

Checked output: every output a doc states is compared with what the code prints.
1. Output blocks. A ```text block that follows a ```python block with nothing but blank lines between
   is that block's complete stdout. (A ```text block that is not output, such as a formula or a
   layout, follows prose.)
2. `# prints: EXPECTED` at the end of a line: EXPECTED is everything the top-level statement holding
   that line prints (a loop's lines too: end with `...` to state only the first). In a block without
   an output block, a comment on a line that calls print() must be such a claim, so that no printed
   value is stated unchecked; a description goes on the line above.
3. `# -> EXPECTED` after an expression statement (a line that is only an expression, as at a prompt):
   the repr of its value.
Matching, the same for all three: leading and trailing blank space is ignored; a run of whitespace
matches any run of whitespace, and numbers may have padding around them (numpy aligns columns);
`...` matches any text, line breaks included (doctest's ELLIPSIS; put it after a space, not right
after a number); a number written with a decimal point or an exponent matches any number within one
unit of its last written digit (pytest's NUMBER: `0.98` matches 0.9812 and 0.975, `1.2e-12` matches
1.24e-12), and an integer only itself. So the precision a doc writes is the precision it is checked to.

A chain whose stated output is known to be wrong until another change lands is listed in
KNOWN_WRONG with the reason; it is an xfail(strict=True), so the fix makes it pass and fail here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import MNIST_DIR, REPO, user_env

DOCS = [REPO / "README.md", REPO / "README.zh-CN.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
CONTINUES = "# continues the block above"
NOT_RUN = {"text", "bash", "console"}
PRINTS = re.compile(r"#\s*prints:\s?(.*)$")
ARROW = re.compile(r"#\s*->\s?(.*)$")

# (doc, a line of the chain's code) -> why its stated output is not printed yet
KNOWN_WRONG: dict[tuple[str, str], str] = {}  # (doc, a line of the block's code) -> the issue that fixes it

RUNNER = r"""
import ast, io, json, sys
blocks, out_path, doc = json.load(sys.stdin), sys.argv[1], sys.argv[2]
real_stdout, results = sys.stdout, []
namespace = {"__name__": "__main__"}
for line, code in blocks:
    print(f"--- running the block at {doc}:{line + 1}", file=sys.stderr, flush=True)
    tree = ast.parse(code, doc)
    ast.increment_lineno(tree, line)  # tracebacks and results give the doc's lines (1-based)
    block = {"line": line, "stdout": "", "statements": []}
    results.append(block)
    for node in tree.body:
        buffer = io.StringIO()
        sys.stdout = buffer
        try:
            value = None
            if isinstance(node, ast.Expr):
                value = eval(compile(ast.Expression(node.value), doc, "eval"), namespace)
            else:
                exec(compile(ast.Module([node], []), doc, "exec"), namespace)
        finally:
            sys.stdout = real_stdout
        printed = buffer.getvalue()
        real_stdout.write(printed)
        block["stdout"] += printed
        block["statements"].append({"first": node.lineno, "last": node.end_lineno, "stdout": printed,
                                    "repr": None if value is None else repr(value)[:20000]})
    with open(out_path, "w") as f:
        json.dump(results, f)
"""


@dataclass
class Block:
    lang: str
    line: int  # 0-based line of the block's first code line; its doc lines are line + 1 ...
    code: str
    output: str | None = None  # the text block right after it, if any
    output_line: int | None = None


@dataclass
class Chain:
    doc: Path
    blocks: list[Block] = field(default_factory=list)

    @property
    def id(self):
        return f"{self.doc.name}:{self.blocks[0].line}"

    def claims(self):
        """(doc line, kind, expected) of every `# prints:` and `# -> ` comment, and the lines of print
        calls that carry another comment (unchecked claims)."""
        found, unchecked = [], []
        for block in self.blocks:
            for offset, text in enumerate(block.code.splitlines()):
                doc_line = block.line + offset + 1
                code, _, comment = _split_comment(text)
                if not comment:
                    continue
                if m := PRINTS.match(comment):
                    found.append((doc_line, "prints", m.group(1)))
                elif m := ARROW.match(comment):
                    found.append((doc_line, "->", m.group(1)))
                elif "print(" in code and block.output is None:
                    unchecked.append(doc_line)
        return found, unchecked


def _split_comment(line):
    """(code, '#', comment) of a line of Python: the first # outside a string literal."""
    quote = None
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\":
                i += 1
            elif line.startswith(quote, i):
                i += len(quote) - 1
                quote = None
        elif line.startswith(('"""', "'''"), i):
            quote = line[i:i + 3]
            i += 2
        elif c in "\"'":
            quote = c
        elif c == "#":
            return line[:i], "#", line[i:]
        i += 1
    return line, "", ""


def parse(path):
    """The fenced blocks of `path`, each python block with the text block that directly follows it."""
    text = path.read_text()
    blocks, previous_end = [], None
    for m in FENCE.finditer(text):
        lang = m.group(1).strip()
        line = text.count("\n", 0, m.start(2))
        between = text[previous_end:m.start()] if previous_end is not None else None
        if lang == "text" and blocks and blocks[-1].lang == "python" and between is not None and not between.strip():
            blocks[-1].output, blocks[-1].output_line = m.group(2), line
        blocks.append(Block(lang, line, m.group(2)))
        previous_end = m.end()
    return blocks


def chains(path):
    result = []
    for block in parse(path):
        if block.lang != "python":
            continue
        if block.code.startswith(CONTINUES):
            assert result, f"{path.name}:{block.line}: '{CONTINUES}' but no block above"
            result[-1].blocks.append(block)
        else:
            result.append(Chain(path, [block]))
    return result


ALL_CHAINS = [chain for path in DOCS if path.exists() for chain in chains(path)]

# ---------------------------------------------------------------------------------------------------
# Matching stated output

TOKEN = re.compile(r"(?P<ellipsis>\.\.\.)|(?P<space>\s+)"
                   r"|(?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)|(?P<other>.)", re.S)
NUMBER = r"([-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)"
INTEGER = r"(?<![\d.])([-+]?\d+)(?![\d.]|[eE][-+]?\d)"  # an integer is matched only by an integer


def _tolerance(written):
    """One unit of the last written digit of a number with a decimal point or exponent; 0 for an integer."""
    mantissa, _, exponent = written.lower().partition("e")
    if "." not in mantissa and not exponent:
        return 0.0
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def matches(expected, got):
    """Whether `got` (printed output) matches `expected` under the rules in the module docstring."""
    pattern, numbers = [], []
    for m in TOKEN.finditer(expected.strip()):
        if m.group("ellipsis"):
            pattern.append(".*?")
        elif m.group("space"):
            pattern.append(r"\s+")
        elif m.group("number"):
            pattern.append(r"\s*" + (INTEGER if _tolerance(m.group("number")) == 0.0 else NUMBER) + r"\s*")
            numbers.append(m.group("number"))
        else:
            pattern.append(re.escape(m.group("other")))
    found = re.fullmatch("".join(pattern), got.strip(), re.S)
    if not found:
        return False
    for want, have in zip(numbers, found.groups()):
        tol = _tolerance(want)
        if (int(want) != int(have)) if tol == 0.0 else not abs(float(have) - float(want)) <= tol * (1 + 1e-9):
            return False
    return True


@pytest.mark.parametrize("expected,got,ok", [
    ("[70. 66.5 63.175 60.016247]", "[70.       66.5      63.175    60.016247]", True),
    ("[70. 70. 66.5 63.175]", "[70.       66.5      63.175    60.016247]", False),
    ("Epoch 313: learning rate decayed to 66.5 ...", "Epoch 313: learning rate decayed to 66.5\nEpoch 413: x", True),
    ("Epoch 413: learning rate decayed to 66.5 ...", "Epoch 313: learning rate decayed to 66.5\nEpoch 413: x", False),
    ("[0.98 0.99]", "[0.9805556  0.9888889 ]", True), ("0.98", "0.9812", True), ("0.98", "0.975", True),
    ("0.98", "0.9699", False), ("0.98", "0.98 extra", False),
    ("1.2e-12", "1.24e-12", True), ("1.2e-12", "1.4e-12", False), ("313", "313.0", False), ("True", "False", False),
    ("a\n  ...\n  PASSED", "a\n b\n c\n  PASSED", True), ("a ... PASSED", "a b FAILED", False),
])
def test_output_matching_rules(expected, got, ok):
    """The matcher can fail: stale outputs (the ones this project's docs had) do not match."""
    assert matches(expected, got) is ok


# ---------------------------------------------------------------------------------------------------
# The docs


def test_fences_are_found_and_labelled():
    found = {path.name: [b.lang for b in parse(path)] for path in DOCS if path.exists()}
    assert sum(langs.count("python") for langs in found.values()) >= 9  # the blocks this test must run
    unlabelled = {name: langs for name, langs in found.items()
                  if not all(lang in NOT_RUN | {"python"} for lang in langs)}
    assert not unlabelled, f"fences need a language (python runs; {sorted(NOT_RUN)} do not): {unlabelled}"


def test_every_claim_on_a_print_line_is_checked():
    unchecked = {chain.id: chain.claims()[1] for chain in ALL_CHAINS if chain.claims()[1]}
    assert not unchecked, ("a comment on a print() line must be `# prints: EXPECTED` (put a description on "
                           f"the line above): doc lines {unchecked}")


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_links_point_to_files():
    """Every relative link and image of the docs names a file that exists (relative to the doc)."""
    broken = [f"{path.relative_to(REPO)}: {target}" for path in DOCS if path.exists()
              for target in LINK.findall(path.read_text())
              if not target.startswith(("http://", "https://", "#", "mailto:"))
              and not (path.parent / target.split("#")[0]).exists()]
    assert not broken, broken


def test_the_experiment_count_is_the_main_jobs():
    from experiments import ALL

    stated = [(path.name, int(n)) for path in DOCS if path.exists()
              for n in re.findall(r"runs all (\d+)", path.read_text())]
    assert stated and all(n == len(ALL) for _, n in stated), (stated, len(ALL))


def _marks(chain):
    reasons = [reason for (doc, code), reason in KNOWN_WRONG.items()
               if doc == chain.doc.name and any(code in b.code for b in chain.blocks)]
    return [pytest.mark.xfail(strict=True, reason=r) for r in reasons]


def test_known_wrong_entries_name_one_chain():
    for doc, code in KNOWN_WRONG:
        assert sum(chain.doc.name == doc and any(code in b.code for b in chain.blocks) for chain in ALL_CHAINS) == 1, \
            (doc, code)


@pytest.mark.parametrize("chain", [pytest.param(c, id=c.id, marks=_marks(c)) for c in ALL_CHAINS])
def test_doc_blocks_run_and_print_what_they_say(chain, tmp_path):
    code = "".join(b.code for b in chain.blocks)
    if "load_mnist" in code and not any(MNIST_DIR.glob("t10k-images*")):
        pytest.skip(f"no MNIST files in {MNIST_DIR}")
    out = tmp_path / "results.json"
    run = subprocess.run([sys.executable, "-c", RUNNER, str(out), str(chain.doc)],
                         input=json.dumps([(b.line, b.code) for b in chain.blocks]), cwd=tmp_path, env=user_env(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    results = json.loads(out.read_text())
    wrong = []
    for block, result in zip(chain.blocks, results):
        if block.output is not None and not matches(block.output, result["stdout"]):
            wrong.append(f"the output block at {chain.doc.name}:{block.output_line + 1} says\n{block.output}"
                         f"but the block printed\n{result['stdout']}")
    statements = [s for result in results for s in result["statements"]]
    claims, _ = chain.claims()
    for doc_line, kind, expected in claims:
        (statement,) = [s for s in statements if s["first"] <= doc_line <= s["last"]]
        got = statement["stdout"] if kind == "prints" else statement["repr"]
        if got is None:
            wrong.append(f"{chain.doc.name}:{doc_line}: `# -> {expected}` needs an expression statement")
        elif not matches(expected, got):
            wrong.append(f"{chain.doc.name}:{doc_line} says `# {kind} {expected}` but got\n{got}")
    assert not wrong, "\n\n".join(wrong)

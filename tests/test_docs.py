"""Docs that run: every ```python block of README.md and docs/*.md runs as written.

Each file runs in one fresh Python process with a temporary directory as its working directory,
MPLBACKEND unset and JAXNET_DATA_DIR pointing at the folder that holds the shared MNIST files
(`conftest.MNIST_DIR`). Each block runs in a fresh namespace, standalone, unless its first line is
the comment `# continues the block above`: then it runs in the namespace of the block before it.
Blocks fenced as anything else (```text for output and formulas, ```bash for commands) are not run,
and a fence without a language fails the test, so that no block is skipped silently.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import MNIST_DIR, REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
CONTINUES = "# continues the block above"
NOT_RUN = {"text", "bash", "console"}

RUNNER = f"""
import json, sys
blocks = json.load(sys.stdin)
namespace = {{}}
for line, code in blocks:
    if not code.startswith({CONTINUES!r}):
        namespace = {{"__name__": "__main__"}}
    print(f"--- running the block at {{sys.argv[1]}}:{{line}}", flush=True)
    exec(compile("\\n" * line + code, sys.argv[1], "exec"), namespace)  # tracebacks give the file's lines
"""


def blocks(path):
    """(language, line of the first code line (0-based), code) of every fenced block in `path`."""
    text = path.read_text()
    return [(m.group(1).strip(), text.count("\n", 0, m.start(2)), m.group(2)) for m in FENCE.finditer(text)]


def test_fences_are_found_and_labelled():
    found = {path.name: [lang for lang, _, _ in blocks(path)] for path in DOCS}
    assert sum(langs.count("python") for langs in found.values()) >= 9  # the blocks this test must run
    unlabelled = {name: langs for name, langs in found.items()
                  if not all(lang in NOT_RUN | {"python"} for lang in langs)}
    assert not unlabelled, f"fences need a language (python runs; {sorted(NOT_RUN)} do not): {unlabelled}"


@pytest.mark.parametrize("path", [p for p in DOCS if any(lang == "python" for lang, _, _ in blocks(p))],
                         ids=lambda p: p.name)
def test_python_blocks_run(path, tmp_path):
    code = [(line, text) for lang, line, text in blocks(path) if lang == "python"]
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "JAXNET_DATA_DIR")}
    env["JAXNET_DATA_DIR"] = str(MNIST_DIR.parent)  # $JAXNET_DATA_DIR/mnist holds the shared files
    result = subprocess.run([sys.executable, "-c", RUNNER, str(path)], input=json.dumps(code), cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"

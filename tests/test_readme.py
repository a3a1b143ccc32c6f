"""The README's snippets run as written, each in a fresh interpreter; the docs' Python compiles."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(path: Path) -> list[str]:
    return FENCE.findall(path.read_text(encoding="utf-8"))


README_BLOCKS = python_blocks(ROOT / "README.md")


def test_the_readme_has_the_library_and_the_lightning_snippets():
    assert len(README_BLOCKS) >= 2
    assert any("aalr.AALR(" in block for block in README_BLOCKS)
    assert any("AALRCallback" in block for block in README_BLOCKS)
    assert any("AALRTrainerCallback" in block for block in README_BLOCKS)


@pytest.mark.parametrize("index", range(len(README_BLOCKS)))
def test_a_readme_snippet_runs(index, tmp_path):
    block = README_BLOCKS[index]
    if "lightning" in block:
        pytest.importorskip("lightning", reason="the Lightning snippet needs aalr[lightning]")
    if "transformers" in block:
        pytest.importorskip("transformers", reason="the Trainer snippet needs aalr[hf]")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, f"README snippet {index} failed:\n{block}\n{result.stderr[-3000:]}"
    if "aalr.AALR(" in block:  # the library snippet trains: its printed loss falls
        losses = [float(x) for x in re.findall(r"loss (\d+\.\d+)", result.stdout)]
        assert len(losses) >= 10 and losses[-1] < losses[0] / 2, result.stdout
        # and it shows what the README says of it: the LR doubles past its start, then decays to 0
        lrs = [float(x) for x in re.findall(r"next LR (\S+)", result.stdout)]
        assert max(lrs) >= 4 * lrs[0] and lrs[-1] == 0, result.stdout


@pytest.mark.parametrize("page", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_the_docs_python_compiles(page):
    for number, block in enumerate(python_blocks(page)):
        compile(block, f"{page.name} block {number}", "exec")


def test_the_suite_example_in_the_docs_loads(tmp_path):
    pytest.importorskip("numpy", reason="suites belong to the harness extra")
    from aalr.harness.suite import load_suite

    text = (ROOT / "docs" / "harness.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```toml\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert blocks
    for number, block in enumerate(blocks):
        path = tmp_path / f"suite{number}.toml"
        path.write_text(block)
        assert load_suite(path).runs

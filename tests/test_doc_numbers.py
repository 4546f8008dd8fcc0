"""The numbers the docs quote from experiment runs: `.ci/doc_numbers.py` compares them with the runs'
metrics.json after a full run (too long for the test suite); here, each of its claims still finds its
text in the docs, its comparison can fail, and the one run cheap enough for the suite (the optimizer race
on x^2/20 + y^2) is recomputed and compared."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import REPO

spec = importlib.util.spec_from_file_location("doc_numbers", REPO / ".ci" / "doc_numbers.py")
doc_numbers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(doc_numbers)


@pytest.mark.parametrize("claim", doc_numbers.CLAIMS, ids=lambda c: f"{c[0]}:{c[2]}")
def test_each_quoted_number_finds_its_text_once(claim):
    doc, pattern, _, _ = claim
    assert len(doc_numbers.find(doc, pattern)) == 1, f"{doc}: {pattern!r}"


@pytest.mark.parametrize("written,value,ok", [("0.977", 0.9774, True), ("0.977", 0.9781, False),
                                              ("14", 14, True), ("14", 13, False), ("0.81", 0.8, True),
                                              ("77", 77.3, False)])
def test_a_quoted_number_agrees_to_its_last_digit(written, value, ok):
    assert doc_numbers.agrees(written, value) is ok


def test_the_optimizer_race_quoted_in_the_readme_is_the_race():
    from experiments import optimizers

    (claim,) = [c for c in doc_numbers.CLAIMS if c[2] == "optimizers"]
    (found,) = doc_numbers.find(claim[0], claim[1])
    race = {name: float(np.hypot(*optimizers.path(name, lr)[-1])) for name, lr in optimizers.PATH_RATES.items()}
    got = claim[3]({"final_distance_to_minimum": race})
    assert all(doc_numbers.agrees(q, v) for q, v in zip(found.groups(), got, strict=True)), (found.group(0), got)

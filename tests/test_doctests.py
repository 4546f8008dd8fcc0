"""Every docstring example (`>>>`) in jaxnet runs as a doctest, so that none can go stale.

The examples run with the names a reader has at hand: `jax`, `jnp` (jax.numpy), `np` (numpy) and
`jaxnet` are available in every docstring besides the module's own globals (as pytest's
`doctest_namespace`). Output is compared with doctest's ELLIPSIS and NORMALIZE_WHITESPACE.
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet

NAMESPACE = {"jax": jax, "jnp": jnp, "np": np, "jaxnet": jaxnet}


def docstring_examples():
    finder = doctest.DocTestFinder()
    names = ["jaxnet"] + [m.name for m in pkgutil.walk_packages(jaxnet.__path__, "jaxnet.")]
    for name in names:
        module = importlib.import_module(name)
        yield from (test for test in finder.find(module, name, extraglobs=NAMESPACE) if test.examples)


EXAMPLES = sorted(docstring_examples(), key=lambda test: test.name)


def test_the_examples_are_found():
    names = {test.name for test in EXAMPLES}
    assert {"jaxnet", "jaxnet.train._ensemble.fit_ensemble"} <= names, names


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda test: test.name)
def test_docstring_example(example):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    result = runner.run(example, out=report.write, clear_globs=True)
    assert result.failed == 0 and result.attempted > 0, report.getvalue()

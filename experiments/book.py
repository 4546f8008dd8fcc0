"""`book`: every published number of the book that jaxnet can check here, in one table: book, jaxnet, tolerance, pass.

Deep Learning from Scratch prints or plots numbers that a reimplementation can be held to. This
experiment collects those that jaxnet can check with the files in this repository's reach:

- the book authors' own trained weights (chapters 3, 7, 8; `jaxnet.load_book_weights`): their
  accuracy and misclassified count on the 10,000 MNIST t10k images, exactly, in float64 and float32;
- chapter 8's half precision (half_float_network.py): the same DeepConvNet weights in float16 and
  bfloat16, and as the book's script really runs them (weights and inputs rounded to float16, the
  arithmetic still float64: `param[...] = param.astype(np.float16)` keeps float64 arrays);
- chapter 4's gradient descent on x0^2 + x1^2 (gradient_method.py) with jaxnet's SGD;
- chapter 5's gradient check (gradient_check.py): TwoLayerNet 784-50-10, three images, the book's
  central differences (h = 1e-4) against jaxnet's hand-derived backprop, the mean absolute difference
  per parameter, over several initial draws;
- chapter 6's figures (weight init, optimizers, BatchNorm, overfitting, the hyperparameter search),
  from the chapter-6 experiments over `--seeds` seeds (a band, not one draw): `runs/NAME/metrics.json`
  is reused where it holds a full run of that seed, other seeds are trained into `OUT/NAME/seed{s}/`
  (and reused from there next time);
- numbers that need the 60,000 MNIST training images (the book's training runs of chapters 4-5, 7
  and 8) are listed as "needs the 60,000 training images", and run (mnist, cnn --full,
  deep_convnet --full) when those files are in the MNIST folder.

Writes `OUT/report.md` (the table and the reason for every tolerance), `OUT/metrics.json` and the
grid of the first 20 t10k digits that the book's DeepConvNet misclassifies (misclassified_mnist.py).
`--quick`: the weight files on the first 500 images (no verdict), no half precision, one initial draw
for the gradient check, and chapter 6 only from runs already on disk (a smoke test).
Data: MNIST from `--data-dir` (else `$JAXNET_DATA_DIR/mnist`); the weights from `--weights-dir`
(else `dlfs-weights` beside the MNIST folder or in `$JAXNET_DATA_DIR`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

from . import _book_chapters as chapters
from . import deep_convnet as deep
from ._common import parser, write_metrics
from jaxnet import data

QUICK_IMAGES = 500


class Row(NamedTuple):
    """One line of the table. `passed`: True / False, or None when there is no verdict (informational,
    not run, or a --quick subset)."""

    chapter: str
    quantity: str
    book: str
    jaxnet: str
    tolerance: str
    passed: bool | None
    why: str = ""  # the tolerance's justification (report.md)


def verdict(row: Row) -> str:
    return {True: "pass", False: "FAIL", None: "-"}[row.passed]


def table(rows: list[Row]) -> str:
    """The rows as a markdown table."""
    lines = ["| ch. | quantity | book | jaxnet | tolerance | result |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.chapter} | {r.quantity} | {r.book} | {r.jaxnet} | {r.tolerance} | {verdict(r)} |" for r in rows]
    return "\n".join(lines)


def report(rows: list[Row], notes: list[str], seconds: float) -> str:
    checked = [r for r in rows if r.passed is not None]
    passed = sum(bool(r.passed) for r in checked)
    why = [f"- **{r.chapter}, {r.quantity}**: {r.why}" for r in rows if r.why]
    return "\n".join([
        "# The book's published numbers, checked by jaxnet",
        "",
        f"`python -m experiments book`: {passed} of {len(checked)} checked numbers within tolerance; "
        f"{len(rows) - len(checked)} listed without a verdict; {seconds:.0f} s.",
        "",
        table(rows),
        "",
        "## Why each tolerance",
        "",
        *why,
        "",
        *notes,
        "",
    ])


def weights_dir(args) -> Path | None:
    return deep.weights_dir(args)


def main(argv: list[str] | None = None) -> dict:
    p = parser("book", __doc__.splitlines()[0])
    p.add_argument("--weights-dir", type=Path, default=None,
                   help="folder with the book's weights as .npz (default: dlfs-weights beside the MNIST folder)")
    p.add_argument("--seeds", type=int, default=3, help="seeds for the bands of chapter 6 (default 3)")
    p.add_argument("--runs", type=Path, default=Path("runs"),
                   help="where earlier runs of the chapter-6 experiments are looked for (default runs/)")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error(f"--seeds: expected a positive int, got {args.seeds}")
    start = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    notes: list[str] = []
    extra: dict = {}

    try:
        mnist_folder = data.mnist_dir(args.data_dir)
        t10k = deep.t10k_images(mnist_folder)
    except FileNotFoundError as err:
        if args.data_dir is not None:
            p.error(f"--data-dir: {err}")
        mnist_folder, t10k = None, None
        notes.append(f"No MNIST files ({err}): the rows that need the t10k images were not run.")
    have_train = (mnist_folder is not None
                  and data.load_mnist(mnist_folder, t10k_split=(8000, 2000)).source == "train+t10k")
    directory = weights_dir(args) if t10k is not None else None

    if t10k is not None and directory is not None:
        n = QUICK_IMAGES if args.quick else t10k[0].shape[0]
        rows += chapters.weight_file_rows(Row, directory, t10k[0][:n], t10k[1][:n], quick=args.quick)
        if args.quick:
            rows.append(Row("8", "half_float_network.py: DeepConvNet in float16 and bfloat16",
                            "0.9935 (65), as float64", "not run (--quick)", "-", None))
        else:
            rows += chapters.half_precision_rows(Row, directory, t10k[0], t10k[1])
        grid = deep.book_weights_grid(directory, t10k[0][:n], t10k[1][:n], out)
        extra["book_deep_convnet_first_misclassified"] = grid["first_misclassified"]
        notes.append(f"![the first 20 t10k digits the book's DeepConvNet misclassifies]"
                     f"({Path(grid['figure']).name})\n\n"
                     f"The book's misclassified_mnist.py prints them as {{view: (label, inference)}}: "
                     + ", ".join(f"{i + 1}: ({t}, {y})" for i, (_, t, y) in enumerate(grid["first_misclassified"]))
                     + f" (t10k indices {[i for i, _, _ in grid['first_misclassified']]}).")
    elif t10k is not None:
        notes.append("The book's weight files were not found (--weights-dir): their rows were not run.")
    rows += chapters.gradient_descent_rows(Row)
    if t10k is not None:
        images = t10k[0][:3].reshape(3, 784)
        rows += chapters.gradient_check_rows(Row, images, t10k[1][:3], **({"draws": 1} if args.quick else {}))
    if mnist_folder is not None:
        seeds = [args.seed + i for i in range(args.seeds)]
        chapter6, runs = chapters.chapter6_rows(Row, seeds, args.runs, out, mnist_folder, quick=args.quick)
        rows += chapter6
        extra["chapter6_runs"] = runs
    rows += chapters.full_mnist_rows(Row, have_train and not args.quick, mnist_folder, out)

    rows.sort(key=lambda r: int(r.chapter.split("-")[0]))  # chapter order (stable within a chapter)
    seconds = time.perf_counter() - start
    text = report(rows, notes, seconds)
    (out / "report.md").write_text(text)
    checked = [r for r in rows if r.passed is not None]
    summary = {"checked": len(checked), "passed": sum(bool(r.passed) for r in checked), "rows": len(rows)}
    write_metrics(out, {**summary, "quick": args.quick, "rows": [r._asdict() for r in rows], **extra,
                        "seconds": seconds})
    print(table(rows))
    print(f"\nbook: {summary['passed']} of {summary['checked']} checked numbers within tolerance, "
          f"{len(rows) - len(checked)} without a verdict; {seconds:.1f} s; {out / 'report.md'}")
    return {"passed": summary["passed"], "checked": summary["checked"]}


if __name__ == "__main__":
    main()

"""One helper for parallel work with a progress bar, used by every stage that loops over files."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, TypeVar

from joblib import Parallel, delayed
from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    n_jobs: int = -1,
    desc: str = "",
    unit: str = "it",
    quiet: bool = False,
    prefer: str = "threads",
) -> Iterator[R]:
    """Yield ``fn(item)`` for every item, in completion order, with a tqdm bar on stderr.

    ``prefer="threads"`` suits work that spends its time in C code that releases the GIL (libsndfile,
    soxr, numpy, torch); ``"processes"`` suits pure-Python work. ``n_jobs=1`` runs in this thread,
    which keeps tracebacks simple when debugging.
    """
    items = list(items)
    with tqdm(total=len(items), desc=desc, unit=unit, disable=quiet, dynamic_ncols=True) as bar:
        if n_jobs == 1 or len(items) <= 1:
            results: Iterable[R] = (fn(item) for item in items)
        else:
            results = Parallel(n_jobs=n_jobs, prefer=prefer, return_as="generator_unordered")(delayed(fn)(item) for item in items)
        for result in results:
            bar.update(1)
            yield result

"""One helper for parallel work with a progress bar, used by every stage that loops over files."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

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
    dask_address: str | None = None,
    on_error: Callable[[T, str], R] | None = None,
    setting: str = "data",
    outputs: Sequence[Path] = (),
) -> Iterator[R]:
    """Yield ``fn(item)`` for every item, in completion order, with a tqdm bar on stderr.

    ``prefer="threads"`` suits work that spends its time in C code that releases the GIL (libsndfile,
    soxr, numpy, torch); ``"processes"`` suits pure-Python work. ``n_jobs=1`` runs in this thread,
    which keeps tracebacks simple when debugging.

    With ``dask_address``, ``fn`` runs on the workers of that Dask scheduler instead (``n_jobs`` and
    ``prefer`` are then the cluster's business; :mod:`.cluster`): it must be picklable, take paths
    that every worker sees (the ``outputs`` folders are checked first) and return something small;
    an item whose work raised or was lost gives ``on_error(item, why)``. ``setting`` names the
    settings file in its one-line errors (:class:`.cluster.ClusterError`).
    """
    items = list(items)
    with tqdm(total=len(items), desc=desc, unit=unit, disable=quiet, dynamic_ncols=True) as bar:
        if dask_address is not None:
            from .cluster import dask_map

            if on_error is None:
                raise ValueError("parallel_map on a Dask cluster needs on_error: a lost item must give a result")
            results: Iterable[R] = dask_map(fn, items, dask_address, on_error, setting, outputs)
        elif n_jobs == 1 or len(items) <= 1:
            results = (fn(item) for item in items)
        else:
            results = Parallel(n_jobs=n_jobs, prefer=prefer, return_as="generator_unordered")(delayed(fn)(item) for item in items)
        for result in results:
            bar.update(1)
            yield result

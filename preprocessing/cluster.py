"""Per-file work on a Dask cluster: ``data.backend=dask`` (splice) and ``upsampling.backend=dask``.

One scheduler, workers on every machine, and the ``pipeline`` command (the driver) anywhere that
reaches the scheduler::

    dask scheduler --host 10.0.0.1 --port 8786                      # one machine
    dask worker tcp://10.0.0.1:8786 --nworkers 16 --nthreads 1      # every machine: one per core
    pipeline splice --set data.backend=dask --set data.dask_address=tcp://10.0.0.1:8786 ...

Every machine needs the package (``pip install -e ".[cluster]"``) and sees the corpus and the output
folder at the same paths (a shared file system): the driver finds the files and sends each worker
absolute paths; a worker reads, writes its outputs under temporary names renamed when complete,
and sends back a small record. Only the driver writes the tables (``manifest.csv``,
``failures.csv``) and prints. Before any work, every worker must see the output folder: the driver
puts a probe file in it, and a worker that does not see it stops the run with a one-line error (its
outputs would land on its own disk, not where the driver looks). An input a worker cannot see is
that file's failure, listed as any unreadable file.

Nothing is lost: a worker that dies mid-file has that file rescheduled on the others by the
scheduler (``distributed.scheduler.allowed-failures`` times, 3 by default); a file that still does
not finish, or whose work raised, comes back as a failure of that file for the stage to list. A
file done twice (a worker lost from view that was in fact still running) is still whole, being
renamed into place. Why not joblib's Dask backend: it stops the whole map at the first error, where
a stage must list the file and go on.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TypeVar

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from distributed import Client

T = TypeVar("T")
R = TypeVar("R")

INSTALL = 'pip install -e ".[cluster]" (or pip install "dask[distributed]")'
CONNECT_TIMEOUT_S = 10.0


class ClusterError(Exception):
    """The cluster cannot be used at all (Dask missing, no scheduler, a worker blind to the folders);
    the message is one line."""


def _distributed(setting: str):
    try:
        import distributed
    except ImportError:
        raise ClusterError(f"{setting}.backend=dask needs Dask, which is not installed: {INSTALL}") from None
    return distributed


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _sees(path: str, probe: str) -> bool:
    """Run on a worker: does it see the driver's probe file in ``path``?"""
    return os.path.exists(os.path.join(path, probe))


def _check_outputs(client: "Client", folders: Sequence[Path], setting: str) -> None:
    """Every worker sees each output folder at the same path: a probe file the driver writes in it."""
    if not client.scheduler_info().get("workers"):
        tqdm.write(f"note: no Dask workers at {client.scheduler.address} yet; the files wait for the first to join", file=sys.stderr)
        return
    for folder in folders:
        probe = f".dask-probe-{uuid.uuid4().hex}"
        try:
            (folder / probe).write_bytes(b"")
        except OSError as e:
            raise ClusterError(f"{folder}: output folder cannot be written ({e.strerror or e})") from None
        try:
            seen = client.run(_sees, str(folder), probe)
        finally:
            with contextlib.suppress(OSError):
                (folder / probe).unlink()
        blind = sorted(w for w, ok in seen.items() if not ok)
        if blind:
            raise ClusterError(
                f"{folder}: the Dask worker {blind[0]}"
                + (f" (and {len(blind) - 1} more)" if len(blind) > 1 else "")
                + f" does not see this folder; with {setting}.backend=dask it must be on a file system that every machine mounts at the same path"
            )


def check_backend(address: str | None, setting: str):
    """Before any work: Dask is installed and an address is given, else :class:`ClusterError`.
    ``setting`` ("data", "upsampling") names the settings file in messages. Returns the module."""
    distributed = _distributed(setting)
    if not address:
        raise ClusterError(f"{setting}.backend=dask needs {setting}.dask_address, the scheduler's address: --set {setting}.dask_address=tcp://HOST:8786")
    return distributed


@contextlib.contextmanager
def dask_client(address: str | None, setting: str, outputs: Sequence[Path] = ()) -> Iterator["Client"]:
    """A client of the scheduler at ``address`` whose workers all see the ``outputs`` folders (where
    they will write; each exists). ``setting`` names the settings file in messages. Raises
    :class:`ClusterError`."""
    distributed = check_backend(address, setting)
    try:
        client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except Exception as e:  # OSError (no answer), ValueError/TypeError (not an address)
        raise ClusterError(f"{address}: no Dask scheduler answered ({setting}.dask_address: {_first_line(e)}); start one with `dask scheduler` and give its tcp://HOST:PORT") from None
    try:
        _check_outputs(client, [Path(f).absolute() for f in outputs], setting)
        yield client
    finally:
        client.close()


def _why(e: BaseException) -> str:
    if type(e).__name__ == "KilledWorker":
        return "lost: the Dask workers running it died each time it was tried (distributed.scheduler.allowed-failures)"
    if type(e).__name__.endswith("CancelledError"):  # the scheduler died or became unreachable
        return f"lost: not done on the cluster ({_first_line(e).split(' for reason: ')[-1].rstrip('.')}); run again to finish it"
    root = e
    while (root.__cause__ or root.__context__) is not None:
        root = root.__cause__ or root.__context__
    if root is not e and "deserializ" in str(e):  # the worker cannot import what the task names
        return f"failed on a Dask worker: it cannot unpack the task ({_first_line(root)}); every machine needs the same version of this package, and its workers restarted after an upgrade"
    return f"failed on a Dask worker: {_first_line(e)}"


def _tune_malloc() -> None:
    """On a worker, once: glibc's own ceilings for its mmap and trim thresholds. distributed's
    nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also pins the mmap threshold
    at 128 KiB: every array of audio is then a fresh mmap, faulted in page by page and unmapped on
    free, and splice runs about 40% slower than in a plain process. With these, arrays up to 32 MiB
    reuse the heap and up to 64 MiB of it stays mapped, as in any process that did not set them."""
    global _TUNED
    if _TUNED:
        return
    _TUNED = True
    if "MALLOC_TRIM_THRESHOLD_" in os.environ and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None)
            libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
            libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD


_TUNED = False


def _on_worker(item: T, _fn: Callable[..., R], **shared: Any) -> R:
    _tune_malloc()
    return _fn(item, **shared)


def as_finished(client: "Client", fn: Callable[..., R], items: Sequence[T], on_error: Callable[[T, str], R], **shared: Any) -> Iterator[tuple[int, R]]:
    """``(index, fn(items[index], **shared))`` for every item, computed on the workers, in the
    order they finish. An item whose work raised, or was lost with its worker more times than the
    scheduler allows, gives ``(index, on_error(item, why))``: every item gives exactly one result.
    ``shared`` values (futures of scattered data among them) go to every call."""
    from distributed import as_completed

    futures = client.map(_on_worker, items, pure=False, _fn=fn, **shared)
    index = {f.key: i for i, f in enumerate(futures)}
    try:
        for future in as_completed(futures, loop=client.loop):
            i = index[future.key]
            try:
                result = future.result()
            except Exception as e:
                result = on_error(items[i], _why(e))
            future.release()
            yield i, result
    finally:
        with contextlib.suppress(Exception):  # a lost scheduler has nothing left to cancel
            client.cancel([f for f in futures if not f.done()])


def dask_map(fn: Callable[[T], R], items: Sequence[T], address: str | None, on_error: Callable[[T, str], R], setting: str = "data", outputs: Sequence[Path] = ()) -> Iterator[R]:
    """``fn(item)`` for every item on the workers of the scheduler at ``address``, in completion
    order; see :func:`as_finished` for failures and :func:`dask_client` for the rest."""
    with dask_client(address, setting, outputs) as client:
        for _, result in as_finished(client, fn, items, on_error):
            yield result


def _die_with_parent() -> None:
    """In a child, before it runs: on Linux, SIGTERM it when its parent dies (a test run killed
    from outside leaves no scheduler or workers behind)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM


@contextlib.contextmanager
def local_cluster(n_workers: int = 2, threads: int = 1, preload: Sequence[str] = ()) -> Iterator[str]:
    """A scheduler and ``n_workers`` worker processes on 127.0.0.1, started as a user would (the
    ``dask scheduler`` and ``dask worker`` commands, as child processes of this one), for the tests
    and benchmarks; each worker imports the ``preload`` modules before it joins (by default a
    worker imports what a task needs when the first one comes). Yields the
    scheduler's address; stops them all on exit."""
    import subprocess
    import tempfile
    import time

    distributed = _distributed("data")
    with tempfile.TemporaryDirectory(prefix="dask_") as tmp:
        file = Path(tmp) / "scheduler.json"
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "preexec_fn": _die_with_parent}
        common = ["--scheduler-file", str(file)]
        procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", *common], **quiet)]
        try:
            deadline, address = time.monotonic() + 60, None
            while address is None:
                with contextlib.suppress(OSError, ValueError, KeyError):
                    address = json.loads(file.read_text())["address"]
                if address is None and (procs[0].poll() is not None or time.monotonic() > deadline):
                    raise ClusterError("the local Dask scheduler did not start")
                time.sleep(0.05)
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "distributed.cli.dask_worker", "--host", "127.0.0.1", "--nworkers", str(n_workers), "--nthreads", str(threads), "--no-dashboard", *common]
                    + [arg for module in preload for arg in ("--preload", module)],
                    **quiet,
                )
            )
            with distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False) as client:
                client.wait_for_workers(n_workers, timeout=120)
            yield address
        finally:
            for proc in reversed(procs):  # workers first: they leave cleanly while the scheduler is up
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

"""Run a memory-hungry step (world build, dataset validation) in a spawned child process, so the
memory it touches goes back to the system before a run's trials start, rather than staying with
the long-lived driver. Progress messages and user errors cross back to the parent."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from bench.errors import UserError

Progress = Callable[[str], None]


def _child(target: str, args: tuple, kwargs: dict, queue) -> None:
    module, _, name = target.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
        result = fn(*args, progress=lambda msg: queue.put(("say", msg)), **kwargs)
        queue.put(("done", result))
    except UserError as exc:
        queue.put(("user_error", str(exc)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def run_isolated(target: str, *args: Any, progress: Progress | None = None, what: str = "child", **kwargs: Any) -> Any:
    """``module:function(*args, progress=..., **kwargs)`` in a fresh interpreter; returns its result
    (which must pickle). A :class:`UserError` in the child is raised here with the same message."""
    import multiprocessing as mp

    say = progress or (lambda msg: None)
    ctx = mp.get_context("spawn")  # a fresh interpreter: nothing inherited from the driver's threads
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(target, args, kwargs, queue), name=f"bench-{what}")
    child.start()
    try:
        while True:
            try:
                kind, payload = queue.get(timeout=1.0)
            except Exception:  # noqa: BLE001 - queue.Empty: check the child is still alive
                if not child.is_alive():
                    raise RuntimeError(f"{what} process exited with code {child.exitcode} before finishing") from None
                continue
            if kind == "say":
                say(payload)
            elif kind == "done":
                return payload
            elif kind == "user_error":
                raise UserError(payload)
            else:
                raise RuntimeError(f"{what} failed: {payload}")
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()

"""DNS lookups for sender authentication, started together so the DATA reply waits for the
slowest one rather than for their sum.

Every lookup still goes through the process-wide resolver (mailcloak.mail.dns), whose
per-lookup lifetime bounds how long any of them can take.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

import dkim

from mailcloak.mail.dns import DnsError, DnsTemporaryError, NoSuchDomain, Resolver

# Threads per process. Checks mostly wait on DNS, so they are many; a check waits on lookups
# and a lookup never waits on anything, so two separate pools cannot deadlock.
CHECK_THREADS = 64  # messages being authenticated at once (authenticate_async)
LOOKUP_THREADS = 64  # single DNS lookups, shared by every message being checked
# A safety net above the resolver's own lifetime: a lookup not done by then counts as failed.
LOOKUP_WAIT = 30.0

T = TypeVar("T")

_pools: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(name: str, size: int) -> concurrent.futures.ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(name)
        if pool is None:
            pool = _pools[name] = concurrent.futures.ThreadPoolExecutor(
                max_workers=size, thread_name_prefix=f"mailcloak-{name}")
        return pool


def check_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that run whole checks for async callers, created on first use."""
    return _pool("auth", CHECK_THREADS)


def lookup_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that run single lookups, created on first use."""
    return _pool("auth-dns", LOOKUP_THREADS)


def _forget_pools_after_fork() -> None:
    # A forked SMTP process must not inherit its parent's threads (they do not exist there).
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools_after_fork)


def start(call: Callable[..., T], *args: object, **kwargs: object) -> concurrent.futures.Future[T]:
    """Run one lookup on the lookup threads."""
    return lookup_pool().submit(call, *args, **kwargs)


def wait_for(future: concurrent.futures.Future[T], what: str,
             timeout: float = LOOKUP_WAIT) -> T:
    """The future's result; DnsTemporaryError when it is not done in time."""
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        raise DnsTemporaryError(f"{what}: no answer in {timeout:g} s") from None


def normalise_name(name: bytes | str) -> str:
    text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
    return text.rstrip(".").lower()


class TxtLookups:
    """TXT lookups of DKIM and ARC keys and DMARC policies, all started at once.

    `dkim_dnsfunc` answers dkimpy from them; a name that was not started is looked up then."""

    def __init__(self, resolver: Resolver, names: Iterable[str]) -> None:
        self._resolver = resolver
        self._futures = {name: self._start(name)
                         for name in dict.fromkeys(normalise_name(name) for name in names)}

    def values(self, name: str) -> list[bytes]:
        """The TXT values of `name`. Raises NoSuchDomain or DnsTemporaryError."""
        key = normalise_name(name)
        future = self._futures.get(key)
        if future is None:
            future = self._futures[key] = self._start(key)
        return wait_for(future, f"{key} TXT")

    def _start(self, name: str) -> concurrent.futures.Future[list[bytes]]:
        """The lookup, answered at once when the cache holds it (most mail comes from domains
        seen moments before), else started on the lookup threads."""
        done: concurrent.futures.Future[list[bytes]] = concurrent.futures.Future()
        try:
            cached = self._resolver.txt_cached(name)
        except DnsError as exc:
            done.set_exception(exc)
            return done
        if cached is None:
            return start(self._resolver.txt_sync, name)
        done.set_result(cached)
        return done

    def failure(self, name: str) -> DnsError | None:
        """Why `name` has no usable answer (NoSuchDomain, DnsTemporaryError), None if it has."""
        try:
            self.values(name)
        except DnsError as exc:
            return exc
        return None

    def dkim_dnsfunc(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        """dkimpy's `dnsfunc=`: the first TXT value, None when there is none."""
        try:
            values = self.values(normalise_name(name))
        except NoSuchDomain:
            return None
        except DnsTemporaryError as exc:
            raise dkim.DnsTimeoutError(str(exc)) from None
        return values[0] if values else None

"""Wires the recorder into Locust: its event hooks, its HTTP clients and its users' pacing.

Both of Locust's HTTP clients are wrapped so that every request is known from the moment it is
sent (a request that hangs is seen while it hangs) and gets the load's timeout where the
locustfile sets none. Runs inside the Locust child only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import gevent
from gevent import GreenletExit
from locust import FastHttpUser, events
from locust.clients import HttpSession
from locust.contrib.fasthttp import FastHttpSession
from locust.env import Environment
from locust.event import EventHook
from locust.runners import MasterRunner, WorkerRunner
from locust.user import wait_time

from chaoslib_ext.load.handshake import Identity, Settings
from chaoslib_ext.load.recorder import Recorder
from chaoslib_ext.load.roles import Master, Role, SingleProcess, Worker, tick_forever

_PACED = wait_time.constant_pacing(1).__code__  # constant_throughput is constant_pacing(1 / rate)
_POISSON = wait_time.poisson(1).__code__

_Listener = TypeVar("_Listener", bound=Callable[..., None])


def _listen(hook: EventHook) -> Callable[[_Listener], _Listener]:
    """`hook.add_listener`, typed: it registers the handler and returns it (Locust leaves it unannotated)."""
    return cast("Callable[[_Listener], _Listener]", hook.add_listener)


def install(recorder: Recorder, settings: Settings, max_clock_offset: float) -> None:
    """Register the recorder (before Locust parses its options). The recorder's `emit` is the
    runner's pipe; what a process does with it depends on its kind (roles). A worker takes its
    settings from the master when it joins; the others have them from the runner."""
    for session_class, sets_timeout in ((HttpSession, True), (FastHttpSession, False)):
        session_class.request = _tracked(session_class.request, recorder, sets_timeout)  # type: ignore[method-assign]
    role: Role = SingleProcess(recorder, recorder.emit)

    @_listen(events.init)
    def _init(environment: Environment, **_: Any) -> None:
        nonlocal role
        runner, options = environment.runner, environment.parsed_options
        assert options is not None  # Locust's main parsed them before `init`
        if isinstance(runner, WorkerRunner):
            identity = Identity.of(str(options.locustfile))
            role = Worker(recorder, runner, identity, lambda given: configure_users(environment, given))
        else:
            configure_users(environment, settings)
            if isinstance(runner, MasterRunner):
                identity = Identity.of(str(options.locustfile))
                role = Master(runner, recorder.emit, identity, settings, max_clock_offset)
        gevent.spawn(tick_forever, role)
        # after the runner's own listeners: Locust fires `quitting` in reverse, so this one runs first
        _listen(environment.events.quitting)(lambda **_: role.quitting())

    @_listen(events.test_start)
    def _started(**_: Any) -> None:
        role.started()

    @_listen(events.spawning_complete)
    def _spawned(user_count: int, **_: Any) -> None:
        role.spawned(user_count)

    @_listen(events.test_stop)
    def _stopped(**_: Any) -> None:
        role.stopped()

    @_listen(events.quit)
    def _quit(**_: Any) -> None:
        role.quit()

    _listen(events.request)(recorder.on_request)


def configure_users(environment: Environment, settings: Settings) -> None:
    """The open model's pacing on every user class, and the request timeout on FastHttpUsers
    whose locustfile sets none (HttpUser requests take it from the recorder)."""
    for user_class in environment.user_classes:
        if settings.pacing is not None:
            user_class.wait_time = wait_time.constant_pacing(settings.pacing)
        if issubclass(user_class, FastHttpUser) and not _sets_own(user_class, FastHttpUser):
            user_class.network_timeout = user_class.connection_timeout = settings.timeout


def _tracked(send: Callable[..., Any], recorder: Recorder, sets_timeout: bool) -> Callable[..., Any]:
    @functools.wraps(send)
    def request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if sets_timeout:
            kwargs.setdefault("timeout", recorder.timeout)
        name = args[0] if args else kwargs.get("name")
        endpoint = f"{method} {name or self.request_name or _path(url)}"
        user_class: type = type(self.user)  # `type`, not type[Any], which mypy does not see as Hashable
        pending = recorder.sending(endpoint, pacing_us_of(user_class) if self.user else None)
        try:
            return send(self, method, url, *args, **kwargs)
        except GreenletExit:  # its user is being stopped
            recorder.gave_up(pending, None)
            raise
        except BaseException as error:  # raised before Locust could report it (a bad URL, say)
            recorder.gave_up(pending, error)
            raise

    return request


@functools.lru_cache(maxsize=4096)  # bounded: URLs may carry ids
def _path(url: str) -> str:
    """A request's name when the locustfile gives none, as Locust names it: the URL's path."""
    return urlsplit(url).path or url


@functools.cache
def pacing_us_of(user_class: type) -> int | None:
    """Microseconds between a user's task runs, when its wait_time says (constant_pacing,
    constant_throughput, poisson: the mean); None for any other wait_time."""
    function = getattr(user_class, "wait_time", None)
    function = getattr(function, "__func__", function)
    code = getattr(function, "__code__", None)
    if code not in (_PACED, _POISSON):
        return None
    assert function is not None and code is not None
    cells = dict(
        zip(code.co_freevars, (cell.cell_contents for cell in function.__closure__ or ()), strict=True)
    )
    seconds = float(cells["wait_time"]) if code is _PACED else 1 / float(cells["rate"])
    return max(1, round(seconds * 1e6))


def _sets_own(user_class: type, base: type) -> bool:
    """Whether the locustfile set a FastHttpUser's timeouts itself."""
    return any(
        name in vars(cls)
        for cls in user_class.__mro__
        if cls is not base and issubclass(cls, base)
        for name in ("network_timeout", "connection_timeout")
    )

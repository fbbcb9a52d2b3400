"""A learner without a browser: speaks Streamlit's websocket protocol to a running app (issue 30).

What a browser tab does, minus the drawing: it opens `ws://host/_stcore/stream` (subprotocol "streamlit"), sends
BackMsg.rerun_script with the page's script hash and the widget states it holds, and reads ForwardMsgs until the
run's `script_finished`. Widgets are found by their label in the run's deltas (each widget element carries its id,
options and value), so a learner can click a token pill, pick a head or move a slider the way the page offers them.

Like a browser it keeps the states of the widgets it set and sends them with every rerun until a full run no longer
shows that widget (a quick click to another page therefore carries the earlier page's widgets: the KeyError race),
answers the fragment timer (`auto_rerun`: the sidebar's training status every 2 s), and emulates the browser's
message cache (hashes of cacheable messages, aged out after max_cached_message_age runs; a reference to a hash it
no longer holds is what the browser reports as "Cached ForwardMsg MISS").

Reads the protobufs of the installed streamlit (streamlit.proto), and `websockets` (installed with streamlit's server).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.asyncio.client import connect

FINISHED = ForwardMsg.ScriptFinishedStatus
FULL_RUN_DONE = {FINISHED.FINISHED_SUCCESSFULLY, FINISHED.FINISHED_WITH_COMPILE_ERROR}
WIDGET_TYPES = ("button_group", "selectbox", "radio", "slider", "checkbox", "text_input", "button", "number_input")


class ProtocolError(RuntimeError):
    pass


def _page_cookies(url: str, timeout_s: float) -> dict[str, str]:
    """The cookies a page load sets (Set-Cookie of a GET), name -> value."""
    import urllib.request
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        found = response.headers.get_all("Set-Cookie") or []
    return dict(c.split(";", 1)[0].split("=", 1) for c in found if "=" in c.split(";", 1)[0])


@dataclass
class RunResult:
    """What one interaction brought back: its wall time, the exceptions and error boxes shown, widgets seen."""
    seconds: float = 0.0
    exceptions: list[str] = field(default_factory=list)     # st.exception elements: a traceback on the page
    cache_misses: list[str] = field(default_factory=list)   # references to messages the client no longer holds
    cache_refs: int = 0        # messages sent as a reference to the browser's cache (ref_hash)
    cacheable: int = 0         # messages the server marked for the browser to cache
    widgets: dict[str, object] = field(default_factory=dict)  # label -> widget proto (the last of that label)
    texts: list[str] = field(default_factory=list)          # markdown/caption/heading bodies, for assertions
    page_hash: str = ""


class Learner:
    """One websocket session = one browser tab. Use as `async with Learner(url) as s: await s.open()`."""

    def __init__(self, url: str, timeout_s: float = 120.0, follow_timer: bool = True, cache_age: int | None = None,
                 default_page: str = "inside", sticky: bool = False):
        self.default_page, self.sticky = default_page, sticky
        self.cookies: dict[str, str] = {}
        self.handshake_headers: dict[str, str] = {}
        self.url = url.rstrip("/").replace("http://", "ws://") + "/_stcore/stream"
        self.timeout_s, self.follow_timer = timeout_s, follow_timer
        self.pages: dict[str, str] = {}          # url path ("inside") -> page_script_hash
        self.page_hash = ""
        self.states: dict[str, WidgetState] = {}  # widget id -> the state this tab sends with every rerun
        self.cache: dict[str, int] = {}           # message hash -> run count when last used (browser ForwardMsgCache)
        self.cache_age = cache_age                # None: the server's max_cached_message_age
        self.run_count = 0
        self.timers: dict[str, float] = {}        # fragment id -> interval (auto_rerun)
        self.session_id = ""
        self._ws = None
        self._reader = None
        self._timer_task = None
        self._current: RunResult | None = None
        self._done = asyncio.Event()
        self._busy = self._started = False
        self.timer_runs = 0
        self.timer_exceptions: list[str] = []

    async def __aenter__(self):
        base = self.url.replace("ws://", "http://").split("/_stcore")[0]
        headers = {}
        if self.sticky:   # as a browser: load the page first, then open the websocket with the cookies it set
            self.cookies = await asyncio.to_thread(_page_cookies, base + "/", self.timeout_s)
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        self._ws = await connect(self.url, subprotocols=["streamlit"], max_size=None, open_timeout=self.timeout_s,
                                 ping_interval=None, origin=base, additional_headers=headers)
        self.handshake_headers = dict(self._ws.response.headers)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc):
        for task in (self._timer_task, self._reader):
            if task:
                task.cancel()
        await self._ws.close()

    # ---- sending ----
    def _rerun_msg(self, page_hash: str, fragment_id: str = "", auto: bool = False) -> bytes:
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = ""
        state.page_script_hash = page_hash
        state.fragment_id = fragment_id
        state.is_auto_rerun = auto
        state.widget_states.widgets.extend(self.states.values())
        state.cached_message_hashes.extend(self.cache)
        return msg.SerializeToString()

    async def rerun(self, page: str | None = None, wait: bool = True) -> RunResult | None:
        """A full rerun of `page` (a url path; None: the page shown now) with this tab's widget states.
        wait=False sends it and returns at once (a quick click: the next request may overtake it)."""
        if page is not None:
            if page not in self.pages:
                raise ProtocolError(f"no page {page!r}; the app offers {sorted(self.pages)}")
            self.page_hash = self.pages[page]
        self._current, t0 = RunResult(page_hash=self.page_hash), time.perf_counter()
        self._done.clear()
        self._busy, self._started = True, False
        await self._ws.send(self._rerun_msg(self.page_hash))
        if not wait:
            return None
        return await self.wait(t0)

    async def wait(self, t0: float | None = None) -> RunResult:
        t0 = time.perf_counter() if t0 is None else t0
        try:
            await asyncio.wait_for(self._done.wait(), self.timeout_s)
        finally:
            self._busy = False
        result = self._current
        result.seconds = time.perf_counter() - t0
        return result

    async def open(self, page: str = "") -> RunResult:
        """The first run (the landing page, or `page` by its url path once the pages are known)."""
        result = await self.rerun(None)
        if page:
            result = await self.rerun(page)
        return result

    def set_widget(self, label: str, value, result: RunResult) -> None:
        """Set the widget labelled `label` (as the last run showed it) to `value`: an option's text for a select,
        pills or radio, a number for a slider or number input, text, True for a checkbox or a button press."""
        proto = result.widgets.get(label)
        if proto is None:
            raise ProtocolError(f"no widget labelled {label!r} on this page; it has {sorted(result.widgets)}")
        kind, el = proto
        state = WidgetState(id=el.id)
        if kind == "button_group":
            state.string_array_value.data.append(str(value))
        elif kind in ("selectbox", "radio", "text_input"):
            state.string_value = str(value)
        elif kind == "slider":
            if el.options:
                state.string_array_value.data.append(str(value))
            else:
                state.double_array_value.data.append(float(value))
        elif kind == "number_input":
            state.double_value = float(value)
        elif kind == "checkbox":
            state.bool_value = bool(value)
        elif kind == "button":
            state.trigger_value = True
        self.states[el.id] = state

    # ---- reading ----
    async def _read(self) -> None:
        async for raw in self._ws:
            msg = ForwardMsg()
            msg.ParseFromString(raw)
            self._handle(msg)

    def _handle(self, msg: ForwardMsg) -> None:
        kind = msg.WhichOneof("type")
        run = self._current if self._busy and self._current is not None else RunResult()
        if msg.metadata.cacheable and msg.hash:
            self.cache[msg.hash] = self.run_count
            run.cacheable += 1
        if kind == "ref_hash":
            run.cache_refs += 1
            if msg.ref_hash in self.cache:
                self.cache[msg.ref_hash] = self.run_count
            else:
                run.cache_misses.append(msg.ref_hash)
            return
        if kind == "new_session":
            self._started = True   # a full run began after the last request: its end answers that request
            self.session_id = msg.new_session.initialize.session_id or self.session_id
            if self.cache_age is None:
                self.cache_age = msg.new_session.config.max_cached_message_age
            self.timers.clear()   # a full run starts: the fragment timers it wants come again
        elif kind == "navigation":
            # the default page's url path is "": it is also known by the name given as default_page
            self.pages = {p.url_pathname: p.page_script_hash for p in msg.navigation.app_pages}
            default = [p.page_script_hash for p in msg.navigation.app_pages if p.is_default]
            if default and self.default_page:
                self.pages[self.default_page] = default[0]
            self.page_hash = msg.navigation.page_script_hash or self.page_hash
        elif kind == "auto_rerun":
            self.timers[msg.auto_rerun.fragment_id] = msg.auto_rerun.interval
            self._start_timer()
        elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            element = msg.delta.new_element
            which = element.WhichOneof("type")
            if which == "exception":
                text = f"{element.exception.type}: {element.exception.message}"[:300]
                (run.exceptions if self._busy else self.timer_exceptions).append(text)
            elif which in WIDGET_TYPES:
                widget = getattr(element, which)
                run.widgets[widget.label] = (which, widget)
            elif which in ("markdown", "heading", "text", "alert"):
                run.texts.append(getattr(getattr(element, which), "body", ""))
        elif kind == "script_finished":
            if msg.script_finished != FINISHED.FINISHED_EARLY_FOR_RERUN:
                self.run_count += 1   # the browser ages its cache once per finished run (a fragment's too)
            age = self.cache_age if self.cache_age is not None else 2
            self.cache = {h: used for h, used in self.cache.items() if self.run_count - used <= age}
            if msg.script_finished in FULL_RUN_DONE and self._busy and self._started:
                shown = {el.id for _, el in run.widgets.values()}
                self.states = {i: s for i, s in self.states.items() if i in shown}   # the browser's removeInactive
                self._done.set()

    # ---- the fragment timer (the sidebar's live training status) ----
    def _start_timer(self) -> None:
        if self.follow_timer and (self._timer_task is None or self._timer_task.done()):
            self._timer_task = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        while self.timers:
            await asyncio.sleep(min(self.timers.values()))
            if self._busy:       # a browser's timer also fires during a run; it then waits its turn server-side
                continue
            for fragment_id in list(self.timers):
                self.timer_runs += 1
                await self._ws.send(self._rerun_msg(self.page_hash, fragment_id, auto=True))

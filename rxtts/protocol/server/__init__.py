"""Server state machines: client frames in, commands and server frames out.

Sans-I/O in the h11 style: every protocol decision is a row of an explicit transition
table (``state × event → next state + effects``) that :meth:`receive` and the pipeline
hooks execute; the I/O layer (:mod:`rxtts.server`) only carries out the returned
commands (pipelines, frames, timers, close) and reports progress back. The core never
reads the clock: callers pass ``now`` (any monotonic seconds), the machine answers with
:class:`ArmTimer`/:class:`CancelTimer`, and the I/O layer calls :meth:`timer_fired`.

The tables below are generated from the executed tables (``render_table``);
``tests/test_protocol_machines.py`` fails when they drift. A ``(state, event)`` pair that
is absent is illegal: a client frame gets the ``PROTOCOL_ERROR`` frame, a pipeline event
(a late result of a cancelled pipeline, PROTOCOL S-5) is dropped.

Word timestamps (PROTOCOL 3.3, issue 17) are relative to the whole turn, request or
context, never to the chunk: ``start_ms``/``end_ms`` count from its first audio sample
(monotonic over its chunks) and ``char_start``/``char_end`` index the text the client
sent to it: on ``/ws/tts`` the request's ``text``; on ``/ws/tts/stream`` the
concatenation of the turn's ``text`` values in arrival order (a new turn starts at 0);
on ``/ws/tts/multi`` the concatenation of the context's ``text`` values.

Billing (PROTOCOL M-7a): ``usage`` of a gracefully ended turn/context counts all its
audio (all of it is sent before the terminal frame); a context closed ``immediate``
bills only the audio the I/O layer reported written (:meth:`MultiServer.audio_sent`);
a cancelled stream turn reports no usage at all (S-5: no ``session_closed``).

``/ws/tts/stream`` socket (PROTOCOL 5; the open turn is the one taking text)::

    state   event            next    effects
    ------  ---------------  ------  -----------------------------------------
    IDLE    TEXT             OPEN    merge_config, open_turn, append, arm_idle
    OPEN    TEXT             OPEN    merge_config, append, arm_idle
    IDLE    TEXT_FLUSH       IDLE    merge_config, open_turn, append, end_turn
    OPEN    TEXT_FLUSH       IDLE    merge_config, append, end_turn
    IDLE    VOICELESS        IDLE    merge_config, missing_voice
    IDLE    BLANK            IDLE    merge_config
    OPEN    BLANK            OPEN    merge_config, append, arm_idle
    IDLE    FLUSH            IDLE    merge_config, empty_close
    OPEN    FLUSH            IDLE    merge_config, append, end_turn
    IDLE    CLOSE            IDLE    empty_close
    OPEN    CLOSE            IDLE    end_turn
    IDLE    CANCEL           IDLE    cancel_all, interrupted
    OPEN    CANCEL           IDLE    cancel_all, interrupted
    IDLE    UPDATE_SETTINGS  IDLE    merge_settings, settings_updated
    OPEN    UPDATE_SETTINGS  OPEN    merge_settings, settings_updated
    IDLE    CLOSE_SOCKET     CLOSED  empty_close, close_socket
    OPEN    CLOSE_SOCKET     CLOSED  end_turn, close_socket
    OPEN    IDLE_TIMER       IDLE    warn_idle, end_turn
    IDLE    IDLE_TIMER       IDLE    -
    CLOSED  IDLE_TIMER       CLOSED  -

``/ws/tts/stream`` turn pipelines (pipeline events of a turn)::

    state   event       next    effects
    ------  ----------  ------  -------------------------------------------
    ENDING  FLUSH_DONE  CLOSED  final, session_closed, forget
    OPEN    ERROR       CLOSED  cancel, error_frame, session_closed, forget
    ENDING  ERROR       CLOSED  cancel, error_frame, session_closed, forget

``/ws/tts/multi`` socket (PROTOCOL 6)::

    state  event             next     effects
    -----  ----------------  -------  --------------------------------
    OPEN   CONTEXT_FRAME     OPEN     dispatch
    OPEN   PREP              OPEN     merge_config
    OPEN   CONTEXTLESS_TEXT  OPEN     context_id_required
    OPEN   UPDATE_SETTINGS   OPEN     merge_settings, settings_updated
    OPEN   CLOSE_SOCKET      CLOSING  close_all, maybe_close

``/ws/tts/multi`` contexts (PROTOCOL 6; ``ABSENT``/``NO_SLOT``: an unknown id with a
free slot / with 20 open contexts)::

    state    event            next     effects
    -------  ---------------  -------  -----------------------------------
    ABSENT   TEXT             OPEN     create, append, touch
    ABSENT   TEXT_FLUSH       OPEN     create, append, flush, touch
    ABSENT   VOICELESS        OPEN     create, missing_voice, touch
    ABSENT   BLANK            OPEN     create, touch
    ABSENT   FLUSH            OPEN     create, flush, touch
    NO_SLOT  TEXT             NO_SLOT  too_many
    NO_SLOT  TEXT_FLUSH       NO_SLOT  too_many
    NO_SLOT  VOICELESS        NO_SLOT  too_many
    NO_SLOT  BLANK            NO_SLOT  too_many
    NO_SLOT  FLUSH            NO_SLOT  too_many
    ABSENT   CLOSE            ABSENT   unknown_closed
    NO_SLOT  CLOSE            NO_SLOT  unknown_closed
    ABSENT   CLOSE_IMMEDIATE  ABSENT   unknown_closed
    NO_SLOT  CLOSE_IMMEDIATE  NO_SLOT  unknown_closed
    OPEN     TEXT             OPEN     append, touch
    OPEN     TEXT_FLUSH       OPEN     append, flush, touch
    OPEN     VOICELESS        OPEN     missing_voice, touch
    OPEN     BLANK            OPEN     touch
    OPEN     FLUSH            OPEN     flush, touch
    OPEN     CLOSE            CLOSING  flush, touch
    CLOSING  TEXT             CLOSING  closing
    CLOSING  TEXT_FLUSH       CLOSING  closing
    CLOSING  VOICELESS        CLOSING  closing
    CLOSING  BLANK            CLOSING  closing
    CLOSING  FLUSH            CLOSING  closing
    CLOSING  CLOSE            CLOSING  -
    OPEN     CLOSE_IMMEDIATE  ABSENT   cancel, closed_sent, forget
    CLOSING  CLOSE_IMMEDIATE  ABSENT   cancel, closed_sent, forget
    OPEN     TIMER            ABSENT   cancel, timeout, forget
    OPEN     TIMER_BUSY       OPEN     touch
    CLOSING  TIMER            CLOSING  -
    CLOSING  TIMER_BUSY       CLOSING  -
    OPEN     FLUSH_DONE       OPEN     final
    CLOSING  FLUSH_DONE       CLOSING  final
    CLOSING  LAST_FLUSH_DONE  ABSENT   final, closed, forget
    OPEN     ERROR            ABSENT   error_frame, cancel, closed, forget
    CLOSING  ERROR            ABSENT   error_frame, cancel, closed, forget

``/ws/tts`` (PROTOCOL 4, T-1..T-3)::

    state  event       next  effects
    -----  ----------  ----  ---------------
    IDLE   REQUEST     BUSY  enqueue
    BUSY   REQUEST     BUSY  enqueue
    IDLE   REFUSAL     IDLE  reply
    BUSY   REFUSAL     BUSY  reply
    BUSY   DONE        BUSY  final, pay_owed
    BUSY   LAST_DONE   IDLE  final, pay_owed
    BUSY   ERROR       BUSY  fail, pay_owed
    BUSY   LAST_ERROR  IDLE  fail, pay_owed
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rxtts.protocol.server._core import (
    AUTO_FLUSH_WARNING,
    DEFAULT_INACTIVITY_TIMEOUT,
    DEFAULT_MODEL_ID,
    IDLE_AUTO_FLUSH_SECONDS,
    AppendText,
    ArmTimer,
    CancelPipeline,
    CancelTimer,
    CloseSocket,
    Command,
    Flush,
    OpenPipeline,
    PipelineState,
    Pricing,
    Purge,
    Send,
    StartPipeline,
    Transition,
    missing_voice_error,
    protocol_error,
    render_table,
    settings_snapshot,
)
from rxtts.protocol.server.multi import (
    CONTEXT_TABLE,
    MULTI_SOCKET_TABLE,
    ContextEffect,
    ContextEvent,
    ContextState,
    MultiEffect,
    MultiEvent,
    MultiServer,
    MultiState,
)
from rxtts.protocol.server.stream import (
    STREAM_TABLE,
    TURN_TABLE,
    StreamEffect,
    StreamEvent,
    StreamServer,
    StreamState,
    TurnEffect,
    TurnEvent,
)
from rxtts.protocol.server.tts import TTS_TABLE, TtsEffect, TtsEvent, TtsServer, TtsState

TABLES: Mapping[str, Mapping[tuple[Any, Any], Transition[Any, Any]]] = {
    "STREAM_TABLE": STREAM_TABLE,
    "TURN_TABLE": TURN_TABLE,
    "MULTI_SOCKET_TABLE": MULTI_SOCKET_TABLE,
    "CONTEXT_TABLE": CONTEXT_TABLE,
    "TTS_TABLE": TTS_TABLE,
}
"""Every executed table by name, as rendered in the module docstring."""

__all__ = [
    "AUTO_FLUSH_WARNING",
    "CONTEXT_TABLE",
    "DEFAULT_INACTIVITY_TIMEOUT",
    "DEFAULT_MODEL_ID",
    "IDLE_AUTO_FLUSH_SECONDS",
    "MULTI_SOCKET_TABLE",
    "STREAM_TABLE",
    "TABLES",
    "TTS_TABLE",
    "TURN_TABLE",
    "AppendText",
    "ArmTimer",
    "CancelPipeline",
    "CancelTimer",
    "CloseSocket",
    "Command",
    "ContextEffect",
    "ContextEvent",
    "ContextState",
    "Flush",
    "MultiEffect",
    "MultiEvent",
    "MultiServer",
    "MultiState",
    "OpenPipeline",
    "PipelineState",
    "Pricing",
    "Purge",
    "Send",
    "StartPipeline",
    "StreamEffect",
    "StreamEvent",
    "StreamServer",
    "StreamState",
    "Transition",
    "TtsEffect",
    "TtsEvent",
    "TtsServer",
    "TtsState",
    "TurnEffect",
    "TurnEvent",
    "missing_voice_error",
    "protocol_error",
    "render_table",
    "settings_snapshot",
]

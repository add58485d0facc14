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

When they are sent (issue 13, a deliberate change of PROTOCOL 3.3's "sent after that
audio"): an engine that aligns (piper) knows a sentence's word times before its audio
is decoded, so the I/O layer calls :meth:`word_timestamps` as soon as the alignment is
known: between ``generation_started`` and the chunk's first audio frame, and again
before the audio of each further sentence of the chunk (several ``word_timestamps``
frames per ``chunk_id`` are possible). A player can then highlight a word the moment
it is heard. Times still count from the turn/request/context's first sample and
``chunk_offset_ms`` is fixed at ``chunk_started``, so they do not depend on how much
audio was sent. Estimates (engines without alignment, ``score`` 0.5) need the chunk's
length and stay after its audio, before ``chunk_complete``. Compatibility, checked
against the unchanged kugelaudio 2.7.0 SDK (``tests/test_server_words.py``): every PY
receive loop (``tts.stream``/``stream_async``/``generate``, ``StreamingSession``,
``MultiContextSession``) handles ``word_timestamps`` wherever it arrives and never ends
a turn on it, so "before" holds on all three endpoints, ``/ws/tts`` included.

Normalised chunks (``normalize``, default true): the engine speaks the normalised text,
but ``generation_started.text`` is the chunk as the client wrote it, and the pipeline
hands this machine words already mapped back to it (``"$3.50"`` is one word), so the
rebase below is unchanged.

Billing (PROTOCOL M-7a): ``usage`` of a gracefully ended turn/context counts all its
audio (all of it is sent before the terminal frame); a context closed ``immediate``
bills only the audio the I/O layer reported written (:meth:`MultiServer.audio_sent`);
a cancelled stream turn reports no usage at all (S-5: no ``session_closed``).

``/ws/tts/stream`` socket (PROTOCOL 5; the open turn is the one taking text)::

    state   event            next    effects                                    rule
    ------  ---------------  ------  -----------------------------------------  -------------
    IDLE    TEXT             OPEN    merge_config, open_turn, append, arm_idle  S-1, S-2, S-8
    OPEN    TEXT             OPEN    merge_config, append, arm_idle             S-2, S-8
    IDLE    TEXT_FLUSH       IDLE    merge_config, open_turn, append, end_turn  S-3
    OPEN    TEXT_FLUSH       IDLE    merge_config, append, end_turn             S-3
    IDLE    VOICELESS        IDLE    merge_config, missing_voice                3.4
    IDLE    BLANK            IDLE    merge_config                               S-9
    OPEN    BLANK            OPEN    merge_config, append, arm_idle             S-2
    IDLE    FLUSH            IDLE    merge_config, empty_close                  S-4
    OPEN    FLUSH            IDLE    merge_config, append, end_turn             S-3
    IDLE    CLOSE            IDLE    empty_close                                S-4
    OPEN    CLOSE            IDLE    end_turn                                   S-4
    IDLE    CANCEL           IDLE    cancel_all, interrupted                    S-5
    OPEN    CANCEL           IDLE    cancel_all, interrupted                    S-5
    IDLE    UPDATE_SETTINGS  IDLE    merge_settings, settings_updated           S-7
    OPEN    UPDATE_SETTINGS  OPEN    merge_settings, settings_updated           S-7
    IDLE    CLOSE_SOCKET     CLOSED  empty_close, close_socket                  S-10
    OPEN    CLOSE_SOCKET     CLOSED  end_turn, close_socket                     S-10
    OPEN    IDLE_TIMER       IDLE    warn_idle, end_turn                        S-8, S-8a
    IDLE    IDLE_TIMER       IDLE    -                                          S-8
    CLOSED  IDLE_TIMER       CLOSED  -                                          S-8

``/ws/tts/stream`` turn pipelines (pipeline events of a turn)::

    state   event       next    effects                                      rule
    ------  ----------  ------  -------------------------------------------  --------
    ENDING  FLUSH_DONE  CLOSED  final, session_closed, forget                S-3, S-6
    OPEN    ERROR       CLOSED  cancel, error_frame, session_closed, forget  4.2
    ENDING  ERROR       CLOSED  cancel, error_frame, session_closed, forget  4.2

``/ws/tts/multi`` socket (PROTOCOL 6)::

    state  event             next     effects                           rule
    -----  ----------------  -------  --------------------------------  ----
    OPEN   CONTEXT_FRAME     OPEN     dispatch                          M-5
    OPEN   PREP              OPEN     merge_config                      M-3
    OPEN   CONTEXTLESS_TEXT  OPEN     context_id_required               M-12
    OPEN   UPDATE_SETTINGS   OPEN     merge_settings, settings_updated  M-11
    OPEN   CLOSE_SOCKET      CLOSING  close_all, maybe_close            M-8

``/ws/tts/multi`` contexts (PROTOCOL 6; ``ABSENT``/``NO_SLOT``: an unknown id with a
free slot / with 20 open contexts)::

    state     event            next      effects                              rule
    --------  ---------------  --------  -----------------------------------  ---------
    ABSENT    TEXT             OPEN      create, append, touch                M-1, M-2
    ABSENT    TEXT_FLUSH       OPEN      create, append, flush, touch         M-1, M-6
    ABSENT    VOICELESS        OPEN      create, missing_voice, touch         M-1, 6.1
    ABSENT    BLANK            OPEN      create, touch                        M-1, M-4
    ABSENT    FLUSH            OPEN      create, flush, touch                 M-1, M-6
    NO_SLOT   TEXT             NO_SLOT   too_many                             M-9
    NO_SLOT   TEXT_FLUSH       NO_SLOT   too_many                             M-9
    NO_SLOT   VOICELESS        NO_SLOT   too_many                             M-9
    NO_SLOT   BLANK            NO_SLOT   too_many                             M-9
    NO_SLOT   FLUSH            NO_SLOT   too_many                             M-9
    ABSENT    CLOSE            ABSENT    unknown_closed                       M-7
    NO_SLOT   CLOSE            NO_SLOT   unknown_closed                       M-7
    ABSENT    CLOSE_IMMEDIATE  ABSENT    unknown_closed                       M-7
    NO_SLOT   CLOSE_IMMEDIATE  NO_SLOT   unknown_closed                       M-7
    OPEN      TEXT             OPEN      append, touch                        M-4
    OPEN      TEXT_FLUSH       OPEN      append, flush, touch                 M-6
    OPEN      VOICELESS        OPEN      missing_voice, touch                 6.1
    OPEN      BLANK            OPEN      touch                                M-4
    OPEN      FLUSH            OPEN      flush, touch                         M-6
    OPEN      CLOSE            CLOSING   flush, touch                         M-7
    CLOSING   TEXT             CLOSING   closing                              M-7
    CLOSING   TEXT_FLUSH       CLOSING   closing                              M-7
    CLOSING   VOICELESS        CLOSING   closing                              M-7
    CLOSING   BLANK            CLOSING   closing                              M-7
    CLOSING   FLUSH            CLOSING   closing                              M-7
    CLOSING   CLOSE            CLOSING   -                                    M-7
    OPEN      CLOSE_IMMEDIATE  ABSENT    cancel, closed_sent, forget          M-7, M-7a
    CLOSING   CLOSE_IMMEDIATE  ABSENT    cancel, closed_sent, forget          M-7, M-7a
    OPEN      TIMER            ABSENT    cancel, timeout, forget              M-10
    OPEN      TIMER_BUSY       OPEN      touch                                M-10
    CLOSING   TIMER            CLOSING   -                                    M-7
    CLOSING   TIMER_BUSY       CLOSING   -                                    M-7
    OPEN      FLUSH_DONE       OPEN      final                                M-6
    CLOSING   FLUSH_DONE       CLOSING   final                                M-6
    CLOSING   LAST_FLUSH_DONE  DRAINING  final, closed                        M-7
    DRAINING  OUTPUT_IDLE      ABSENT    forget                               M-7
    DRAINING  CLOSE_IMMEDIATE  ABSENT    cancel, closed_sent, forget          M-7a
    DRAINING  CLOSE            DRAINING  -                                    M-7
    DRAINING  TEXT             DRAINING  closing                              M-7
    DRAINING  TEXT_FLUSH       DRAINING  closing                              M-7
    DRAINING  VOICELESS        DRAINING  closing                              M-7
    DRAINING  BLANK            DRAINING  closing                              M-7
    DRAINING  FLUSH            DRAINING  closing                              M-7
    DRAINING  TIMER            DRAINING  -                                    M-7
    DRAINING  TIMER_BUSY       DRAINING  -                                    M-7
    OPEN      ERROR            ABSENT    error_frame, cancel, closed, forget  M-12
    CLOSING   ERROR            ABSENT    error_frame, cancel, closed, forget  M-12

``/ws/tts`` (PROTOCOL 4, T-1..T-3)::

    state  event       next  effects          rule
    -----  ----------  ----  ---------------  --------
    IDLE   REQUEST     BUSY  enqueue          T-1, T-2
    BUSY   REQUEST     BUSY  enqueue          T-1, T-2
    IDLE   REFUSAL     IDLE  reply            T-2, T-3
    BUSY   REFUSAL     BUSY  reply            T-2, T-3
    BUSY   DONE        BUSY  final, pay_owed  T-1
    BUSY   LAST_DONE   IDLE  final, pay_owed  T-1
    BUSY   ERROR       BUSY  fail, pay_owed   4.2
    BUSY   LAST_ERROR  IDLE  fail, pay_owed   4.2
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

"""Tests for the sans-I/O wire codec (rxtts.protocol.frames) against PROTOCOL.md.

Every JSON literal below is copied from PROTOCOL.md (frame tables of sections 3-6 and the
transcripts of 4.3, 5.5, 5.6 and 6.7); ``<b64>`` placeholders and ``…`` elisions are
filled with concrete values. Each frame is decoded, its typed fields checked, re-encoded
and compared to the original as JSON (bool-vs-number aware), modulo the normalisations
the codec documents (cfg_scale clamping, chunk_complete rounding, dropped unknown
``voice_settings`` keys, ``score`` default, ``cost_unavailable: false`` omitted).
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rxtts.config import OutputFormat, VoiceSettings
from rxtts.errors import ProtocolError
from rxtts.events import SessionUsage, WordTimestamp
from rxtts.protocol.frames import (
    CONFIG_KEYS,
    MAX_FRAME_BYTES,
    UPDATABLE_SETTINGS,
    AudioFrame,
    CancelFrame,
    ChunkCompleteFrame,
    ClientFrame,
    CloseContextFrame,
    CloseFrame,
    CloseSocketFrame,
    ContextClosedFrame,
    ContextCreatedFrame,
    ContextTimeoutFrame,
    Endpoint,
    ErrorFrame,
    FinalFrame,
    FlushFrame,
    GenerationStartedFrame,
    InterruptedFrame,
    ServerFrame,
    SessionClosedFrame,
    SessionStartedFrame,
    SettingsUpdatedFrame,
    TextFrame,
    TtsRequest,
    UpdateSettingsFrame,
    WarningFrame,
    WireConfig,
    WordTimestampsFrame,
    decode_client_frame,
    decode_server_frames,
    encode,
)

PCM_4800_B = bytes(range(256)) * 18 + bytes(range(192))  # 4800 bytes = 2400 samples
MULAW_800_B = bytes((i * 7) & 0xFF for i in range(800))
B64_PCM = base64.b64encode(PCM_4800_B).decode("ascii")
B64_MULAW = base64.b64encode(MULAW_800_B).decode("ascii")

PROTOCOL_ERROR = "PROTOCOL_ERROR"
VALIDATION_ERROR = "VALIDATION_ERROR"

# -- helpers ----------------------------------------------------------------------------


def _canon(v: Any) -> Any:
    """JSON value with bools kept apart from numbers (``True == 1`` in Python)."""
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, int | float):
        return ("num", float(v))
    if isinstance(v, dict):
        return {k: _canon(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_canon(x) for x in v]
    return v


def assert_json_equiv(actual: str | dict[str, Any], expected: str | dict[str, Any]) -> None:
    a = json.loads(actual) if isinstance(actual, str) else actual
    e = json.loads(expected) if isinstance(expected, str) else expected
    assert _canon(a) == _canon(e)


def client_rt(text: str, endpoint: Endpoint, expected: dict[str, Any] | None = None) -> ClientFrame:
    """Decode, re-encode, compare as JSON, and check the decode of the encoding is equal."""
    frame = decode_client_frame(text, endpoint)
    wire = encode(frame)
    assert_json_equiv(wire, expected if expected is not None else text)
    assert decode_client_frame(wire, endpoint) == frame
    return frame


def server_rt(text: str, expected: dict[str, Any] | None = None) -> ServerFrame:
    """Same for a server frame that decodes to exactly one typed frame."""
    frames = decode_server_frames(text)
    assert len(frames) == 1, frames
    wire = encode(frames[0])
    assert_json_equiv(wire, expected if expected is not None else text)
    assert decode_server_frames(wire) == frames
    return frames[0]


def fill(text: str) -> str:
    """Replace the ``<b64>`` placeholders of PROTOCOL.md with real base64."""
    return text.replace('"<b64>"', json.dumps(B64_PCM)).replace('"<b64 800 B>"', '"' + B64_MULAW + '"')


def expect_error(text: str | bytes, code: str, *endpoints: Endpoint) -> None:
    """Every given endpoint (none = the server decoder) rejects ``text`` with ``code``."""
    calls: list[Callable[[], object]] = [
        functools.partial(decode_client_frame, text, ep) for ep in endpoints
    ] or [functools.partial(decode_server_frames, text)]
    for call in calls:
        with pytest.raises(ProtocolError) as info:
            call()
        assert info.value.error_code == code, (text, info.value)


# -- /ws/tts requests (PROTOCOL 4.1, 4.3) ------------------------------------------------

PY_TTS_REQUEST = (
    '{"text":"Hello world.","model_id":"kugel-3.5","cfg_scale":2.0,"max_new_tokens":2048,'
    '"sample_rate":24000,"normalize":true,"word_timestamps":true,"speed":1.0,"voice_id":7,'
    '"language":"en"}'
)
JS_TTS_REQUEST = (
    '{"text":"Hello world.","model_id":"kugel-3","voice_id":7,"cfg_scale":2,'
    '"max_new_tokens":2048,"sample_rate":24000,"normalize":true,"language":"en",'
    '"word_timestamps":true}'
)


def test_tts_py_request_from_transcript_4_3() -> None:
    frame = client_rt(PY_TTS_REQUEST, Endpoint.TTS)
    assert isinstance(frame, TtsRequest)
    assert frame.text == "Hello world."
    c = frame.config
    assert (c.voice_id, c.model_id, c.language) == (7, "kugel-3.5", "en")
    assert (c.cfg_scale, c.max_new_tokens, c.sample_rate, c.speed) == (2.0, 2048, 24000, 1.0)
    assert c.normalize is True and c.word_timestamps is True
    assert c.temperature is None and c.output_format is None


def test_tts_js_request_integer_cfg_scale_becomes_float() -> None:
    frame = client_rt(JS_TTS_REQUEST, Endpoint.TTS)
    assert isinstance(frame, TtsRequest)
    assert frame.config.model_id == "kugel-3"
    assert frame.config.cfg_scale == 2.0 and isinstance(frame.config.cfg_scale, float)
    assert frame.config.speed is None  # JS omits speed


def test_tts_second_request_with_ulaw_output_format() -> None:
    text = PY_TTS_REQUEST.replace('"Hello world."', '"Hi there."')[:-1] + ',"output_format":"ulaw_8000"}'
    frame = client_rt(text, Endpoint.TTS)
    assert isinstance(frame, TtsRequest)
    assert frame.config.output_format is OutputFormat.ULAW_8000
    # PROTOCOL 8: output_format wins over PY's default sample_rate 24000.
    assert frame.config.sample_rate == 24000
    assert frame.config.effective_format is OutputFormat.ULAW_8000


def test_tts_request_with_every_key_of_table_4_1() -> None:
    text = (
        '{"text":"Hallo.","model_id":"kugel-3.5","voice_id":3,"cfg_scale":1.7,"temperature":0.4,'
        '"max_new_tokens":1024,"sample_rate":16000,"output_format":"pcm_16000","language":"de",'
        '"normalize":false,"word_timestamps":false,"speed":0.9,"project_id":42,'
        '"dictionary_ids":[]}'
    )
    frame = client_rt(text, Endpoint.TTS)
    assert isinstance(frame, TtsRequest)
    c = frame.config
    assert c.temperature == 0.4 and c.project_id == 42 and c.normalize is False
    assert c.dictionary_ids == ()  # PY sends [] and it must survive the round trip
    assert c.output_format is OutputFormat.PCM_16000


def test_tts_cfg_scale_is_clamped_not_rejected() -> None:
    frame = decode_client_frame('{"text":"x","cfg_scale":3.0}', Endpoint.TTS)
    assert isinstance(frame, TtsRequest)
    assert frame.config.cfg_scale == 2.5
    assert json.loads(encode(frame))["cfg_scale"] == 2.5
    low = decode_client_frame('{"text":"x","cfg_scale":0.1}', Endpoint.TTS)
    assert isinstance(low, TtsRequest) and low.config.cfg_scale == 1.2


def test_null_config_values_are_treated_as_absent() -> None:
    frame = client_rt('{"text":"x","voice_id":null,"language":null}', Endpoint.TTS, {"text": "x"})
    assert isinstance(frame, TtsRequest) and frame.config.is_empty()


# -- /ws/tts/stream client frames (PROTOCOL 5.2, 5.5, 5.6, 5.7) ----------------------------

PY_STREAM_FIRST = (
    '{"text":"Hello ","flush":false,"cfg_scale":2.0,"max_new_tokens":2048,"sample_rate":24000,'
    '"flush_timeout_ms":500,"max_buffer_length":1000,"normalize":true,"word_timestamps":false,'
    '"speed":1.0,"voice_id":7,"language":"en"}'
)


def test_stream_py_first_frame_carries_config() -> None:
    frame = client_rt(PY_STREAM_FIRST, Endpoint.STREAM)
    assert isinstance(frame, TextFrame)
    assert frame.text == "Hello " and frame.flush is False and frame.context_id is None
    c = frame.config
    assert (c.voice_id, c.language, c.flush_timeout_ms, c.max_buffer_length) == (7, "en", 500, 1000)
    assert c.word_timestamps is False and c.normalize is True
    assert frame.voice_settings is None


@pytest.mark.parametrize(
    "text",
    [
        '{"text":"there, ","flush":false}',
        '{"text":"how are ","flush":false}',
        '{"text":"I am ","flush":false}',
        '{"text":"Next.","flush":true}',
        '{"text":"","flush":false}',
    ],
)
def test_stream_later_text_frames_carry_no_config(text: str) -> None:
    frame = client_rt(text, Endpoint.STREAM)
    assert isinstance(frame, TextFrame)
    assert frame.text == json.loads(text)["text"]
    assert frame.flush is json.loads(text)["flush"]
    assert frame.config.is_empty()


def test_stream_js_first_frame_only_caller_config() -> None:
    frame = client_rt('{"text":"Hello ","flush":false,"voice_id":1}', Endpoint.STREAM)
    assert isinstance(frame, TextFrame)
    assert frame.config == WireConfig(voice_id=1)


def test_stream_text_without_flush_key_keeps_flush_absent() -> None:
    # Java SDK form: flush only when true (PROTOCOL 5.2).
    frame = client_rt('{"text":"Hi"}', Endpoint.STREAM)
    assert isinstance(frame, TextFrame) and frame.flush is None


def test_stream_bare_flush() -> None:
    frame = client_rt('{"flush":true}', Endpoint.STREAM)
    assert isinstance(frame, FlushFrame)
    assert frame.context_id is None and frame.config.is_empty()


def test_stream_bare_flush_with_config() -> None:
    # PROTOCOL S-1: PY's flush() carries config if it was not sent yet.
    text = (
        '{"flush":true,"cfg_scale":2.0,"max_new_tokens":2048,"sample_rate":24000,'
        '"flush_timeout_ms":500,"max_buffer_length":1000,"normalize":true,'
        '"word_timestamps":false,"speed":1.0,"voice_id":7,"chunk_length_schedule":[50,100,150,250],'
        '"auto_mode":true,"output_format":"alaw_8000"}'
    )
    frame = client_rt(text, Endpoint.STREAM)
    assert isinstance(frame, FlushFrame)
    assert frame.config.voice_id == 7
    assert frame.config.chunk_length_schedule == (50, 100, 150, 250)
    assert frame.config.auto_mode is True
    assert frame.config.output_format is OutputFormat.ALAW_8000


def test_stream_reuse_frame_of_transcript_5_5c() -> None:
    text = (
        '{"text":"Zweiter Satz. ","flush":false,"cfg_scale":2.0,"max_new_tokens":2048,'
        '"sample_rate":24000,"flush_timeout_ms":500,"max_buffer_length":1000,"normalize":true,'
        '"word_timestamps":false,"speed":1.0,"voice_id":9,"language":"de"}'
    )
    frame = client_rt(text, Endpoint.STREAM)
    assert isinstance(frame, TextFrame)
    assert (frame.config.voice_id, frame.config.language) == (9, "de")


def test_stream_barge_in_transcript_5_6() -> None:
    first = PY_STREAM_FIRST.replace(
        '"Hello "', '"This is a long answer that will be interrupted because the user "'
    )
    f1 = client_rt(first, Endpoint.STREAM)
    assert isinstance(f1, TextFrame) and f1.flush is False
    assert isinstance(client_rt('{"cancel":true}', Endpoint.STREAM), CancelFrame)
    again = (
        '{"text":"Sure.","flush":true,"cfg_scale":2.0,"max_new_tokens":2048,"sample_rate":24000,'
        '"flush_timeout_ms":500,"max_buffer_length":1000,"normalize":true,'
        '"word_timestamps":false,"speed":1.0,"voice_id":9,"language":"de"}'
    )
    f3 = client_rt(again, Endpoint.STREAM)
    assert isinstance(f3, TextFrame) and f3.flush is True and f3.config.voice_id == 9


def test_stream_close_end_session_cancel_close_socket() -> None:
    close = client_rt('{"close":true}', Endpoint.STREAM)
    assert close == CloseFrame(alias=False)
    alias = client_rt('{"end_session":true}', Endpoint.STREAM)
    assert alias == CloseFrame(alias=True)  # S-10: alias preserved on re-encode
    assert client_rt('{"cancel":true}', Endpoint.STREAM) == CancelFrame()
    assert client_rt('{"close_socket":true}', Endpoint.STREAM) == CloseSocketFrame()


@pytest.mark.parametrize("endpoint", [Endpoint.STREAM, Endpoint.MULTI])
def test_update_settings_valid(endpoint: Endpoint) -> None:
    frame = client_rt('{"update_settings":{"temperature":0.3,"speed":1.1}}', endpoint)
    assert isinstance(frame, UpdateSettingsFrame)
    assert frame.settings == WireConfig(temperature=0.3, speed=1.1)


def test_update_settings_all_six_keys() -> None:
    text = (
        '{"update_settings":{"cfg_scale":1.5,"temperature":0.0,"speed":0.8,'
        '"max_new_tokens":1,"language":"fr","normalize":false}}'
    )
    frame = client_rt(text, Endpoint.MULTI)
    assert isinstance(frame, UpdateSettingsFrame)
    s = frame.settings
    assert (s.cfg_scale, s.temperature, s.speed, s.max_new_tokens) == (1.5, 0.0, 0.8, 1)
    assert (s.language, s.normalize) == ("fr", False)


@pytest.mark.parametrize("endpoint", [Endpoint.STREAM, Endpoint.MULTI])
@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("{}", VALIDATION_ERROR),  # empty update (PROTOCOL 5.7)
        ('{"voice_id":9}', VALIDATION_ERROR),  # not updatable
        ('{"model_id":"kugel-3"}', VALIDATION_ERROR),
        ('{"sample_rate":16000}', VALIDATION_ERROR),
        ('{"output_format":"pcm_8000"}', VALIDATION_ERROR),
        ('{"project_id":1}', VALIDATION_ERROR),
        ('{"dictionary_ids":[1]}', VALIDATION_ERROR),
        ('{"temperature":1.5}', VALIDATION_ERROR),  # out of range
        ('{"temperature":-0.1}', VALIDATION_ERROR),
        ('{"speed":2.0}', VALIDATION_ERROR),
        ('{"max_new_tokens":0}', VALIDATION_ERROR),
        ('{"max_new_tokens":4096}', VALIDATION_ERROR),
        ('{"temperature":"hot"}', PROTOCOL_ERROR),  # wrong type
        ('{"normalize":1}', PROTOCOL_ERROR),
        ("[]", PROTOCOL_ERROR),
        ('"cfg_scale"', PROTOCOL_ERROR),
        ("null", PROTOCOL_ERROR),
    ],
)
def test_update_settings_rejections(endpoint: Endpoint, body: str, code: str) -> None:
    expect_error('{"update_settings":' + body + "}", code, endpoint)


def test_update_settings_error_message_names_the_key() -> None:
    with pytest.raises(ProtocolError, match="voice_id"):
        decode_client_frame('{"update_settings":{"voice_id":9}}', Endpoint.STREAM)
    with pytest.raises(ProtocolError, match="temperature"):
        decode_client_frame('{"update_settings":{"temperature":1.5}}', Endpoint.STREAM)


def test_update_settings_with_another_key_is_rejected() -> None:
    expect_error('{"update_settings":{"speed":1.0},"text":"x"}', VALIDATION_ERROR, Endpoint.STREAM)


# -- /ws/tts/multi client frames (PROTOCOL 6.2, 6.3, 6.7) ----------------------------------

PY_MULTI_FIRST = (
    '{"text":" ","context_id":"narrator","sample_rate":24000,"normalize":true,'
    '"word_timestamps":true,"language":"en",'
    '"voice_settings":{"voice_id":7,"cfg_scale":2.0,"max_new_tokens":2048}}'
)


def test_multi_py_first_create_frame_with_session_config() -> None:
    frame = client_rt(PY_MULTI_FIRST, Endpoint.MULTI)
    assert isinstance(frame, TextFrame)
    assert frame.text == " " and frame.context_id == "narrator" and frame.flush is None
    assert frame.config == WireConfig(sample_rate=24000, normalize=True, word_timestamps=True, language="en")
    assert frame.voice_settings == VoiceSettings(voice_id=7, cfg_scale=2.0, max_new_tokens=2048)


def test_multi_py_later_create_frame() -> None:
    text = (
        '{"text":" ","context_id":"character",'
        '"voice_settings":{"voice_id":8,"cfg_scale":2.0,"max_new_tokens":2048}}'
    )
    frame = client_rt(text, Endpoint.MULTI)
    assert isinstance(frame, TextFrame)
    assert frame.context_id == "character" and frame.config.is_empty()
    assert frame.voice_settings is not None and frame.voice_settings.voice_id == 8


def test_multi_js_create_frame_extra_voice_settings_and_unknown_keys() -> None:
    text = (
        '{"text":" ","context_id":"narrator","sample_rate":24000,"output_format":"pcm_24000",'
        '"cfg_scale":2,"temperature":0.5,"max_new_tokens":2048,"normalize":true,'
        '"language":"en","project_id":5,"dictionary_ids":[1,2],"inactivity_timeout":20,'
        '"voice_settings":{"voice_id":123,"stability":0.5,"similarity_boost":0.75,"style":0.0,'
        '"use_speaker_boost":true,"speed":1.0,"optimize_streaming_latency":3,"x":null}}'
    )
    expected = json.loads(text)
    # Documented normalisation: unknown voice_settings keys are accepted and dropped (M-2).
    del expected["voice_settings"]["optimize_streaming_latency"], expected["voice_settings"]["x"]
    frame = client_rt(text, Endpoint.MULTI, expected)
    assert isinstance(frame, TextFrame)
    assert frame.config.inactivity_timeout == 20.0 and frame.config.dictionary_ids == (1, 2)
    vs = frame.voice_settings
    assert vs == VoiceSettings(
        voice_id=123,
        stability=0.5,
        similarity_boost=0.75,
        style=0.0,
        use_speaker_boost=True,
        speed=1.0,
    )


def test_multi_js_create_frame_minimal_from_6_7() -> None:
    frame = client_rt(
        '{"text":" ","context_id":"narrator","voice_settings":{"voice_id":123}}', Endpoint.MULTI
    )
    assert isinstance(frame, TextFrame) and frame.voice_settings == VoiceSettings(voice_id=123)


def test_multi_voice_settings_cfg_scale_is_clamped() -> None:
    frame = decode_client_frame(
        '{"text":" ","context_id":"a","voice_settings":{"voice_id":1,"cfg_scale":9}}',
        Endpoint.MULTI,
    )
    assert isinstance(frame, TextFrame) and frame.voice_settings is not None
    assert frame.voice_settings.cfg_scale == 2.5


@pytest.mark.parametrize(
    ("text", "ctx", "flush"),
    [
        ('{"text":"The story begins. It was dark.","context_id":"narrator","flush":true}', "narrator", True),
        ('{"text":"Hello!","context_id":"character","flush":true}', "character", True),
        ('{"text":"Partial text without end","context_id":"narrator","flush":false}', "narrator", False),
        ('{"text":"The story begins.","context_id":"narrator","flush":true}', "narrator", True),
        ('{"text":"zwei, ","context_id":"Xk3aZ9"}', "Xk3aZ9", None),
    ],
)
def test_multi_send_frames(text: str, ctx: str, flush: bool | None) -> None:
    frame = client_rt(text, Endpoint.MULTI)
    assert isinstance(frame, TextFrame)
    assert (frame.context_id, frame.flush) == (ctx, flush)
    assert frame.text == json.loads(text)["text"]


def test_multi_keep_alive() -> None:
    frame = client_rt('{"text":"","context_id":"character"}', Endpoint.MULTI)
    assert frame == TextFrame("", None, "character")


def test_multi_livekit_prep_frame_without_context() -> None:
    # PROTOCOL M-3: must decode, context_id None.
    frame = client_rt('{"text":"","voice_id":268,"model_id":"kugel-3.5"}', Endpoint.MULTI)
    assert isinstance(frame, TextFrame)
    assert frame.context_id is None and frame.text == ""
    assert frame.config == WireConfig(voice_id=268, model_id="kugel-3.5")


def test_multi_livekit_first_text_frame() -> None:
    text = (
        '{"text":"Eins, ","context_id":"Xk3aZ9","model_id":"kugel-3.5","sample_rate":24000,'
        '"word_timestamps":false,"normalize":true,"voice_settings":{"voice_id":268}}'
    )
    frame = client_rt(text, Endpoint.MULTI)
    assert isinstance(frame, TextFrame)
    assert frame.config.model_id == "kugel-3.5" and frame.voice_settings == VoiceSettings(268)


def test_multi_flush() -> None:
    frame = client_rt('{"flush":true,"context_id":"narrator"}', Endpoint.MULTI)
    assert frame == FlushFrame("narrator")


def test_multi_close_context_graceful_and_immediate() -> None:
    graceful = client_rt('{"close_context":true,"context_id":"narrator"}', Endpoint.MULTI)
    assert graceful == CloseContextFrame("narrator", immediate=False)
    now = client_rt('{"close_context":true,"context_id":"character","immediate":true}', Endpoint.MULTI)
    assert now == CloseContextFrame("character", immediate=True)
    # "immediate": false is the graceful form; it is normalised away on re-encode.
    explicit = client_rt(
        '{"close_context":true,"context_id":"c","immediate":false}',
        Endpoint.MULTI,
        {"close_context": True, "context_id": "c"},
    )
    assert explicit == CloseContextFrame("c")


def test_multi_close_socket_and_update_settings_from_6_7() -> None:
    assert client_rt('{"close_socket":true}', Endpoint.MULTI) == CloseSocketFrame()
    upd = client_rt('{"update_settings":{"cfg_scale":1.5}}', Endpoint.MULTI)
    assert upd == UpdateSettingsFrame(WireConfig(cfg_scale=1.5))


def test_multi_cap_transcript_create_frames() -> None:
    for i in range(21):
        text = (
            f'{{"text":" ","context_id":"c{i}",'
            '"voice_settings":{"voice_id":7,"cfg_scale":2.0,"max_new_tokens":2048}}'
        )
        frame = client_rt(text, Endpoint.MULTI)
        assert isinstance(frame, TextFrame) and frame.context_id == f"c{i}"


# -- server frames (PROTOCOL 3, 4.3, 5.4, 5.5, 5.7, 6.4, 6.6, 6.7) -------------------------


def test_audio_frame_of_section_3_2() -> None:
    text = fill(
        '{"audio": "<b64>", "enc": "pcm_s16le", "idx": 0, "sr": 24000, "samples": 4800, '
        '"chunk_id": 0, "context_id": "ctx1"}'
    )
    frame = server_rt(text)
    assert frame == AudioFrame(PCM_4800_B, "pcm_s16le", 0, 24000, 4800, 0, "ctx1")


def test_audio_frames_of_tts_transcript() -> None:
    pcm = server_rt(fill('{"audio":"<b64>","enc":"pcm_s16le","idx":4,"sr":24000,"samples":1920}'))
    assert isinstance(pcm, AudioFrame)
    assert (pcm.idx, pcm.samples, pcm.chunk_id, pcm.context_id) == (4, 1920, None, None)
    mulaw = server_rt(fill('{"audio":"<b64 800 B>","enc":"mulaw","idx":0,"sr":8000,"samples":800}'))
    assert isinstance(mulaw, AudioFrame)
    assert (mulaw.audio, mulaw.enc, mulaw.sr) == (MULAW_800_B, "mulaw", 8000)
    alaw = server_rt(fill('{"audio":"<b64 800 B>","enc":"alaw","idx":1,"sr":8000,"samples":800}'))
    assert isinstance(alaw, AudioFrame) and alaw.enc == "alaw"


def test_audio_frame_of_multi_transcript() -> None:
    text = fill(
        '{"audio":"<b64>","enc":"pcm_s16le","idx":0,"sr":24000,"samples":2400,'
        '"context_id":"narrator","chunk_id":0}'
    )
    frame = server_rt(text)
    assert isinstance(frame, AudioFrame) and frame.context_id == "narrator"


def test_audio_frame_without_enc_defaults_to_pcm() -> None:
    text = fill('{"audio":"<b64>","idx":0,"sr":24000,"samples":2400}')
    expected = json.loads(text) | {"enc": "pcm_s16le"}
    frame = server_rt(text, expected)
    assert isinstance(frame, AudioFrame) and frame.enc == "pcm_s16le"


def test_empty_audio_decodes_to_empty_bytes() -> None:
    (frame,) = decode_server_frames('{"audio":"","enc":"pcm_s16le","idx":0,"sr":24000,"samples":0}')
    assert isinstance(frame, AudioFrame) and frame.audio == b""


WORDS_4_3 = (
    '[{"word":"Hello","start_ms":0,"end_ms":200,"char_start":0,"char_end":5,"score":1.0},'
    '{"word":"world.","start_ms":240,"end_ms":480,"char_start":6,"char_end":12,"score":1.0}]'
)


def test_word_timestamps_of_tts_transcript() -> None:
    frame = server_rt('{"word_timestamps":' + WORDS_4_3 + "}")
    assert isinstance(frame, WordTimestampsFrame)
    assert frame.words == (
        WordTimestamp("Hello", 0, 200, 0, 5, 1.0),
        WordTimestamp("world.", 240, 480, 6, 12, 1.0),
    )
    assert frame.chunk_id is None and frame.context_id is None


def test_word_timestamps_of_section_3_3() -> None:
    text = (
        '{"word_timestamps": [{"word": "Hello", "start_ms": 0, "end_ms": 300, "char_start": 0, '
        '"char_end": 5, "score": 0.95}], "chunk_id": 0, "context_id": "ctx-a"}'
    )
    frame = server_rt(text)
    assert frame == WordTimestampsFrame((WordTimestamp("Hello", 0, 300, 0, 5, 0.95),), 0, "ctx-a")


def test_word_timestamp_score_defaults_to_one() -> None:
    text = '{"word_timestamps":[{"word":"Hi","start_ms":0,"end_ms":90,"char_start":0,"char_end":2}]}'
    expected = json.loads(text)
    expected["word_timestamps"][0]["score"] = 1.0  # PROTOCOL 3.3: default 1.0, never null
    frame = server_rt(text, expected)
    assert isinstance(frame, WordTimestampsFrame) and frame.words[0].score == 1.0


def test_combined_audio_and_word_timestamps_give_two_frames() -> None:
    text = fill(
        '{"audio":"<b64>","enc":"pcm_s16le","idx":3,"sr":24000,"samples":2400,"chunk_id":1,'
        '"context_id":"narrator","word_timestamps":' + WORDS_4_3 + "}"
    )
    frames = decode_server_frames(text)
    assert [type(f) for f in frames] == [AudioFrame, WordTimestampsFrame]
    audio, words = frames
    assert isinstance(audio, AudioFrame) and isinstance(words, WordTimestampsFrame)
    assert (audio.idx, audio.chunk_id, audio.context_id) == (3, 1, "narrator")
    assert (words.chunk_id, words.context_id, len(words.words)) == (1, "narrator", 2)
    merged = json.loads(encode(audio)) | json.loads(encode(words))
    assert_json_equiv(merged, text)


def test_generation_started_stream_and_multi() -> None:
    s = server_rt('{"generation_started":true,"chunk_id":0,"text":"Hello there, how are you?"}')
    assert s == GenerationStartedFrame(0, "Hello there, how are you?")
    m = server_rt(
        '{"generation_started":true,"context_id":"narrator","chunk_id":0,"text":"The story begins."}'
    )
    assert m == GenerationStartedFrame(0, "The story begins.", "narrator")


def test_chunk_complete_frames() -> None:
    a = server_rt('{"chunk_complete":true,"chunk_id":0,"audio_seconds":1.0,"gen_ms":117.6}')
    assert a == ChunkCompleteFrame(0, 1.0, 117.6)
    b = server_rt('{"chunk_complete": true, "chunk_id": 0, "audio_seconds": 1.0, "gen_ms": 100}')
    assert isinstance(b, ChunkCompleteFrame) and b.gen_ms == 100.0
    c = server_rt(
        '{"chunk_complete":true,"context_id":"narrator","chunk_id":0,"audio_seconds":0.68,"gen_ms":1.0}'
    )
    assert c == ChunkCompleteFrame(0, 0.68, 1.0, "narrator")
    d = server_rt('{"chunk_complete":true,"chunk_id":1,"audio_seconds":0.36,"gen_ms":45.3}')
    assert isinstance(d, ChunkCompleteFrame) and d.chunk_id == 1


def test_chunk_complete_encode_rounds_gen_ms_and_audio_seconds() -> None:
    frame = ChunkCompleteFrame(2, 0.123456789, 45.6789)
    assert json.loads(encode(frame)) == {
        "chunk_complete": True,
        "chunk_id": 2,
        "audio_seconds": 0.1235,
        "gen_ms": 45.68,
    }


USAGE_4_3 = (
    '{"audio_seconds":0.48,"characters":12,"cost_cents":0.048,"currency":"eur","model_id":"kugel-3.5"}'
)


def test_final_of_tts_with_stats_and_usage() -> None:
    text = (
        '{"final":true,"chunks":5,"total_samples":11520,"dur_ms":480.0,"gen_ms":60.7,'
        '"ttfa_ms":5.0,"rtf":0.126,"usage":' + USAGE_4_3 + "}"
    )
    frame = server_rt(text)
    assert isinstance(frame, FinalFrame)
    assert dict(frame.stats) == {
        "chunks": 5,
        "total_samples": 11520,
        "dur_ms": 480.0,
        "gen_ms": 60.7,
        "ttfa_ms": 5.0,
        "rtf": 0.126,
    }
    assert frame.usage == SessionUsage(0.48, 12, 0.048, "eur", "kugel-3.5")
    assert frame.context_id is None and frame.total_audio_seconds is None


def test_final_of_section_4_2() -> None:
    text = (
        '{"final": true, "chunks": 5, "total_samples": 11520, "dur_ms": 480.0, "gen_ms": 60.7, '
        '"ttfa_ms": 30, "rtf": 0.13, "usage": {"audio_seconds": 5.4, "characters": 142, '
        '"cost_cents": 0.49, "currency": "eur", "model_id": "kugel-3", "cost_unavailable": false}}'
    )
    expected = json.loads(text)
    del expected["usage"]["cost_unavailable"]  # false is the default and omitted on encode
    frame = server_rt(text, expected)
    assert isinstance(frame, FinalFrame) and frame.usage is not None
    assert frame.usage.cost_unavailable is False and frame.stats["ttfa_ms"] == 30


def test_final_of_stream_totals() -> None:
    frame = server_rt(
        '{"final":true,"total_audio_seconds":1.36,"total_text_chunks":2,"total_audio_chunks":14}'
    )
    assert frame == FinalFrame(None, 1.36, 2, 14)


def test_final_of_multi_context() -> None:
    frame = server_rt('{"final":true,"context_id":"narrator"}')
    assert frame == FinalFrame("narrator")


def test_session_closed_with_usage() -> None:
    text = (
        '{"session_closed":true,"total_audio_seconds":1.36,"total_text_chunks":2,'
        '"total_audio_chunks":14,"usage":{"audio_seconds":1.36,"characters":35,"cost_cents":0.136,'
        '"currency":"eur","model_id":"kugel-3"}}'
    )
    frame = server_rt(text)
    assert isinstance(frame, SessionClosedFrame)
    assert (frame.total_audio_seconds, frame.total_text_chunks, frame.total_audio_chunks) == (
        1.36,
        2,
        14,
    )
    assert frame.usage == SessionUsage(1.36, 35, 0.136, "eur", "kugel-3")


@pytest.mark.parametrize(
    "text",
    [
        '{"session_closed": true, "total_audio_seconds": 1.8, "total_text_chunks": 2, '
        '"total_audio_chunks": 4}',
        '{"session_closed": true, "total_audio_seconds": 6.1}',
        '{"session_closed":true}',
    ],
)
def test_session_closed_variants(text: str) -> None:
    frame = server_rt(text)
    assert isinstance(frame, SessionClosedFrame) and frame.usage is None
    assert frame.total_audio_seconds == json.loads(text).get("total_audio_seconds")


def test_usage_with_unavailable_cost() -> None:
    text = (
        '{"session_closed":true,"usage":{"audio_seconds":2.0,"characters":10,"cost_cents":null,'
        '"cost_unavailable":true}}'
    )
    frame = server_rt(text)
    assert isinstance(frame, SessionClosedFrame) and frame.usage is not None
    assert frame.usage.cost_cents is None and frame.usage.cost_unavailable is True


def test_interrupted_settings_updated_warning() -> None:
    assert server_rt('{"interrupted":true}') == InterruptedFrame()
    upd = server_rt('{"settings_updated":true,"settings":{"cfg_scale":1.5}}')
    assert upd == SettingsUpdatedFrame({"cfg_scale": 1.5})
    six = (
        '{"settings_updated":true,"settings":{"cfg_scale":2.0,"temperature":0.3,"speed":1.1,'
        '"max_new_tokens":null,"language":null,"normalize":null}}'
    )
    full = server_rt(six)
    assert isinstance(full, SettingsUpdatedFrame) and full.settings["language"] is None
    warn = server_rt('{"warning":"Turn ended after 5 s without text; send {\\"flush\\": true} to end turns"}')
    assert isinstance(warn, WarningFrame) and '{"flush": true}' in warn.message


def test_multi_lifecycle_frames() -> None:
    assert server_rt('{"session_started": true, "session_id": "s-1"}') == SessionStartedFrame("s-1")
    assert server_rt('{"context_created":true,"context_id":"narrator"}') == ContextCreatedFrame("narrator")
    closed = server_rt(
        '{"context_closed":true,"context_id":"narrator","usage":{"audio_seconds":1.16,'
        '"characters":30,"cost_cents":0.116,"currency":"eur","model_id":"kugel-3"}}'
    )
    assert closed == ContextClosedFrame("narrator", SessionUsage(1.16, 30, 0.116, "eur", "kugel-3"))
    zero = server_rt(
        '{"context_closed":true,"context_id":"c0","usage":{"audio_seconds":0.0,"characters":0,'
        '"cost_cents":0.0,"currency":"eur","model_id":"kugel-3"}}'
    )
    assert isinstance(zero, ContextClosedFrame) and zero.usage is not None
    assert zero.usage.cost_cents == 0.0  # a real 0, not None
    for ctx in ("character", "narrator"):
        timeout = server_rt(f'{{"context_timeout":true,"context_id":"{ctx}"}}')
        assert timeout == ContextTimeoutFrame(ctx)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"error": "voice_id is required", "error_code": "MISSING_VOICE_ID", "code": 400, '
            '"retry_after": 5, "request_id": "req-9f2", "context_id": "ctx1"}',
            ErrorFrame("voice_id is required", "MISSING_VOICE_ID", 400, 5, "req-9f2", "ctx1"),
        ),
        (
            '{"error":"Too many concurrent contexts","error_code":"TOO_MANY_CONTEXTS","code":429,'
            '"context_id":"c20"}',
            ErrorFrame("Too many concurrent contexts", "TOO_MANY_CONTEXTS", 429, None, None, "c20"),
        ),
        (
            '{"error":"Invalid settings update: cfg_scale: out of range",'
            '"error_code":"VALIDATION_ERROR","code":400}',
            ErrorFrame("Invalid settings update: cfg_scale: out of range", "VALIDATION_ERROR", 400),
        ),
        ('{"error":"boom"}', ErrorFrame("boom")),
    ],
)
def test_error_frames(text: str, expected: ErrorFrame) -> None:
    assert server_rt(text) == expected


# -- server dispatch rules (PROTOCOL 3.1) -----------------------------------------------


def test_error_marker_wins_over_every_other_marker() -> None:
    (frame,) = decode_server_frames('{"error":"x","final":true,"audio":"","idx":0,"sr":1,"samples":0}')
    assert frame == ErrorFrame("x")


def test_falsy_markers_are_not_markers() -> None:
    (frame,) = decode_server_frames('{"error":"","final":true,"context_id":"a"}')
    assert frame == FinalFrame("a")
    (frame,) = decode_server_frames('{"error":null,"final":false,"interrupted":true}')
    assert frame == InterruptedFrame()
    expect_error('{"final":false}', PROTOCOL_ERROR)


def test_server_frames_ignore_unknown_keys() -> None:
    (frame,) = decode_server_frames('{"final":true,"context_id":"a","server_time":17,"x":[1]}')
    assert frame == FinalFrame("a")
    (frame,) = decode_server_frames('{"interrupted":true,"reason":"barge-in"}')
    assert frame == InterruptedFrame()


def test_settings_updated_with_non_object_settings_is_empty() -> None:
    (frame,) = decode_server_frames('{"settings_updated":true,"settings":"ok"}')
    assert frame == SettingsUpdatedFrame({})


def test_retry_after_float_is_truncated_to_int() -> None:
    (frame,) = decode_server_frames('{"error":"slow down","retry_after":2.5}')
    assert isinstance(frame, ErrorFrame) and frame.retry_after == 2


# -- strictness: shape (PROTOCOL_ERROR) and values (VALIDATION_ERROR) ----------------------

ALL = (Endpoint.TTS, Endpoint.STREAM, Endpoint.MULTI)


@pytest.mark.parametrize(
    "data",
    [
        b'{"text":"hi"}',  # binary frame (G-4)
        "",
        "not json",
        '{"text":"hi"',
        "{'text': 'hi'}",
        "[]",
        '["text"]',
        '"text"',
        "42",
        "null",
        "true",
        "[" * 100_000 + "]" * 100_000,  # deep nesting must not escape as RecursionError
    ],
)
def test_not_a_json_object_is_protocol_error(data: str | bytes) -> None:
    expect_error(data, PROTOCOL_ERROR, *ALL)
    expect_error(data, PROTOCOL_ERROR)


def test_frame_over_one_mib_is_rejected() -> None:
    pad = MAX_FRAME_BYTES  # text alone makes the frame exceed the limit
    big = '{"text":"' + "a" * pad + '"}'
    assert len(big.encode()) > 1 << 20
    expect_error(big, PROTOCOL_ERROR, *ALL)
    expect_error('{"warning":"' + "a" * pad + '"}', PROTOCOL_ERROR)


def test_frame_just_under_one_mib_is_accepted() -> None:
    head, tail = '{"text":"', '"}'
    ok = head + "a" * (MAX_FRAME_BYTES - len(head) - len(tail) - 1) + tail
    assert len(ok.encode()) < 1 << 20
    frame = decode_client_frame(ok, Endpoint.TTS)
    assert isinstance(frame, TtsRequest) and len(frame.text) == len(ok) - 11


@pytest.mark.parametrize(
    ("text", "endpoints"),
    [
        ('{"text":"x","colour":"red"}', ALL),
        ('{"text":"x","voice":7}', ALL),
        ('{"text":"x","flush":true}', (Endpoint.TTS,)),  # flush is not a tts key
        ('{"text":"x","context_id":"a"}', (Endpoint.TTS, Endpoint.STREAM)),
        ('{"text":"x","voice_settings":{"voice_id":1}}', (Endpoint.TTS, Endpoint.STREAM)),
        ('{"cancel":true}', (Endpoint.MULTI,)),
        ('{"close":true}', (Endpoint.MULTI,)),
        ('{"close_context":true,"context_id":"a"}', (Endpoint.STREAM,)),
        ('{"update_settings":{"speed":1.0}}', (Endpoint.TTS,)),
        ('{"cancel":true,"text":"x"}', (Endpoint.STREAM,)),
        ('{"close":true,"flush":true}', (Endpoint.STREAM,)),
        ('{"close_socket":true,"context_id":"a"}', (Endpoint.MULTI,)),
        ('{"close_context":true,"context_id":"a","text":"x"}', (Endpoint.MULTI,)),
    ],
)
def test_unknown_top_level_keys_are_rejected(text: str, endpoints: tuple[Endpoint, ...]) -> None:
    # rxtts classifies unknown keys as VALIDATION_ERROR (the code of PROTOCOL 5.7 for
    # non-updatable keys); see the report if PROTOCOL_ERROR is preferred.
    expect_error(text, VALIDATION_ERROR, *endpoints)


@pytest.mark.parametrize(
    ("text", "endpoints"),
    [
        ('{"text":5}', ALL),
        ('{"text":null}', ALL),
        ('{"text":["a"]}', ALL),
        ('{"voice_id":7}', ALL),  # no marker key at all
        ('{"text":"x","flush":"yes"}', (Endpoint.STREAM, Endpoint.MULTI)),
        ('{"text":"x","flush":1}', (Endpoint.STREAM, Endpoint.MULTI)),
        ('{"flush":"yes"}', (Endpoint.STREAM,)),
        ('{"text":"x","voice_id":1.5}', ALL),
        ('{"text":"x","voice_id":true}', ALL),
        ('{"text":"x","voice_id":"7"}', ALL),
        ('{"text":"x","cfg_scale":"2"}', ALL),
        ('{"text":"x","cfg_scale":true}', ALL),
        ('{"text":"x","cfg_scale":NaN}', ALL),
        ('{"text":"x","temperature":Infinity}', ALL),
        ('{"text":"x","speed":-Infinity}', ALL),
        ('{"text":"x","max_new_tokens":2048.0}', ALL),
        ('{"text":"x","normalize":"true"}', ALL),
        ('{"text":"x","word_timestamps":0}', ALL),
        ('{"text":"x","language":7}', ALL),
        ('{"text":"x","model_id":null,"sample_rate":"24000"}', ALL),
        ('{"text":"x","output_format":24000}', ALL),
        ('{"text":"x","chunk_length_schedule":"80,150"}', ALL),
        ('{"text":"x","chunk_length_schedule":[80,150.5]}', ALL),
        ('{"text":"x","dictionary_ids":[1,"2"]}', ALL),
        ('{"text":"x","dictionary_ids":{"a":1}}', ALL),
        ('{"text":"x","project_id":true}', ALL),
        ('{"text":"x","auto_mode":"yes"}', ALL),
        ('{"close_context":true}', (Endpoint.MULTI,)),  # context_id missing
        ('{"close_context":true,"context_id":7}', (Endpoint.MULTI,)),
        ('{"close_context":true,"context_id":"a","immediate":"yes"}', (Endpoint.MULTI,)),
        ('{"flush":true}', (Endpoint.MULTI,)),  # multi flush needs a context
        ('{"flush":false,"context_id":"a"}', (Endpoint.MULTI,)),
        ('{"flush":false}', (Endpoint.STREAM,)),
        ('{"text":"x","context_id":5}', (Endpoint.MULTI,)),
        ('{"text":" ","context_id":"a","voice_settings":[7]}', (Endpoint.MULTI,)),
        ('{"text":" ","context_id":"a","voice_settings":{"voice_id":"7"}}', (Endpoint.MULTI,)),
        ('{"text":" ","context_id":"a","voice_settings":{"voice_id":7.5}}', (Endpoint.MULTI,)),
        ('{"text":" ","context_id":"a","voice_settings":{"cfg_scale":NaN}}', (Endpoint.MULTI,)),
        (
            '{"text":" ","context_id":"a","voice_settings":{"use_speaker_boost":1}}',
            (Endpoint.MULTI,),
        ),
        ('{"update_settings":[]}', (Endpoint.STREAM, Endpoint.MULTI)),
    ],
)
def test_wrong_shapes_and_types_are_protocol_errors(text: str, endpoints: tuple[Endpoint, ...]) -> None:
    expect_error(text, PROTOCOL_ERROR, *endpoints)


@pytest.mark.parametrize(
    ("text", "endpoints"),
    [
        ('{"text":"x","chunk_length_schedule":[]}', ALL),
        ('{"text":"x","chunk_length_schedule":[150,80]}', ALL),
        ('{"text":"x","chunk_length_schedule":[80,80,250]}', ALL),
        ('{"text":"x","chunk_length_schedule":[0,80]}', ALL),
        ('{"text":"x","output_format":"mp3_44100"}', ALL),
        ('{"text":"x","output_format":"PCM_24000"}', ALL),
        ('{"text":"x","sample_rate":44100}', ALL),
        ('{"text":"x","temperature":1.01}', ALL),
        ('{"text":"x","speed":2.0}', ALL),
        ('{"text":"x","speed":0.5}', ALL),
        ('{"text":"x","max_new_tokens":0}', ALL),
        ('{"text":"x","flush_timeout_ms":0}', ALL),
        ('{"text":"x","max_buffer_length":-5}', ALL),
        ('{"text":"x","inactivity_timeout":0}', ALL),
        ('{"close_context":true,"context_id":""}', (Endpoint.MULTI,)),
        ('{"text":"x","context_id":""}', (Endpoint.MULTI,)),
        ('{"text":"x","context_id":"' + "c" * 257 + '"}', (Endpoint.MULTI,)),
        ('{"flush":true,"context_id":""}', (Endpoint.MULTI,)),
        (
            '{"text":" ","context_id":"a","voice_settings":{"max_new_tokens":5000}}',
            (Endpoint.MULTI,),
        ),
    ],
)
def test_bad_values_are_validation_errors(text: str, endpoints: tuple[Endpoint, ...]) -> None:
    expect_error(text, VALIDATION_ERROR, *endpoints)


def test_validation_error_message_names_the_field() -> None:
    cases = {
        '{"text":"x","chunk_length_schedule":[150,80]}': "chunk_length_schedule",
        '{"text":"x","output_format":"mp3_44100"}': "output_format",
        '{"text":"x","temperature":1.5}': "temperature",
        '{"text":"x","voice_id":1.5}': "voice_id",
        '{"text":"x","flush":"yes"}': "flush",
    }
    for text, name in cases.items():
        with pytest.raises(ProtocolError, match=name):
            decode_client_frame(text, Endpoint.STREAM)


def test_context_id_of_256_characters_is_accepted() -> None:
    frame = decode_client_frame('{"text":"x","context_id":"' + "c" * 256 + '"}', Endpoint.MULTI)
    assert isinstance(frame, TextFrame) and frame.context_id == "c" * 256


@pytest.mark.parametrize(
    "text",
    [
        '{"audio":"AAAA","sr":24000,"samples":2}',  # idx missing (PY KeyError, G-8)
        '{"audio":"AAAA","idx":0,"samples":2}',
        '{"audio":"AAAA","idx":0,"sr":24000}',
        '{"audio":"AAAA","idx":"0","sr":24000,"samples":2}',
        '{"audio":"AAAA","idx":0,"sr":24000.0,"samples":2}',
        '{"audio":"not base64!","idx":0,"sr":24000,"samples":2}',
        '{"audio":"AAA","idx":0,"sr":24000,"samples":2}',  # bad padding
        '{"audio":7,"idx":0,"sr":24000,"samples":2}',
        '{"audio":"AAAA","enc":"opus","idx":0,"sr":24000,"samples":2}',
        '{"audio":"AAAA","idx":0,"sr":24000,"samples":2,"context_id":5}',
        '{"word_timestamps":"Hello"}',
        '{"word_timestamps":{"word":"Hello"}}',
        '{"word_timestamps":[7]}',
        '{"word_timestamps":[{"start_ms":0,"end_ms":1,"char_start":0,"char_end":1}]}',
        '{"word_timestamps":[{"word":"a","end_ms":1,"char_start":0,"char_end":1}]}',
        '{"word_timestamps":[{"word":"a","start_ms":0.5,"end_ms":1,"char_start":0,"char_end":1}]}',
        '{"word_timestamps":[{"word":"a","start_ms":0,"end_ms":1,"char_start":0,"char_end":1,'
        '"score":"high"}]}',
        '{"chunk_complete":true,"chunk_id":"0"}',
        '{"chunk_complete":true,"gen_ms":NaN}',
        '{"final":true,"total_audio_chunks":1.5}',
        '{"final":true,"usage":[1]}',
        '{"final":true,"usage":{"audio_seconds":"1"}}',
        '{"final":true,"usage":{"audio_seconds":1,"characters":2.5}}',
        '{"session_closed":true,"total_audio_seconds":"1"}',
        '{"context_closed":true}',
        '{"context_timeout":true}',
        '{"context_created":true,"context_id":null}',
        '{"session_started":true,"session_id":5}',
        '{"error":"x","code":"400"}',
        '{"error":"x","retry_after":Infinity}',
        '{"error":"x","error_code":5}',
        '{"generation_started":true,"chunk_id":0,"text":5}',
        '{"frobnicate":true}',
        "{}",
    ],
)
def test_bad_server_frames_are_protocol_errors(text: str) -> None:
    expect_error(text, PROTOCOL_ERROR)


# -- regressions of fuzzing findings F1-F5 (fixed in frames.py) ---------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"text":"x","cfg_scale":1' + "0" * 400 + "}",
        '{"text":"x","temperature":1' + "0" * 400 + "}",
        '{"text":" ","context_id":"a","voice_settings":{"cfg_scale":1' + "0" * 400 + "}}",
    ],
)
def test_finding_f1_huge_int_in_client_number_field(text: str) -> None:
    for endpoint in ALL:
        with pytest.raises(ProtocolError):
            decode_client_frame(text, endpoint)


@pytest.mark.parametrize(
    "text",
    [
        '{"final":true,"total_audio_seconds":1' + "0" * 400 + "}",
        '{"chunk_complete":true,"gen_ms":1' + "0" * 400 + "}",
        '{"error":"x","retry_after":1' + "0" * 400 + "}",
        '{"final":true,"dur_ms":1' + "0" * 400 + "}",
    ],
)
def test_finding_f1_huge_int_in_server_number_field(text: str) -> None:
    with pytest.raises(ProtocolError):
        decode_server_frames(text)


def test_finding_f2_frame_limit_counts_utf8_bytes() -> None:
    text = '{"text":"' + "é" * 600_000 + '"}'  # 600k characters, 1.2 MB of UTF-8
    assert len(text) < MAX_FRAME_BYTES < len(text.encode())
    with pytest.raises(ProtocolError):
        decode_client_frame(text, Endpoint.TTS)


def test_finding_f3_lone_surrogate_text_is_rejected_or_sendable() -> None:
    try:
        frame = decode_client_frame('{"text":"a\\ud800b","flush":true}', Endpoint.STREAM)
    except ProtocolError:
        return
    encode(frame).encode("utf-8")  # what websockets does before sending a str


@pytest.mark.parametrize("endpoint", [Endpoint.STREAM, Endpoint.MULTI])
def test_finding_f4_update_settings_with_only_nulls_is_empty(endpoint: Endpoint) -> None:
    # PROTOCOL 5.7: empty updates are refused; nulls are "absent", so this one is empty and
    # its own re-encoding {"update_settings":{}} is already rejected by the decoder.
    expect_error('{"update_settings":{"cfg_scale":null}}', VALIDATION_ERROR, endpoint)


def test_finding_f5_chunk_complete_reencode_is_a_fixed_point() -> None:
    (frame,) = decode_server_frames('{"chunk_complete":true,"chunk_id":0,"audio_seconds":-1e-9}')
    wire = encode(frame)
    (again,) = decode_server_frames(wire)
    assert encode(again) == wire


# -- encoders built from dataclasses ---------------------------------------------------


def test_encode_builds_every_client_frame() -> None:
    cases: list[tuple[ClientFrame, dict[str, Any]]] = [
        (TtsRequest("a", WireConfig(voice_id=1)), {"text": "a", "voice_id": 1}),
        (TextFrame("b", True, "c1"), {"text": "b", "flush": True, "context_id": "c1"}),
        (FlushFrame("c1"), {"flush": True, "context_id": "c1"}),
        (FlushFrame(), {"flush": True}),
        (CloseFrame(), {"close": True}),
        (CloseFrame(alias=True), {"end_session": True}),
        (CancelFrame(), {"cancel": True}),
        (UpdateSettingsFrame(WireConfig(speed=1.1)), {"update_settings": {"speed": 1.1}}),
        (CloseContextFrame("c1", True), {"close_context": True, "context_id": "c1", "immediate": True}),
        (CloseSocketFrame(), {"close_socket": True}),
        (
            TextFrame(" ", None, "c", WireConfig(output_format=OutputFormat.ULAW_8000), VoiceSettings(5)),
            {"text": " ", "context_id": "c", "output_format": "ulaw_8000", "voice_settings": {"voice_id": 5}},
        ),
    ]
    for frame, expected in cases:
        assert_json_equiv(encode(frame), expected)


def test_encoded_frames_are_compact_single_objects() -> None:
    wire = encode(TextFrame("Grüße", False))
    assert "\n" not in wire and ": " not in wire
    assert "Grüße" in wire  # not \u-escaped
    assert json.loads(wire) == {"text": "Grüße", "flush": False}


def test_wire_config_merge_and_effective_format() -> None:
    base = WireConfig(voice_id=1, sample_rate=16000, language="en")
    newer = WireConfig(language="de", speed=1.1)
    merged = base.merged(newer)
    assert merged == WireConfig(voice_id=1, sample_rate=16000, language="de", speed=1.1)
    assert base.merged(WireConfig()) is base
    assert base.effective_format is OutputFormat.PCM_16000
    assert WireConfig().effective_format is OutputFormat.PCM_24000
    assert WireConfig(sample_rate=24000, output_format=OutputFormat.ULAW_8000).effective_format is (
        OutputFormat.ULAW_8000
    )


# -- fuzzing: decoders raise nothing but ProtocolError ----------------------------------

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

CLIENT_VOCAB = sorted(
    CONFIG_KEYS
    | {"flush", "close", "end_session", "cancel", "update_settings", "close_context"}
    | {"immediate", "close_socket", "context_id", "voice_settings"}
)
VOCAB = sorted(
    CONFIG_KEYS
    | {
        "text", "flush", "close", "end_session", "cancel", "update_settings", "close_context",
        "immediate", "close_socket", "context_id", "voice_settings", "stability",
        "similarity_boost", "style", "use_speaker_boost", "audio", "enc", "idx", "sr",
        "samples", "chunk_id", "word_timestamps", "word", "start_ms", "end_ms", "char_start",
        "char_end", "score", "generation_started", "chunk_complete", "audio_seconds", "gen_ms",
        "final", "total_audio_seconds", "total_text_chunks", "total_audio_chunks", "chunks",
        "total_samples", "dur_ms", "rtf", "ttfa_ms", "usage", "characters", "cost_cents",
        "currency", "cost_unavailable", "session_closed", "interrupted", "settings_updated",
        "settings", "warning", "session_started", "session_id", "context_created",
        "context_closed", "context_timeout", "error", "error_code", "code", "retry_after",
        "request_id",
    }
)  # fmt: skip

HUGE_INTS = st.integers(min_value=2**1024, max_value=2**1100) | st.integers(
    min_value=-(2**1100), max_value=-(2**1024)
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | HUGE_INTS
    | st.floats()  # includes NaN and +-Infinity, which json.dumps writes as NaN/Infinity
    | st.text(max_size=20)
)
INTERESTING = st.sampled_from(
    [
        True, False, 0, 1, 7, -1, 2048, 24000, 8000, 0.5, 1.0, 2.0, 1.5, "", " ", "a",
        "narrator", "pcm_24000", "ulaw_8000", "mulaw", "alaw", "pcm_s16le", "AAAA", "kugel-3",
        "en", [], [80, 150, 250], [150, 80], [1, 2], {},
    ]
)  # fmt: skip
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _vocab_dicts(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(VOCAB), leaf, max_size=8)


VOCAB_VALUES = st.recursive(
    SCALARS | INTERESTING,
    lambda inner: st.lists(inner, max_size=3) | _vocab_dicts(inner),
    max_leaves=12,
)
VOCAB_FRAMES = _vocab_dicts(VOCAB_VALUES | INTERESTING)


def _dump(obj: Any) -> str:
    return json.dumps(obj, allow_nan=True)


def _check_client(data: str | bytes) -> None:
    for endpoint in ALL:
        try:
            frame = decode_client_frame(data, endpoint)
        except ProtocolError as exc:
            assert exc.error_code in (PROTOCOL_ERROR, VALIDATION_ERROR)
            continue
        # Accepted frames re-encode to a fixed point that decodes to the same frame.
        wire = encode(frame)
        again = decode_client_frame(wire, endpoint)
        assert again == frame
        assert encode(again) == wire


def _check_server(data: str | bytes) -> None:
    try:
        frames = decode_server_frames(data)
    except ProtocolError as exc:
        assert exc.error_code in (PROTOCOL_ERROR, VALIDATION_ERROR)
        return
    assert 1 <= len(frames) <= 2
    for frame in frames:
        wire = encode(frame)
        (again,) = decode_server_frames(wire)
        assert type(again) is type(frame)
        rewire = encode(again)
        # Same text, or equal values where only the sign of a zero differs (FINDING F5).
        assert rewire == wire or decode_server_frames(rewire) == [again]


@FUZZ
@given(JSON_VALUES)
def test_fuzz_arbitrary_json_values(value: Any) -> None:
    _check_client(_dump(value))
    _check_server(_dump(value))


@FUZZ
@given(VOCAB_FRAMES)
def test_fuzz_vocabulary_dicts(frame: dict[str, Any]) -> None:
    _check_client(_dump(frame))
    _check_server(_dump(frame))


# Shape-aware generators: real frame templates whose fields are mostly plausible values
# (so many frames are accepted and the deep validators run) and sometimes anything.

WEIRD = SCALARS | st.lists(SCALARS, max_size=3) | st.dictionaries(st.text(max_size=4), SCALARS)
INTS = st.integers(-5, 5000) | HUGE_INTS
NUMBERS = INTS | st.floats(-5, 5000) | st.floats()
SUBJECT = st.text(max_size=12)


PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "voice_id": INTS,
    "model_id": st.sampled_from(["kugel-3", "kugel-3.5"]) | SUBJECT,
    "cfg_scale": NUMBERS,
    "temperature": st.floats(0, 1) | NUMBERS,
    "max_new_tokens": st.integers(1, 2048) | INTS,
    "sample_rate": st.sampled_from([8000, 16000, 22050, 24000]) | INTS,
    "output_format": st.sampled_from([f.value for f in OutputFormat]) | SUBJECT,
    "normalize": st.booleans(),
    "language": st.sampled_from(["en", "de"]) | SUBJECT,
    "word_timestamps": st.booleans(),
    "speed": st.floats(0.8, 1.2) | NUMBERS,
    "chunk_length_schedule": st.lists(st.integers(-1, 400), max_size=5),
    "auto_mode": st.booleans(),
    "flush_timeout_ms": INTS,
    "max_buffer_length": INTS,
    "project_id": INTS,
    "dictionary_ids": st.lists(INTS, max_size=3),
    "inactivity_timeout": NUMBERS,
    "text": SUBJECT,
    "flush": st.booleans(),
    "immediate": st.booleans(),
    "context_id": st.text(max_size=8) | st.text(min_size=250, max_size=260),
    "stability": NUMBERS,
    "similarity_boost": NUMBERS,
    "style": NUMBERS,
    "use_speaker_boost": st.booleans(),
    "audio": st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()) | SUBJECT,
    "enc": st.sampled_from(["pcm_s16le", "mulaw", "alaw"]) | SUBJECT,
    "word": SUBJECT,
    "score": NUMBERS,
    "currency": SUBJECT,
    "cost_unavailable": st.booleans(),
    "session_id": SUBJECT,
    "error": SUBJECT | WEIRD,
    "error_code": st.sampled_from(["VALIDATION_ERROR", "TOO_MANY_CONTEXTS"]) | SUBJECT,
    "request_id": SUBJECT,
    "warning": SUBJECT,
    "settings": st.dictionaries(st.sampled_from(list(CLIENT_VOCAB)), SCALARS, max_size=6),
}
INT_KEYS = (
    "idx",
    "sr",
    "samples",
    "chunk_id",
    "start_ms",
    "end_ms",
    "char_start",
    "char_end",
    "total_text_chunks",
    "total_audio_chunks",
    "chunks",
    "total_samples",
    "characters",
    "code",
)
for _k in INT_KEYS:
    PLAUSIBLE[_k] = INTS
NUMBER_KEYS = (
    "audio_seconds",
    "gen_ms",
    "total_audio_seconds",
    "dur_ms",
    "rtf",
    "ttfa_ms",
    "cost_cents",
    "retry_after",
)
for _k in NUMBER_KEYS:
    PLAUSIBLE[_k] = NUMBERS | st.none()


def _value(key: str) -> st.SearchStrategy[Any]:
    plausible = PLAUSIBLE.get(key, WEIRD)
    return st.integers(0, 5).flatmap(lambda i: WEIRD if i == 0 else plausible)


@st.composite
def frame_of(
    draw: st.DrawFn,
    required: dict[str, st.SearchStrategy[Any]],
    optional: tuple[str, ...] = (),
    max_optional: int = 4,
) -> dict[str, Any]:
    """A frame with the ``required`` keys (rarely one dropped) and a few optional ones."""
    out = {k: draw(v) for k, v in required.items()}
    if out and draw(st.integers(0, 9)) == 0:
        del out[draw(st.sampled_from(sorted(out)))]
    if optional:
        keys = draw(st.lists(st.sampled_from(optional), max_size=max_optional, unique=True))
        out.update({k: draw(_value(k)) for k in keys})
    if draw(st.integers(0, 14)) == 0:
        out[draw(st.sampled_from(VOCAB))] = draw(WEIRD)  # a stray key
    return out


CFG = tuple(sorted(CONFIG_KEYS))
MARKER = st.integers(0, 7).flatmap(lambda i: WEIRD if i == 0 else st.just(True))
VOICE_SETTINGS = frame_of(
    {},
    tuple(
        [
            "voice_id",
            "cfg_scale",
            "max_new_tokens",
            "stability",
            "similarity_boost",
            "style",
            "use_speaker_boost",
            "speed",
            "other",
        ]
    ),
)
UPDATE_BODY = frame_of({}, UPDATABLE_SETTINGS, 3) | frame_of(
    {}, (*UPDATABLE_SETTINGS, "voice_id", "sample_rate"), 3
)
PLAUSIBLE["voice_settings"] = VOICE_SETTINGS
PLAUSIBLE["update_settings"] = UPDATE_BODY
CLIENT_FRAMES = st.one_of(
    frame_of({"text": _value("text")}, CFG),
    frame_of({"text": _value("text"), "flush": _value("flush")}, CFG),
    frame_of({"flush": _value("flush")}, CFG),
    frame_of({"text": _value("text")}, (*CFG, "context_id", "flush", "voice_settings")),
    frame_of({"text": _value("text"), "context_id": _value("context_id")}, ("voice_settings",)),
    frame_of({"flush": _value("flush"), "context_id": _value("context_id")}, CFG, 2),
    frame_of({"close_context": MARKER, "context_id": _value("context_id")}, ("immediate",)),
    frame_of({"update_settings": UPDATE_BODY}),
    st.sampled_from(["cancel", "close", "end_session", "close_socket"]).flatmap(
        lambda k: frame_of({k: MARKER})
    ),
)

USAGE = frame_of(
    {"audio_seconds": _value("audio_seconds")},
    ("characters", "cost_cents", "currency", "model_id", "cost_unavailable"),
)
WORD = frame_of({k: _value(k) for k in ("word", "start_ms", "end_ms", "char_start", "char_end")}, ("score",))
PLAUSIBLE["usage"] = USAGE | st.none()
PLAUSIBLE["word_timestamps"] = st.lists(WORD, max_size=3)
TTS_STATS = ("chunks", "total_samples", "dur_ms", "gen_ms", "rtf", "ttfa_ms")
TOTALS = ("total_audio_seconds", "total_text_chunks", "total_audio_chunks", "usage")
SERVER_FRAMES = st.one_of(
    frame_of(
        {k: _value(k) for k in ("audio", "idx", "sr", "samples")},
        ("enc", "chunk_id", "context_id", "word_timestamps"),
    ),
    frame_of({"word_timestamps": _value("word_timestamps")}, ("chunk_id", "context_id")),
    frame_of(
        {"generation_started": MARKER, "chunk_id": _value("chunk_id"), "text": _value("text")},
        ("context_id",),
    ),
    frame_of(
        {"chunk_complete": MARKER, "chunk_id": _value("chunk_id")},
        ("audio_seconds", "gen_ms", "context_id"),
    ),
    frame_of({"final": MARKER}, (*TOTALS, *TTS_STATS, "context_id"), 6),
    frame_of({"session_closed": MARKER}, TOTALS),
    frame_of({"context_closed": MARKER, "context_id": _value("context_id")}, ("usage",)),
    frame_of({"context_created": MARKER, "context_id": _value("context_id")}),
    frame_of({"context_timeout": MARKER, "context_id": _value("context_id")}),
    frame_of({"session_started": MARKER, "session_id": _value("session_id")}),
    frame_of({"interrupted": MARKER}),
    frame_of({"settings_updated": MARKER}, ("settings",)),
    frame_of({"warning": _value("warning")}),
    frame_of(
        {"error": _value("error")},
        ("error_code", "code", "retry_after", "request_id", "context_id", "final"),
    ),
)


@FUZZ
@given(CLIENT_FRAMES)
def test_fuzz_client_frame_templates(frame: dict[str, Any]) -> None:
    _check_client(_dump(frame))


@FUZZ
@given(SERVER_FRAMES)
def test_fuzz_server_frame_templates(frame: dict[str, Any]) -> None:
    _check_server(_dump(frame))


@FUZZ
@given(st.text(max_size=200))
def test_fuzz_arbitrary_text(text: str) -> None:
    _check_client(text)
    _check_server(text)


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    for endpoint in ALL:
        with pytest.raises(ProtocolError):
            decode_client_frame(data, endpoint)
    with pytest.raises(ProtocolError):
        decode_server_frames(data)


@FUZZ
@given(JSON_VALUES)
def test_fuzz_json_text_mutations(value: Any) -> None:
    text = _dump(value)
    for cut in (len(text) // 2, len(text) - 1):
        _check_client(text[:cut])
        _check_server(text[:cut])

"""Tests for rxtts.config: presets, validation, clamping and wire shapes (PROTOCOL 7, 8)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxtts.config import (
    BALANCED,
    DEFAULT_SCHEDULE,
    HIGH_QUALITY,
    LOW_LATENCY,
    MAX_CONTEXTS,
    PRESETS,
    ChunkingPreset,
    MultiContextConfig,
    OutputFormat,
    StreamConfig,
    VoiceSettings,
)
from rxtts.protocol.frames import Endpoint, TextFrame, decode_client_frame

# -- presets ------------------------------------------------------------------------------


def test_preset_values() -> None:
    assert LOW_LATENCY.chunk_length_schedule == (50, 100, 150, 250)
    assert LOW_LATENCY.auto_mode is True
    assert BALANCED.chunk_length_schedule == (80, 150, 250)
    assert BALANCED.auto_mode is False
    assert HIGH_QUALITY.chunk_length_schedule == (120, 200, 300)
    assert HIGH_QUALITY.auto_mode is False


def test_presets_by_cli_name_and_default_is_balanced() -> None:
    assert PRESETS == {
        "low-latency": LOW_LATENCY,
        "balanced": BALANCED,
        "high-quality": HIGH_QUALITY,
    }
    assert DEFAULT_SCHEDULE == (80, 150, 250)  # PROTOCOL G-10: Balanced


def test_presets_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        BALANCED.auto_mode = True  # type: ignore[misc]


def test_from_preset_by_name_and_object() -> None:
    cfg = StreamConfig.from_preset("low-latency")
    assert cfg.chunk_length_schedule == (50, 100, 150, 250)
    assert cfg.auto_mode is True
    hq = StreamConfig.from_preset(HIGH_QUALITY, voice_id=3, language="de")
    assert (hq.chunk_length_schedule, hq.auto_mode) == ((120, 200, 300), False)
    assert (hq.voice_id, hq.language) == (3, "de")
    custom = StreamConfig.from_preset(ChunkingPreset("mine", (10, 20), auto_mode=True))
    assert custom.chunk_length_schedule == (10, 20) and custom.auto_mode is True


def test_from_preset_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown preset 'fastest'; choose one of: low-latency"):
        StreamConfig.from_preset("fastest")


# -- cfg_scale clamping (PROTOCOL 7: clamped [1.2, 2.5], never rejected) --------------------


@pytest.mark.parametrize(
    ("given_value", "clamped"), [(0.5, 1.2), (9, 2.5), (1.2, 1.2), (2.5, 2.5), (1.7, 1.7)]
)
def test_cfg_scale_is_clamped_everywhere(given_value: float, clamped: float) -> None:
    assert StreamConfig(cfg_scale=given_value).cfg_scale == clamped
    assert VoiceSettings(cfg_scale=given_value).cfg_scale == clamped
    assert MultiContextConfig(cfg_scale=given_value).cfg_scale == clamped


@settings(max_examples=200, deadline=None, database=None)
@given(st.floats(min_value=-1e6, max_value=1e6))
def test_cfg_scale_clamp_property(value: float) -> None:
    got = StreamConfig(cfg_scale=value).cfg_scale
    assert 1.2 <= got <= 2.5
    if 1.2 <= value <= 2.5:
        assert got == value


def test_voice_settings_none_cfg_scale_stays_none() -> None:
    assert VoiceSettings(voice_id=1).cfg_scale is None


# -- validation errors name the field -------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field_name"),
    [
        (lambda: StreamConfig(temperature=1.5), "temperature"),
        (lambda: StreamConfig(temperature=-0.01), "temperature"),
        (lambda: MultiContextConfig(temperature=2.0), "temperature"),
        (lambda: StreamConfig(output_format="mp3_44100"), "output_format"),  # type: ignore[arg-type]
        (lambda: MultiContextConfig(output_format="opus"), "output_format"),  # type: ignore[arg-type]
        (lambda: StreamConfig(chunk_length_schedule=()), "chunk_length_schedule"),
        (lambda: StreamConfig(chunk_length_schedule=(150, 80)), "chunk_length_schedule"),
        (lambda: StreamConfig(chunk_length_schedule=(80, 80)), "chunk_length_schedule"),
        (lambda: StreamConfig(chunk_length_schedule=(0, 10)), "chunk_length_schedule"),
        (lambda: MultiContextConfig(max_contexts=21), "max_contexts"),
        (lambda: MultiContextConfig(max_contexts=0), "max_contexts"),
        (lambda: StreamConfig(sample_rate=44100), "sample_rate"),
        (lambda: MultiContextConfig(sample_rate=44100), "sample_rate"),
        (lambda: StreamConfig(speed=2.0), "speed"),
        (lambda: StreamConfig(speed=0.79), "speed"),
        (lambda: MultiContextConfig(speed=1.25), "speed"),
        (lambda: StreamConfig(max_new_tokens=0), "max_new_tokens"),
        (lambda: StreamConfig(max_new_tokens=2049), "max_new_tokens"),
        (lambda: VoiceSettings(max_new_tokens=5000), "max_new_tokens"),
        (lambda: StreamConfig(flush_timeout_ms=0), "flush_timeout_ms"),
        (lambda: StreamConfig(max_buffer_length=-1), "max_buffer_length"),
        (lambda: MultiContextConfig(inactivity_timeout=0), "inactivity_timeout"),
    ],
)
def test_bad_values_raise_value_error_naming_the_field(build: Callable[[], object], field_name: str) -> None:
    with pytest.raises(ValueError, match=field_name):
        build()


def test_boundaries_are_inclusive() -> None:
    cfg = StreamConfig(temperature=0.0, speed=0.8, max_new_tokens=1)
    assert (cfg.temperature, cfg.speed, cfg.max_new_tokens) == (0.0, 0.8, 1)
    cfg = StreamConfig(temperature=1.0, speed=1.2, max_new_tokens=2048)
    assert (cfg.temperature, cfg.speed, cfg.max_new_tokens) == (1.0, 1.2, 2048)
    assert MultiContextConfig(max_contexts=MAX_CONTEXTS).max_contexts == 20
    assert MultiContextConfig(max_contexts=1).max_contexts == 1


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000])
def test_supported_sample_rates(rate: int) -> None:
    assert StreamConfig(sample_rate=rate).sample_rate == rate
    assert MultiContextConfig(sample_rate=rate).sample_rate == rate


def test_output_format_given_as_string_is_parsed_to_enum() -> None:
    cfg = StreamConfig(output_format="ulaw_8000")  # type: ignore[arg-type]
    assert cfg.output_format is OutputFormat.ULAW_8000
    multi = MultiContextConfig(output_format="alaw_8000")  # type: ignore[arg-type]
    assert multi.output_format is OutputFormat.ALAW_8000


def test_schedule_and_dictionary_ids_become_tuples() -> None:
    cfg = StreamConfig(chunk_length_schedule=[80, 150], dictionary_ids=[3, 4])  # type: ignore[arg-type]
    assert cfg.chunk_length_schedule == (80, 150)
    assert cfg.dictionary_ids == (3, 4)
    hash(cfg)  # tuples keep the frozen config hashable


# -- OutputFormat (PROTOCOL 8) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "codec", "rate", "encoding"),
    [
        (OutputFormat.PCM_8000, "pcm", 8000, "pcm_s16le"),
        (OutputFormat.PCM_16000, "pcm", 16000, "pcm_s16le"),
        (OutputFormat.PCM_22050, "pcm", 22050, "pcm_s16le"),
        (OutputFormat.PCM_24000, "pcm", 24000, "pcm_s16le"),
        (OutputFormat.ULAW_8000, "ulaw", 8000, "mulaw"),
        (OutputFormat.ALAW_8000, "alaw", 8000, "alaw"),
    ],
)
def test_output_format_properties(fmt: OutputFormat, codec: str, rate: int, encoding: str) -> None:
    assert (fmt.codec, fmt.sample_rate, fmt.encoding) == (codec, rate, encoding)
    assert OutputFormat.parse(fmt.value) is fmt
    assert fmt == fmt.value  # a StrEnum: serialises as its wire token


def test_output_format_set_is_protocol_u13() -> None:
    assert {f.value for f in OutputFormat} == {
        "pcm_8000",
        "pcm_16000",
        "pcm_22050",
        "pcm_24000",
        "ulaw_8000",
        "alaw_8000",
    }


def test_output_format_parse_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="output_format"):
        OutputFormat.parse("ulaw_16000")
    with pytest.raises(ValueError, match="my_field"):
        OutputFormat.parse("wav", "my_field")


def test_output_format_pcm_for_rate() -> None:
    assert OutputFormat.pcm(16000) is OutputFormat.PCM_16000
    with pytest.raises(ValueError, match="sample_rate"):
        OutputFormat.pcm(44100)


# -- StreamConfig wire shape and replace() ---------------------------------------------------


def test_default_stream_config_to_wire() -> None:
    # PROTOCOL 5.3: keys the PY client always sends (flush_timeout_ms/max_buffer_length unset here).
    assert StreamConfig().to_wire() == {
        "cfg_scale": 2.0,
        "max_new_tokens": 2048,
        "sample_rate": 24000,
        "normalize": True,
        "word_timestamps": False,
        "speed": 1.0,
    }


def test_full_stream_config_to_wire_is_json_and_decodes_back() -> None:
    cfg = StreamConfig(
        voice_id=7,
        model_id="kugel-3",
        cfg_scale=1.8,
        temperature=0.4,
        max_new_tokens=1024,
        sample_rate=24000,
        output_format=OutputFormat.ULAW_8000,
        normalize=False,
        language="en",
        word_timestamps=True,
        speed=1.1,
        chunk_length_schedule=(50, 100, 150, 250),
        auto_mode=True,
        flush_timeout_ms=500,
        max_buffer_length=1000,
        project_id=9,
        dictionary_ids=(),
    )
    wire = cfg.to_wire()
    assert set(wire) == {f.name for f in dataclasses.fields(StreamConfig)}
    assert wire["output_format"] == "ulaw_8000" and type(wire["output_format"]) is str
    assert wire["chunk_length_schedule"] == [50, 100, 150, 250]
    assert wire["dictionary_ids"] == []
    # The server-side decoder accepts exactly this as a first stream frame (PROTOCOL S-1).
    frame = decode_client_frame(json.dumps({"text": "Hi", "flush": False, **wire}), Endpoint.STREAM)
    assert isinstance(frame, TextFrame)
    assert frame.config.to_wire() == wire


def test_replace_validates_and_rejects_unknown_fields() -> None:
    base = StreamConfig(voice_id=1)
    changed = base.replace(language="de", cfg_scale=5.0)
    assert (changed.language, changed.cfg_scale, changed.voice_id) == ("de", 2.5, 1)
    assert base.language is None  # the original is untouched
    with pytest.raises(ValueError, match="voice"):
        base.replace(voice=2)
    with pytest.raises(ValueError, match="speed"):
        base.replace(speed=3.0)


def test_stream_config_is_frozen_and_hashable() -> None:
    cfg = StreamConfig(voice_id=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.voice_id = 2  # type: ignore[misc]
    assert hash(cfg) == hash(StreamConfig(voice_id=1))
    assert cfg == StreamConfig(voice_id=1) != StreamConfig(voice_id=2)


# -- VoiceSettings and MultiContextConfig ------------------------------------------------------


def test_voice_settings_to_wire_only_set_keys() -> None:
    assert VoiceSettings().to_wire() == {}
    vs = VoiceSettings(voice_id=123, stability=0.5, use_speaker_boost=False, cfg_scale=0.1)
    assert vs.to_wire() == {
        "voice_id": 123,
        "stability": 0.5,
        "use_speaker_boost": False,
        "cfg_scale": 1.2,
    }


def test_multi_context_config_defaults() -> None:
    cfg = MultiContextConfig()
    assert (cfg.sample_rate, cfg.cfg_scale, cfg.temperature) == (24000, 2.0, 0.5)
    assert (cfg.max_new_tokens, cfg.inactivity_timeout, cfg.max_contexts) == (2048, 20.0, 20)
    assert cfg.normalize is True and cfg.word_timestamps is False


def test_multi_context_session_wire_decodes_as_creating_frame() -> None:
    cfg = MultiContextConfig(
        default_voice_id=4,
        output_format=OutputFormat.PCM_16000,
        sample_rate=16000,
        language="fr",
        model_id="kugel-3",
        speed=0.9,
    )
    wire = cfg.session_wire()
    assert wire == {
        "sample_rate": 16000,
        "normalize": True,
        "word_timestamps": False,
        "temperature": 0.5,
        "inactivity_timeout": 20.0,
        "output_format": "pcm_16000",
        "language": "fr",
        "model_id": "kugel-3",
        "speed": 0.9,
    }
    text = json.dumps({"text": " ", "context_id": "a", **wire, "voice_settings": {"voice_id": 4}})
    frame = decode_client_frame(text, Endpoint.MULTI)
    assert isinstance(frame, TextFrame)
    assert frame.config.to_wire() == wire
    assert frame.voice_settings == VoiceSettings(voice_id=4)


def test_multi_session_wire_omits_unset_optionals() -> None:
    wire = MultiContextConfig().session_wire()
    assert not {"output_format", "language", "model_id", "speed"} & set(wire)

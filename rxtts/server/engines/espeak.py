"""espeak-ng engine via ctypes: robotic but ~1000x real time, many languages.

The library comes from the PyPI package ``espeakng-loader`` (extra ``rxtts[espeak]``), else a
system ``libespeak-ng``. espeak-ng keeps global state and is not thread-safe, so one
process-wide lock covers voice selection, parameters and synthesis; synthesis runs one
sentence at a time so other threads interleave and the first block comes early. Cancel is
polled in the synth callback, which returns 1 to make espeak abort mid-sentence.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import threading
from collections.abc import Iterator, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from rxtts.engine import (
    AudioBlock,
    CancelToken,
    EngineUnavailableError,
    SynthesisSettings,
    VoiceInfo,
)

__all__ = ["ESPEAK_VOICES", "EspeakEngine"]

INSTALL_HINT = "pip install 'rxtts[espeak]'"

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_EE_OK = 0
_BUFFER_MS = 100
_DEFAULT_RATE_WPM = 175
_RATE_RANGE = (80, 450)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z]{2,4})?$")

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def _espeak_voice(
    voice_id: int, name: str, language: str, sex: str, espeak_voice: str, pitch: int = 50
) -> VoiceInfo:
    return VoiceInfo(
        id=voice_id,
        name=name,
        engine="espeak",
        language=language,
        sex=sex,
        description=f"espeak-ng voice {espeak_voice} (pitch {pitch}); robotic, very fast.",
        params=MappingProxyType({"espeak_voice": espeak_voice, "pitch": pitch}),
    )


ESPEAK_VOICES: tuple[VoiceInfo, ...] = (
    # 1071-1073 mirror the piper ids so demos run unchanged on the fallback engine.
    _espeak_voice(1071, "eSpeak US male", "en", "male", "en-us"),
    _espeak_voice(1072, "eSpeak US female", "en", "female", "en-us+f3"),
    _espeak_voice(1073, "eSpeak US deep", "en", "male", "en-us", pitch=25),
    _espeak_voice(2001, "eSpeak en-US", "en", "male", "en-us"),
    _espeak_voice(2002, "eSpeak en-US (f3)", "en", "female", "en-us+f3"),
    _espeak_voice(2003, "eSpeak Deutsch", "de", "male", "de"),
    _espeak_voice(2004, "eSpeak français", "fr", "male", "fr"),
    _espeak_voice(2005, "eSpeak español", "es", "male", "es"),
    _espeak_voice(2006, "eSpeak italiano", "it", "female", "it+f2"),
)


class _Library:
    """The loaded libespeak-ng: initialised once per process, used only under ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._lib, data_path = _load_library()
        self._declare()
        rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data_path, 0)
        if rate <= 0:
            raise EngineUnavailableError(f"espeak-ng failed to initialise (data {data_path!r})")
        self.sample_rate = int(rate)
        self._blocks: list[np.ndarray] = []
        self._cancel: CancelToken | None = None
        self._callback = _SynthCallback(self._on_audio)  # keep a reference: C holds it
        self._lib.espeak_SetSynthCallback(self._callback)

    def _declare(self) -> None:
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int

    def _on_audio(self, wav: Any, count: int, _events: Any) -> int:
        if self._cancel is not None and self._cancel.cancelled:
            return 1  # speak_lib.h: non-zero aborts synthesis
        if wav and count > 0:
            self._blocks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def synth(self, text: str, espeak_voice: str, rate: int, pitch: int, cancel: CancelToken) -> np.ndarray:
        """Synthesise one piece of text to int16 samples; call with ``lock`` held."""
        if self._lib.espeak_SetVoiceByName(espeak_voice.encode("ascii")) != _EE_OK:
            raise ValueError(f"espeak-ng has no voice {espeak_voice!r}")
        self._lib.espeak_SetParameter(_PARAM_RATE, rate, 0)
        self._lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
        data = text.encode("utf-8")
        self._blocks, self._cancel = [], cancel
        try:
            self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            blocks = self._blocks
        finally:
            self._blocks, self._cancel = [], None
        return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int16)


def _load_library() -> tuple[ctypes.CDLL, bytes | None]:
    """libespeak-ng from espeakng-loader, else the system one with its default data."""
    try:
        import espeakng_loader

        return ctypes.CDLL(espeakng_loader.get_library_path()), str(espeakng_loader.get_data_path()).encode()
    except (ImportError, OSError, RuntimeError):
        pass
    name = ctypes.util.find_library("espeak-ng")
    if name is not None:
        try:
            return ctypes.CDLL(name), None
        except OSError:
            pass
    raise EngineUnavailableError(f"the espeak engine needs libespeak-ng: {INSTALL_HINT}")


_LIBRARY: _Library | None = None
_LIBRARY_LOCK = threading.Lock()


def _library() -> _Library:
    global _LIBRARY
    with _LIBRARY_LOCK:
        if _LIBRARY is None:
            _LIBRARY = _Library()
        return _LIBRARY


def espeak_available() -> bool:
    """Whether libespeak-ng loads and initialises (loads it on first call)."""
    try:
        _library()
    except EngineUnavailableError:
        return False
    return True


class EspeakEngine:
    """espeak-ng through ctypes; safe to share between threads (one global lock)."""

    name: str = "espeak"
    sample_rate: int

    def __init__(self) -> None:
        """Load and initialise libespeak-ng; raises EngineUnavailableError if it cannot."""
        self._library = _library()
        self.sample_rate = self._library.sample_rate

    def voices(self) -> Sequence[VoiceInfo]:
        """US English voices (1071–1073 and 2001–2002) and a few other languages."""
        return ESPEAK_VOICES

    def warm_up(self) -> None:
        """Synthesise one word (loads the voice data)."""
        for _ in self.synthesize("Hi.", ESPEAK_VOICES[0], SynthesisSettings(), CancelToken()):
            pass

    def synthesize(
        self, text: str, voice: VoiceInfo, settings: SynthesisSettings, cancel: CancelToken
    ) -> Iterator[AudioBlock]:
        """Yield one float32 block per sentence; ``cancel`` aborts inside espeak."""
        espeak_voice = _voice_name(voice, settings.language)
        rate = round(_DEFAULT_RATE_WPM * settings.speed * float(voice.params.get("rate", 1.0)))
        rate = min(max(rate, _RATE_RANGE[0]), _RATE_RANGE[1])
        pitch = int(voice.params.get("pitch", 50))
        for sentence in _SENTENCE_END.split(text.strip()):
            if cancel.cancelled:
                return
            if not sentence:
                continue
            with self._library.lock:
                samples = self._library.synth(sentence, espeak_voice, rate, pitch, cancel)
            if cancel.cancelled:
                return
            if samples.size:
                yield (samples.astype(np.float32) / 32768.0).astype(np.float32)


def _voice_name(voice: VoiceInfo, language: str | None) -> str:
    """The espeak voice for ``voice``; a requested other language keeps the +variant."""
    name = str(voice.params.get("espeak_voice", voice.language))
    if language is None or language.lower() == voice.language:
        return name
    if not _LANGUAGE.match(language.lower()):
        raise ValueError(f"not a language code: {language!r}")
    _, plus, variant = name.partition("+")
    return f"{language.lower()}{plus}{variant}"

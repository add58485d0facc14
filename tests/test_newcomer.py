"""Issue 16: what a new user tries first works, and mistakes get errors that name the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rxtts
from rxtts.audio.wav import read_wav
from rxtts.errors import MissingVoiceError
from rxtts.events import AudioChunk, SessionClosed
from rxtts.server.embedded import RunningServer


def test_with_connect_works_in_synchronous_code(tmp_path: Path) -> None:
    out = tmp_path / "hello.wav"
    with rxtts.connect(engine="tone") as tts:
        tts.generate("Hello from rxtts, written from plain synchronous code.").to_wav(str(out))
        events = tts.speak(["Stream", "ed tok", "ens, ", "synchronously."], preset="low-latency")
    samples, rate = read_wav(out)
    assert rate == 24000 and len(samples) > 0 and np.abs(samples).max() > 1000
    assert isinstance(events[-1], SessionClosed) and any(isinstance(e, AudioChunk) for e in events)
    assert not tts.thread.is_alive()  # the block closed the client and its loop


def test_with_connect_sync_closes_its_loop_thread() -> None:
    with rxtts.connect_sync(engine="tone") as tts:
        assert tts.generate("Hi there.").duration > 0
        thread = tts.thread
    assert not thread.is_alive()


def test_generate_without_a_voice_names_the_fix(tone_server: RunningServer) -> None:
    with rxtts.connect(tone_server.url) as tts, pytest.raises(MissingVoiceError, match="pass voice_id="):
        tts.generate("No voice was configured for this request.")


def test_an_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(ValueError, match="unknown preset 'fast'; choose one of: low-latency, balanced"):
        rxtts.StreamConfig().replace(preset="fast")
    assert rxtts.StreamConfig().replace(preset="low-latency").auto_mode is True


def test_rxtts_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rxtts.cli", "--version"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and result.stdout.strip() == f"rxtts {rxtts.__version__}"

"""Split a piper voice into a frontend graph and a frame-windowed decoder graph (cached).

VITS splits at the monotonic alignment: the text encoder, duration predictor and prior
sampling (``z_p``) see the whole sentence and are cheap; flow + HiFi-GAN after them is a
CNN over frames with a finite receptive field, so it can run in overlapping windows
(DESIGN section 4, issue 12). Both noise draws sit in the frontend, so overlapping windows
see the same ``z_p``.

Decisions:

- The seam (``z_p``, frame mask) and the hop length are found by the MIT package
  ``streaming-vits`` (``streaming_vits.graph.find_seam`` / ``describe_decoder``: graph
  topology and ``dec.ups.N.weight`` strides, not node names). We do the extraction
  ourselves because we also need the duration predictor's ``Ceil`` output (frames per
  phoneme id, the tensor ``piper.patch_voice_with_alignment`` exposes) as a frontend
  output, for word alignment.
- The graphs are cached under ``$RXTTS_CACHE_DIR`` or ``$XDG_CACHE_HOME/rxtts`` (default
  ``~/.cache/rxtts``), in ``piper-split/<sha256 of the model file>``, never next to the
  model (that is site-packages for the bundled voice); if that cannot be created, under
  the temp dir (``rxtts-cache``). Building takes ~2 s once; a finished directory is
  renamed into place atomically, so concurrent servers never see a half-written cache.
- Single-speaker voices only (joe): a multi-speaker seam also carries a speaker
  embedding, which the engine has no use for.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["CACHE_VERSION", "SplitVoice", "cache_root", "model_digest", "split_voice"]

CACHE_VERSION = 1
"""Bump when the cached files change meaning; old directories are then ignored."""

_META = "split.json"
FRONTEND, DECODER = "frontend.onnx", "decoder.onnx"


@dataclass(frozen=True, slots=True)
class SplitVoice:
    """The two graphs of one voice and the tensor names at the seam."""

    directory: str
    """Cache directory holding ``frontend.onnx`` and ``decoder.onnx``."""
    z_p: str
    """Frontend output / decoder input: the sampled prior, ``[1, channels, frames]``."""
    mask: str
    """Frontend output / decoder input: the frame mask, ``[1, 1, frames]``."""
    durations: str
    """Frontend output: frames per phoneme id (the ``Ceil`` tensor), ``[1, 1, ids]``."""
    hop: int
    """Audio samples per frame (product of the decoder's upsample strides; 256 for joe)."""
    version: int = CACHE_VERSION

    @property
    def frontend_path(self) -> Path:
        return Path(self.directory) / FRONTEND

    @property
    def decoder_path(self) -> Path:
        return Path(self.directory) / DECODER


def cache_root() -> Path:
    """``$RXTTS_CACHE_DIR``, else ``$XDG_CACHE_HOME/rxtts``, else ``~/.cache/rxtts``."""
    explicit = os.environ.get("RXTTS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rxtts"


def model_digest(model_path: Path) -> str:
    """SHA-256 of the model file, hex (the cache key: a changed model is re-split)."""
    digest = hashlib.sha256()
    with model_path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_voice(model_path: Path, cache: Path | None = None) -> SplitVoice:
    """The split graphs of ``model_path``, built on first use and cached by its hash."""
    key = model_digest(model_path)[:32]
    target = (cache or cache_root()) / "piper-split" / key
    cached = _load(target)
    if cached is not None:
        return cached
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # no writable home (some CI sandboxes): fall back to the temp dir
        if cache is not None:
            raise
        target = Path(tempfile.gettempdir()) / "rxtts-cache" / "piper-split" / key
        cached = _load(target)
        if cached is not None:
            return cached
        target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        split = _build(model_path, scratch)
        try:
            os.rename(scratch, target)
        except OSError:  # another process finished first: use its copy
            shutil.rmtree(scratch, ignore_errors=True)
            winner = _load(target)
            if winner is None:
                raise
            return winner
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return SplitVoice(**{**asdict(split), "directory": str(target)})


def _load(directory: Path) -> SplitVoice | None:
    try:
        data = json.loads((directory / _META).read_text("utf-8"))
        split = SplitVoice(**{**data, "directory": str(directory)})
    except (OSError, TypeError, ValueError):
        return None
    if split.version != CACHE_VERSION or not (split.frontend_path.exists() and split.decoder_path.exists()):
        return None
    return split


def _build(model_path: Path, directory: Path) -> SplitVoice:
    import onnx
    import onnx.utils
    from onnx import shape_inference
    from streaming_vits.graph import describe_decoder, find_seam

    model = onnx.load(str(model_path))
    seam = find_seam(model)
    if seam.g is not None:
        raise ValueError(f"{model_path.name}: multi-speaker voices are not supported")
    hop = int(describe_decoder(model)["hop"])
    durations = _ceil_tensor(model)
    _dedupe_metadata(model)
    model = shape_inference.infer_shapes(model, data_prop=True)
    whole = directory / "whole.onnx"
    onnx.save(model, str(whole))
    inputs = [graph_input.name for graph_input in model.graph.input]
    onnx.utils.extract_model(
        str(whole),
        str(directory / FRONTEND),
        input_names=inputs,
        output_names=[seam.z_p, seam.mask, durations],
    )
    onnx.utils.extract_model(
        str(whole), str(directory / DECODER), input_names=[seam.z_p, seam.mask], output_names=["output"]
    )
    whole.unlink()
    split = SplitVoice(str(directory), seam.z_p, seam.mask, durations, hop)
    meta = {key: value for key, value in asdict(split).items() if key != "directory"}
    (directory / _META).write_text(json.dumps(meta, indent=2), "utf-8")
    return split


def _ceil_tensor(model: Any) -> str:
    """The duration predictor's ``Ceil`` output (the one tensor piper's alignment patch
    marks as an output)."""
    names = {output for node in model.graph.node if node.op_type == "Ceil" for output in node.output}
    if len(names) != 1:
        raise ValueError(f"expected one Ceil tensor (phoneme durations), found {sorted(names)}")
    return str(names.pop())


def _dedupe_metadata(model: Any) -> None:
    """piper writes duplicate ``metadata_props`` keys, which ``extract_model``'s checker
    rejects; keep the first of each."""
    seen: set[str] = set()
    keep = []
    for prop in model.metadata_props:
        if prop.key not in seen:
            seen.add(prop.key)
            keep.append(prop)
    del model.metadata_props[:]
    model.metadata_props.extend(keep)

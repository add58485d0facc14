"""The client side: one connection layer under every session kind.

- :mod:`rxtts.client.connection`: open, auth, keepalive, close-code mapping, reconnect
  and replay after 1012/1013, loop marshalling, the raising-subscriber policy.
- :mod:`rxtts.client.session`: :class:`StreamingSession` on ``/ws/tts/stream``.
- :mod:`rxtts.client.multi`: :class:`MultiContextSession` on ``/ws/tts/multi``.
- :mod:`rxtts.client.tts`: the one-shot ``/ws/tts`` pool and :class:`TTS`.
- :mod:`rxtts.client.connector`: :func:`rxtts.connect` (URL, key, or embedded server).

Every public name is re-exported by :mod:`rxtts`; import from there.
"""

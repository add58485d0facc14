"""rxtts: reactive streaming text-to-speech."""

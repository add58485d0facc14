"""Adapters to the world around rxtts: LLM token streams (:mod:`.llm`), simulated LLM
token streams for demos and benchmarks (:mod:`.tokens`); framework plug-ins are
optional extras."""

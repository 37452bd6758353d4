"""lmcz-fast in front of the official Local Module (docs/front.md): a layer between `store/` and `service/` (it
imports the store and below, never the service).

The watching half: `crosscheck.py` (every official answer checked here too, off the till's path, disagreements
counted per field), `outbox.py` (sales and returns delivered to the official module in order from a durable
queue), `watchdog.py` (the official module's health polled, `init` again on `sync_error`), `calls.py` (their
blocking HTTP calls) and `watch.py` (the three as one object the service holds, and what they show).
"""

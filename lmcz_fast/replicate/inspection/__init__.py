"""`replicate --inspect`: sample a source's databases and propose the mapping that reads them.

The official module's database layout is not public, so we look: the databases (sample.py), what each field path
of a sample of their documents holds, read with our own parser (classify.py), and which database and fields map
the most documents to each kind of data, with the evidence and a confidence (propose.py). The result is written as
a mapping file (mapping_file.py) that `replicate --mapping FILE` takes.
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import ReplicationConfig
from ..mapping_file import render
from ..source import CouchSource
from .classify import READINGS, FieldStats, Sample, readings
from .propose import Choice, Proposal, propose
from .sample import DEFAULT_SAMPLE, list_databases, sample_database

__all__ = ["DEFAULT_SAMPLE", "READINGS", "Choice", "FieldStats", "Proposal", "Sample", "inspect_source",
           "mapping_text", "readings"]


def inspect_source(config: ReplicationConfig, names: tuple[str, ...] = (), size: int = DEFAULT_SAMPLE,
                   on_database: Callable[[str], None] | None = None) -> Proposal:
    """Sample every database of the source (or `names`) and propose a mapping. `ReplicationError` when the
    source cannot be read."""
    source = CouchSource(config)
    try:
        samples = []
        for name in list_databases(source, names):
            if on_database is not None:
                on_database(name)
            samples.append(sample_database(source, name, size))
    finally:
        source.close()
    return propose(samples)


def mapping_text(proposal: Proposal, source: str) -> str:
    """The proposal as a mapping file, its evidence and confidence as comments."""
    databases, mapping = proposal.mapping()
    notes = {kind: [f"{c.database}: {c.share:.0%} of {c.sampled} sampled documents map; confidence {c.confidence}",
                    *c.evidence] for kind, c in proposal.choices.items()}
    header = [f"Proposed by `lmcz-fast replicate --inspect` from {source}.",
              "Read it before use: names and fields are inferred from a sample (docs/replication.md).",
              *proposal.notes]
    return render(databases, mapping, notes, header)

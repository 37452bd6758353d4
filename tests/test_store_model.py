"""A state machine of loads and deltas, checked against a plain `set` after every step."""

from __future__ import annotations

import random
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lmcz_fast import Blocklist, VersionError, set_digest_of

from _store_support import colliding_pairs, make_identity, make_scan

_rng = random.Random(99)
POOL = [make_identity(_rng, serial_len=_rng.choice((6, 7, 13, 20))) for _ in range(24)]
POOL += [code for pair in colliding_pairs(3, seed=5) for code in pair]

subsets = st.lists(st.sampled_from(POOL), unique=True, max_size=len(POOL))


class StoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="lmcz-model-")
        self.bl = Blocklist.create(f"{self.dir}/db")
        self.model: set[str] = set()
        self.version = 0
        self.last_delta: tuple[list[str], list[str], int, int] | None = None

    def teardown(self) -> None:
        self.bl.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(codes=subsets)
    def full_load(self, codes):
        self.bl.load([codes])
        self.version += 1
        self.model = set(codes)
        self.last_delta = None

    @rule(add=subsets, remove=subsets)
    def delta(self, add, remove):
        report = self.bl.apply_delta(add=add, remove=remove, from_version=self.version, to_version=self.version + 1)
        assert report.applied
        self.last_delta = (add, remove, self.version, self.version + 1)
        self.version += 1
        self.model = (self.model - set(remove)) | set(add)

    @precondition(lambda self: self.last_delta is not None)
    @rule()
    def reapply_last_delta(self):
        add, remove, start, end = self.last_delta
        report = self.bl.apply_delta(add=add, remove=remove, from_version=start, to_version=end)
        assert report.applied is False

    @rule(add=subsets, gap=st.integers(min_value=1, max_value=3))
    def delta_with_a_gap_is_refused(self, add, gap):
        try:
            self.bl.apply_delta(add=add, from_version=self.version + gap, to_version=self.version + gap + 1)
        except VersionError:
            return
        raise AssertionError("a delta from a future version was applied")

    @invariant()
    def answers_match_the_model(self):
        truth = [code in self.model for code in POOL]
        assert [self.bl.is_blocked(code) for code in POOL] == truth
        assert self.bl.is_blocked_many([make_scan(code, _rng) for code in POOL]) == truth
        assert [self.bl.check(code).blocked for code in POOL] == truth

    @invariant()
    def contents_and_digest_match_the_model(self):
        assert sorted(self.bl.iter_identities()) == sorted(self.model)
        info = self.bl.info()
        assert info["codes"] == len(self.model)
        assert info["version"] == self.version
        assert info["set_digest"] == set_digest_of(self.model)


StoreModel.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreModel = StoreModel.TestCase

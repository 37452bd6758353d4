"""A state machine of loads and deltas, checked against a plain `set` after every step."""

from __future__ import annotations

import random
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lmcz_fast.store import Change, ShrinkRefusedError, guard
from lmcz_fast import Blocklist, DigestMismatchError, NoListError, VersionError, digest_after, set_digest_of

from _store_support import colliding_pairs, make_identity, make_scan, prefilter_key

_rng = random.Random(99)
POOL = [make_identity(_rng, serial_len=_rng.choice((6, 7, 13, 20))) for _ in range(24)]
POOL += [code for pair in colliding_pairs(3, seed=5) for code in pair]

subsets = st.lists(st.sampled_from(POOL), unique=True, max_size=len(POOL))
# with repeats: a delta may name a code twice
bags = st.lists(st.sampled_from(POOL), max_size=len(POOL) + 6)


class StoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="lmcz-model-")
        Blocklist.create(f"{self.dir}/db").close()
        # Two writable handles: deltas through one make the other's cached prefilter stale. A handle sees the
        # other's writes at its next renewal (within the refresh interval); the checks below renew both first.
        self.bl = Blocklist.open(f"{self.dir}/db", readonly=False)
        self.other = Blocklist.open(f"{self.dir}/db", readonly=False)
        self.model: set[str] = set()
        self.version = 0
        self.last_delta: tuple[list[str], list[str], int, int] | None = None

    def renew_both(self) -> None:
        self.bl._renew()
        self.other._renew()

    def changes(self, add, remove) -> bool:
        """Whether a delta changes the list (removals go first): a delta that does not keeps the version."""
        return bool(self.model & set(remove)) or bool(set(add) - (self.model - set(remove)))

    def teardown(self) -> None:
        self.other.close()
        self.bl.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(codes=subsets, accept=st.booleans())
    def full_load(self, codes, accept):
        # The shrink guard (store/guard.py): a replacement losing more than 20 % of a list is refused unless the
        # operator accepted it; a refusal changes nothing and says why.
        if accept:
            guard.accept(self.bl)
        if self.version and not accept and len(self.model) - len(codes) > 0.2 * len(self.model):
            with pytest.raises(ShrinkRefusedError):
                self.bl.load([codes])
            assert guard.held(self.bl)["after"] == len(codes)
            return
        self.bl.load([codes])
        assert guard.held(self.bl) is None and guard.state(self.bl)["accepted"] is None
        self.version += 1
        self.model = set(codes)
        self.last_delta = None

    @rule(codes=bags)
    def adding_load(self, codes):
        report = self.bl.load([codes], replace=False)
        assert report.codes == len(set(codes) - self.model)
        self.version += 1 if report.codes else 0
        assert report.version == self.version
        self.model |= set(codes)
        self.last_delta = None

    @rule(add=bags, remove=bags, through_other=st.booleans())
    def delta(self, add, remove, through_other):
        writer = self.other if through_other else self.bl
        report = writer.apply_delta(add=add, remove=remove, from_version=self.version, to_version=self.version + 1)
        if not self.changes(add, remove):
            assert (report.applied, report.to_version) == (False, self.version)
            return
        assert report.applied
        after = (self.model - set(remove)) | set(add)
        assert (report.added, report.removed) == (len(after - (self.model - set(remove))),
                                                  len(self.model & set(remove)))
        self.last_delta = (add, remove, self.version, self.version + 1)
        self.version += 1
        self.model = after

    @rule(add=subsets, remove=subsets, right=st.booleans())
    def delta_with_an_expected_digest(self, add, remove, right):
        after = (self.model - set(remove)) | set(add)
        exact_add, exact_remove = after - self.model, self.model - after
        expected = digest_after(set_digest_of(self.model), add=exact_add, remove=exact_remove)
        assert expected == set_digest_of(after)
        if not right:
            expected = set_digest_of(after | {POOL[0]} if POOL[0] not in after else after - {POOL[0]})
        changes = self.changes(add, remove)
        try:
            report = self.bl.apply_delta(add=add, remove=remove, to_version=self.version + 1, expect_digest=expected,
                                         meta={"model_step": self.version})
        except DigestMismatchError:
            assert not right
            return
        assert right
        assert report.applied == changes
        self.model = after
        self.last_delta = None
        if changes:  # a delta that changes nothing writes nothing, its meta neither
            self.version += 1
            self.renew_both()
            assert self.other.get_meta("model_step") == self.version - 1

    @precondition(lambda self: self.version > 0)
    @rule(data=st.data(), through_other=st.booleans())
    def side_tables_only(self, data, through_other):
        # Codes already blocked and a side table: the list and its version stay, the side table changes.
        add = data.draw(st.lists(st.sampled_from(sorted(self.model)), unique=True)) if self.model else []
        writer = self.other if through_other else self.bl
        report = writer.apply(Change(add=add, to_version=self.version + 1, side={b"model": {b"step": b"1"}}))
        assert not report.applied and report.to_version == self.version

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
        self.renew_both()
        if self.version == 0:   # never loaded: no answers at all, from either handle
            for handle in (self.bl, self.other):
                with pytest.raises(NoListError):
                    handle.is_blocked(POOL[0])
                with pytest.raises(NoListError):
                    handle.check(POOL[0])
            return
        truth = [code in self.model for code in POOL]
        assert [self.bl.is_blocked(code) for code in POOL] == truth
        assert self.bl.is_blocked_many([make_scan(code, _rng) for code in POOL]) == truth
        assert [self.bl.check(code).blocked for code in POOL] == truth
        assert [self.other.is_blocked(code) for code in POOL] == truth

    @invariant()
    def prefilter_holds_exactly_the_models_keys(self):
        self.renew_both()
        keys = {prefilter_key(code) for code in self.model}
        for handle in (self.bl, self.other):
            assert [handle._maybe(code.encode()) for code in POOL] == [prefilter_key(code) in keys for code in POOL]

    @invariant()
    def contents_and_digest_match_the_model(self):
        self.renew_both()
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


class FoldingStoreModel(StoreModel):
    """The same steps with an overlay that folds into a new base after a few keys (store/appliers/codes.py `Codes`): a
    delta writes either the overlay over the base or a new base, and folds come at every boundary — the overlay's
    first key, a delta that just fits, one that goes past, a fold right after a fold, a full load over an overlay,
    and a second handle whose cached base another handle's fold made stale."""

    def __init__(self) -> None:
        from lmcz_fast.store.appliers import Codes

        self._saved = (Codes.FOLD_MIN, Codes.FOLD_FRACTION)
        Codes.FOLD_MIN, Codes.FOLD_FRACTION = 5, 4
        super().__init__()

    def teardown(self) -> None:
        from lmcz_fast.store.appliers import Codes

        try:
            super().teardown()
        finally:
            Codes.FOLD_MIN, Codes.FOLD_FRACTION = self._saved


FoldingStoreModel.TestCase.settings = settings(
    max_examples=12,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestFoldingStoreModel = FoldingStoreModel.TestCase

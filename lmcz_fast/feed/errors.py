"""The feed's errors: every one it raises on purpose is a `FeedError`."""

from __future__ import annotations


class FeedError(Exception):
    """Base of every error the feed raises on purpose. The store is unchanged whenever one is raised by `sync`."""


class FeedUnavailable(FeedError):
    """The feed could not be fetched (network down, HTTP error, file missing) even after the retries."""


class SignatureError(FeedError):
    """The manifest's signature does not verify with the configured public key."""


class ManifestError(FeedError):
    """The manifest is signed but not a valid lmcz feed manifest (shape, chain, feed id), or not JSON at all."""


class IntegrityError(FeedError):
    """A downloaded file does not match the signed manifest (size, SHA-256, header, digest)."""


class ReplayError(FeedError):
    """The manifest is older than the one already applied (lower version, older signature, or a different list
    under the same version)."""


class FutureManifestError(ManifestError):
    """The manifest is signed at a time further ahead of this machine's clock than `MAX_AHEAD` allows: the
    publisher's clock (or this one) is wrong. Applying it would record a signing time every real manifest is
    "older" than."""


class ExpiredManifestError(FeedError):
    """The manifest's validity ended: the publisher (or the mirror in between) has stopped refreshing it."""


class UnsupportedFeedError(FeedError):
    """The feed uses a format or a record kind newer than this version of lmcz-fast: upgrade it. Nothing was
    changed (a store never applies the part of a feed it understands and skips the rest)."""


class PublishError(FeedError):
    """The publisher refused its input (bad lines, versions that do not move forward, a foreign feed)."""

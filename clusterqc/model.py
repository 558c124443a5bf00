"""The plain data every stage passes around: frozen dataclasses, no I/O.

Keeping these free of SQL, Streamlit and HTTP lets the CLI, the app and the tests share them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple


class Verdict(str, Enum):
    """The two labels a cluster can get; the vocabulary of the seed prompt."""

    ACCEPTABLE = "Acceptable"
    UNACCEPTABLE = "Unacceptable"

    @property
    def other(self) -> "Verdict":
        """The verdict an Override turns this one into."""
        return Verdict.UNACCEPTABLE if self is Verdict.ACCEPTABLE else Verdict.ACCEPTABLE

    @classmethod
    def parse(cls, value: "str | Verdict | None") -> "Verdict | None":
        """Exact (case-insensitive) name to Verdict; None stays None. Raises ValueError otherwise."""
        if value is None or isinstance(value, Verdict):
            return value
        for verdict in cls:
            if value.strip().lower() == verdict.value.lower():
                return verdict
        raise ValueError(f"not a verdict: {value!r} (expected Acceptable or Unacceptable)")


@dataclass(frozen=True, init=False)
class Sample:
    """One image-text pair as the cluster file gives it; the text is kept byte for byte.

    `clip_score` is the pair's CLIP L/14 image-text cosine (DataComp's
    `clip_l14_similarity_score`, in [-1, 1]) when the cluster file carries it; None otherwise.
    """

    text: str
    uid: str | None = None
    url: str | None = None
    clip_score: float | None = None

    def __init__(self, text: str, uid: str | None = None, url: str | None = None, clip_score: float | None = None):
        # Hand-written because an import builds a million of these: the generated frozen
        # __init__ calls object.__setattr__ once per field (1.7x slower, bench/RESULTS.md).
        # Writing the instance dict directly is what that call does; the class stays frozen.
        d = self.__dict__
        d["text"] = text
        d["uid"] = uid
        d["url"] = url
        d["clip_score"] = clip_score

    def to_json(self) -> Any:
        """A bare string when there is nothing but text, as the luvdatacomp files have it.

        Keys come in sorted order (clip_score, text, uid, url): the store builds the content
        hash from this text directly, and `Cluster.content_hash` sorts keys.
        """
        if self.uid is None and self.url is None and self.clip_score is None:
            return self.text
        out: dict[str, Any] = {}
        if self.clip_score is not None:
            out["clip_score"] = self.clip_score
        out["text"] = self.text
        if self.uid is not None:
            out["uid"] = self.uid
        if self.url is not None:
            out["url"] = self.url
        return out

    @classmethod
    def from_json(cls, value: Any) -> "Sample":
        """Inverse of `to_json` for data we wrote ourselves (validation lives in ingest)."""
        if isinstance(value, str):
            return cls(value)
        return cls(value["text"], value.get("uid"), value.get("url"), value.get("clip_score"))


@dataclass(frozen=True)
class Cluster:
    """A cluster as reviewers see it: the 5 samples nearest its centroid and the 5 furthest."""

    id: str
    closest: tuple[Sample, ...]
    furthest: tuple[Sample, ...]
    size: int | None = None
    dataset: str | None = None
    # Pool evidence from the cluster file (README "Cluster evidence"): size, share, clip_l14_mean,
    # clip_l14_q1/median/q3, and any other finite numbers. Not hashed: a dict is unhashable.
    stats: Mapping[str, float] | None = field(default=None, hash=False)

    @property
    def samples(self) -> tuple[Sample, ...]:
        """Closest first, then furthest: the order in which hints number them."""
        return self.closest + self.furthest

    def closest_texts(self) -> list[str]:
        return [s.text for s in self.closest]

    def furthest_texts(self) -> list[str]:
        return [s.text for s in self.furthest]

    def content_hash(self) -> str:
        """Identity of the content, so a re-import of the same data is recognised as such.

        The dataset is left out: it is where the cluster lives, not what it holds. `stats` joins
        the payload only when present, so clusters without evidence keep the hash they had
        before stats existed (their decisions stay theirs).
        """
        content: dict[str, Any] = {
            "closest": [s.to_json() for s in self.closest],
            "furthest": [s.to_json() for s in self.furthest],
            "size": self.size,
        }
        if self.stats is not None:
            content["stats"] = dict(self.stats)
        payload = json.dumps(content, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ClusterRecord(NamedTuple):
    """A validated cluster as the importers hand it to the store, before it is a `Cluster`.

    Same fields, but a caption-only sample stays the plain `str` the file held. An import of
    100,000 clusters writes these straight to the database: building a million frozen
    `Sample`s that nobody looks at (and freeing them) was a quarter of its time.
    """

    id: str
    closest: Sequence[str | Sample]
    furthest: Sequence[str | Sample]
    size: int | None = None
    dataset: str | None = None
    stats: Mapping[str, float] | None = None

    def to_cluster(self) -> Cluster:
        return Cluster(
            self.id, _as_samples(self.closest), _as_samples(self.furthest), self.size, self.dataset, self.stats
        )


class ClusterTexts(NamedTuple):
    """A stored cluster's captions (closest first, then furthest) and numbers, without `Sample`s.

    What a model reads when it scores 100,000 clusters: building ten frozen `Sample`s and a
    `Cluster` per row, only to take their texts back out, was an eighth of proposing.
    """

    id: str
    texts: tuple[str, ...]
    size: int | None = None
    stats: Mapping[str, float] | None = None


def _as_samples(items: Sequence[str | Sample]) -> tuple[Sample, ...]:
    return tuple(item if isinstance(item, Sample) else Sample(item) for item in items)


@dataclass(frozen=True)
class Proposal:
    """A judge's answer for one cluster. `verdict` is None when the answer could not be parsed."""

    cluster_id: str
    judge: str
    prompt_version: str
    verdict: Verdict | None
    reason: str
    raw: str = ""
    parse_error: str | None = None
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    id: int | None = None
    created_at: str | None = None
    dataset: str | None = None  # None: the cluster's only dataset (see clusterqc.store.datasets)
    content_hash: str | None = None  # the content it answered; None: the cluster's current one
    # The judge's probability for its own verdict (0.5-1), when it gives one: the learned judge
    # does, and the "least certain first" queue sorts by it. Last, so positional callers keep working.
    confidence: float | None = None

    @property
    def parsed(self) -> bool:
        return self.verdict is not None


@dataclass(frozen=True)
class Decision:
    """One row of the append-only decision log.

    `action` is "decide" for a reviewer's verdict and "undo" for the row that reverts one;
    an undo carries the verdict the reviewer had before (None when there was none).
    """

    cluster_id: str
    reviewer: str
    verdict: Verdict | None
    action: str = "decide"
    proposal_id: int | None = None
    agrees: bool | None = None
    note: str = ""
    reverts: int | None = None
    guideline: str | None = None
    id: int | None = None
    created_at: str | None = None
    dataset: str | None = None
    content_hash: str | None = None  # the content it was made on


@dataclass(frozen=True)
class Stats:
    """Counts `clusterqc stats` prints and the sidebar shows."""

    clusters: int
    proposals: int
    unparsed: int
    decisions: int
    reviewed_clusters: int
    reviewers: tuple[str, ...] = field(default_factory=tuple)

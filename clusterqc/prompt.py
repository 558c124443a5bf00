"""The prompt template: validation, rendering, versions, and few-shot example blocks.

A template is a Python format string, exactly as the original luvdatacomp pipeline used it:
`{closest_samples}` / `{furthest_samples}` are filled with the sample texts as JSON arrays and
`{{` / `}}` are literal braces. Keeping that convention means a team's existing prompt files
load unchanged, and the shipped seed prompt renders byte for byte as the original did.

A template's identity is the hash of its text, so the store can tell which prompt produced
which proposal, and saving the same text twice changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from clusterqc.model import Cluster, Verdict

if TYPE_CHECKING:  # the store is only needed for its save_prompt method
    from clusterqc.store import Store

SYSTEM_MESSAGE = "You are a helpful assistant that classifies image-text clusters for CLIP model training."
PLACEHOLDERS: tuple[str, ...] = ("closest_samples", "furthest_samples")
SEED_NAME = "seed"
EXAMPLES_HEADING = "## Examples"

# One token of a format string: an escaped brace, a replacement field, or a lone brace.
_TOKEN = re.compile(r"\{\{|\}\}|\{[^{}]*\}|[{}]")
_EXAMPLE = re.compile(
    r"### Example (?P<n>\d+)\nCluster data:\n```json\n(?P<json>.*?)\n```\n"
    r"Reason: (?P<reason>[^\n]*)\nClassification: (?P<verdict>[^\n]*)\n",
    re.DOTALL,
)


class TemplateError(ValueError):
    """A prompt template that cannot be used: unreadable, bad braces, or wrong placeholders."""


class _CanRender(Protocol):
    closest: Any
    furthest: Any


def samples_json(texts: Sequence[str]) -> str:
    """Sample texts as the original pipeline put them in the prompt (non-ASCII kept as is)."""
    return json.dumps(list(texts), ensure_ascii=False, indent=2)


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def validate_template(text: str) -> None:
    """Raise TemplateError unless `text` is a format string with exactly the known placeholders.

    Checked up front (not at render time) so a bad template is rejected when it is loaded,
    not after the first of 1,300 requests; the message names the placeholder and its line.
    """
    seen: set[str] = set()
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        line = _line_of(text, match.start())
        if token in ("{", "}"):
            raise TemplateError(
                f"line {line}: single '{token}' (write '{token}{token}' for a literal brace)"
            )
        name = token[1:-1]
        if name not in PLACEHOLDERS:
            allowed = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise TemplateError(f"line {line}: unknown placeholder {token} (allowed: {allowed})")
        seen.add(name)
    missing = [p for p in PLACEHOLDERS if p not in seen]
    if missing:
        names = " and ".join("{" + p + "}" for p in missing)
        raise TemplateError(f"missing placeholder {names}: the cluster's samples would not be in the prompt")


@dataclass(frozen=True)
class PromptTemplate:
    """A validated prompt template; `version` (a content hash) is its identity in the store."""

    text: str
    name: str | None = None
    version: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        validate_template(self.text)
        object.__setattr__(self, "version", template_version(self.text))

    def render_texts(self, closest: Sequence[str], furthest: Sequence[str]) -> str:
        """The user message for these sample texts."""
        return self.text.format(closest_samples=samples_json(closest), furthest_samples=samples_json(furthest))

    def render(self, cluster: Cluster | _CanRender) -> str:
        """The user message for one cluster (closest and furthest sample texts as JSON arrays)."""
        return self.render_texts(_texts(cluster.closest), _texts(cluster.furthest))

    def messages(self, cluster: Cluster | _CanRender) -> list[dict[str, str]]:
        """The chat-completions messages: the seed's system message, then the rendered prompt."""
        return [
            {"role": "system", "content": SYSTEM_MESSAGE},
            {"role": "user", "content": self.render(cluster)},
        ]


def _texts(samples: Sequence[Any]) -> list[str]:
    return [s if isinstance(s, str) else s.text for s in samples]


def template_version(text: str) -> str:
    """First 12 hex digits of the SHA-256 of the text: short enough to show, long enough to be unique."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def default_template() -> PromptTemplate:
    """The shipped seed prompt (the original pipeline's, verbatim)."""
    text = resources.files("clusterqc.prompts").joinpath("seed.txt").read_text(encoding="utf-8")
    return PromptTemplate(text, name=SEED_NAME)


def load_template(path: str | Path, name: str | None = None) -> PromptTemplate:
    """A user's template file; any problem is one TemplateError naming the file (and line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise TemplateError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return PromptTemplate(text, name=name)
    except TemplateError as exc:
        raise TemplateError(f"{path}: {exc}") from None


def save_template(
    store: "Store",
    template: PromptTemplate,
    examples: Sequence["FewShotExample | dict[str, Any]"] | None = None,
    parent: str | None = None,
) -> str:
    """Store a template version and return it. Saving the same text again changes nothing.

    A name already held by another version is not silently dropped: the version is stored
    without a name, so both stay reachable by their hashes.
    """
    rows = [e.to_dict() if isinstance(e, FewShotExample) else dict(e) for e in (examples or [])]
    name = template.name
    if name is not None:
        holder = store.get_prompt(name)
        if holder is not None and holder["version"] != template.version and holder.get("name") == name:
            name = None
    store.save_prompt(template.version, template.text, name=name, examples=rows, parent=parent)
    return template.version


# --------------------------------------------------------------------------- few-shot examples


@dataclass(frozen=True)
class FewShotExample:
    """One worked example for the prompt: a cluster's texts, a reason and the verdict."""

    closest: tuple[str, ...]
    furthest: tuple[str, ...]
    reason: str
    verdict: Verdict
    cluster_id: str | None = None
    dataset: str | None = None  # with cluster_id: which cluster it is (a prompt may mix datasets)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in the store's `prompts.examples` column."""
        out: dict[str, Any] = {
            "closest": list(self.closest),
            "furthest": list(self.furthest),
            "reason": self.reason,
            "verdict": self.verdict.value,
        }
        if self.cluster_id is not None:
            out["cluster_id"] = self.cluster_id
        if self.dataset is not None:
            out["dataset"] = self.dataset
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FewShotExample":
        verdict = Verdict.parse(data["verdict"])
        if verdict is None:
            raise ValueError("a few-shot example needs a verdict")
        return cls(tuple(data["closest"]), tuple(data["furthest"]), data["reason"], verdict, data.get("cluster_id"),
                   data.get("dataset"))

    @classmethod
    def from_cluster(cls, cluster: Cluster, reason: str, verdict: Verdict | str) -> "FewShotExample":
        parsed = Verdict.parse(verdict)
        if parsed is None:
            raise ValueError("a few-shot example needs a verdict")
        return cls(tuple(cluster.closest_texts()), tuple(cluster.furthest_texts()), reason, parsed, cluster.id,
                   cluster.dataset)


def _escape(text: str) -> str:
    """Make literal text safe inside a format string."""
    return text.replace("{", "{{").replace("}", "}}")


def _one_line(text: str) -> str:
    """The seed puts each reason on one line; keep it so, or the parser's `Reason:` would split."""
    return " ".join(text.split())


def example_block(
    n: int,
    cluster_closest: Sequence[str],
    cluster_furthest: Sequence[str],
    reason: str,
    verdict: Verdict | str,
) -> str:
    """One `### Example n` block in exactly the seed's format, braces escaped for the template.

    Ends with the newline after the Classification line; examples are separated by one blank line.
    """
    parsed = Verdict.parse(verdict)
    if parsed is None:
        raise ValueError("a few-shot example needs a verdict")
    data = json.dumps(
        {"closest_samples": list(cluster_closest), "furthest_samples": list(cluster_furthest)},
        ensure_ascii=False,
        indent=2,
    )
    return (
        f"### Example {n}\nCluster data:\n```json\n{_escape(data)}\n```\n"
        f"Reason: {_escape(_one_line(reason))}\nClassification: {parsed.value}\n"
    )


def _examples_span(text: str) -> tuple[int, int]:
    """Start and end offsets of the body of the `## Examples` section (up to the next `## `)."""
    match = re.search(rf"^{re.escape(EXAMPLES_HEADING)}[ \t]*\n", text, re.MULTILINE)
    if match is None:
        raise TemplateError(f"template has no '{EXAMPLES_HEADING}' section to put examples in")
    end = re.search(r"^## ", text[match.end():], re.MULTILINE)
    if end is None:
        raise TemplateError(f"template has no '## ' heading after '{EXAMPLES_HEADING}'")
    return match.end(), match.end() + end.start()


def template_examples(template: PromptTemplate) -> list[FewShotExample]:
    """The worked examples already in a template (the seed has three)."""
    start, end = _examples_span(template.text)
    out = []
    for match in _EXAMPLE.finditer(template.text[start:end]):
        data = json.loads(match["json"].replace("{{", "{").replace("}}", "}"))
        reason = match["reason"].replace("{{", "{").replace("}}", "}")
        out.append(
            FewShotExample(
                tuple(data["closest_samples"]),
                tuple(data["furthest_samples"]),
                reason,
                Verdict(match["verdict"].strip()),
            )
        )
    return out


def with_examples(
    base: PromptTemplate,
    examples: Sequence[FewShotExample],
    mode: str = "replace",
    name: str | None = None,
) -> PromptTemplate:
    """A new template: `base` with its examples replaced by (or followed by) `examples`.

    Everything outside the `## Examples` section is kept byte for byte, so a reviewer's
    wording changes to the instructions survive a few-shot rebuild.
    """
    if mode not in ("replace", "append"):
        raise ValueError(f"mode must be 'replace' or 'append', not {mode!r}")
    start, end = _examples_span(base.text)
    first = 1
    body = ""
    if mode == "append":
        body = base.text[start:end]
        first = len(_EXAMPLE.findall(body)) + 1
        if body and not body.endswith("\n\n"):
            body += "\n" if body.endswith("\n") else "\n\n"
    body += "".join(
        example_block(i, e.closest, e.furthest, e.reason, e.verdict) + "\n"
        for i, e in enumerate(examples, start=first)
    )
    return PromptTemplate(base.text[:start] + body + base.text[end:], name=name)

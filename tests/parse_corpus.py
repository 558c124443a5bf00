"""Realistic model answers to the seed prompt, each with the result the parser must give.

Shapes taken from what chat models return to the seed prompt (GPT-4o, DeepSeek, Llama,
Qwen, reasoning models with <think> blocks) and from the original pipeline's era, which used
"High Value" / "Low Value". `reason` is the exact expected reason, or None to skip that check;
`error` is a substring the error must contain when `verdict` is None.
"""

from __future__ import annotations

from dataclasses import dataclass

from clusterqc.model import Verdict

A = Verdict.ACCEPTABLE
U = Verdict.UNACCEPTABLE


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    verdict: Verdict | None
    reason: str | None = None
    error: str | None = None


CORPUS: list[Case] = [
    Case(
        "plain-seed-format",
        "Reason: Generic filenames without descriptive content.\nClassification: Unacceptable",
        U,
        "Generic filenames without descriptive content.",
    ),
    Case(
        "plain-acceptable-trailing-newline",
        "Reason: Diverse travel locations with descriptive place names.\nClassification: Acceptable\n",
        A,
        "Diverse travel locations with descriptive place names.",
    ),
    Case(
        "markdown-headings",
        "### Reason\nThe captions are placeholder text (\"Image description\") repeated across samples.\n\n"
        "### Classification\nUnacceptable",
        U,
        'The captions are placeholder text ("Image description") repeated across samples.',
    ),
    Case(
        "bold-labels",
        "**Reason:** Rich, varied descriptions of landscapes and landmarks.\n**Classification:** Acceptable",
        A,
        "Rich, varied descriptions of landscapes and landmarks.",
    ),
    Case(
        "bold-value",
        "Reason: Mostly near-duplicate product codes.\nClassification: **Unacceptable**",
        U,
        "Mostly near-duplicate product codes.",
    ),
    Case(
        "bold-label-colon-outside",
        "**Reason**: Many different sports and scenes.\n**Classification**: Acceptable",
        A,
        "Many different sports and scenes.",
    ),
    Case("lowercase", "reason: repetitive stock photo ids\nclassification: unacceptable", U, "repetitive stock photo ids"),
    Case("uppercase", "REASON: VARIED CONTENT.\nCLASSIFICATION: ACCEPTABLE", A, "VARIED CONTENT."),
    Case("trailing-period", "Reason: Diverse.\nClassification: Acceptable.", A, "Diverse."),
    Case("trailing-exclamation", "Reason: Only file names!\nClassification: Unacceptable!", U, "Only file names!"),
    Case("quoted-value", 'Reason: Varied captions.\nClassification: "Acceptable"', A, "Varied captions."),
    Case("bracketed-value", "Reason: All captions are 'untitled'.\nClassification: [Unacceptable]", U, None),
    Case(
        "heading-with-value",
        "## Reason: Captions are product SKUs with no description.\n## Classification: Unacceptable",
        U,
        "Captions are product SKUs with no description.",
    ),
    Case(
        "prose-before",
        "Let me analyze this cluster.\n\nThe closest samples are all \"Image description\", a placeholder.\n\n"
        "Reason: Placeholder captions with no content.\nClassification: Unacceptable",
        U,
        "Placeholder captions with no content.",
    ),
    Case(
        "prose-after",
        "Reason: A wide range of travel destinations.\nClassification: Acceptable\n\n"
        "Let me know if you would like me to look at another cluster!",
        A,
        None,
    ),
    Case(
        "unacceptable-after-acceptable-in-prose",
        "Some of these captions would be acceptable on their own, but the cluster as a whole is dominated "
        "by file names.\n\nReason: 8 of 10 captions are file names.\nClassification: Unacceptable",
        U,
        "8 of 10 captions are file names.",
    ),
    Case(
        "acceptable-after-unacceptable-in-prose",
        "At first glance this looks unacceptable because of the short captions, but they name real places.\n"
        "Classification: Acceptable",
        A,
        None,
    ),
    Case("not-acceptable-value", "Reason: Duplicates.\nClassification: Not Acceptable", U, "Duplicates."),
    Case("old-vocab-low", "Reason: Generic filenames.\nClassification: Low Value", U, "Generic filenames."),
    Case("old-vocab-high", "Reason: Diverse and descriptive.\nClassification: High Value", A, "Diverse and descriptive."),
    Case("old-vocab-hyphen", "Reason: Repetitive.\nClassification: low-value", U, "Repetitive."),
    Case(
        "value-with-explanation",
        "Classification: Unacceptable - the captions are camera file names",
        U,
        "the captions are camera file names",
    ),
    Case(
        "think-block",
        "<think>\nThe captions are place names. Is this acceptable or unacceptable? They are short but diverse, "
        "so probably acceptable.\n</think>\n\nReason: Diverse place names across the US.\nClassification: Acceptable",
        A,
        "Diverse place names across the US.",
    ),
    Case(
        "think-block-disagrees-with-answer",
        "<think>Classification: Acceptable? No - they are all placeholders.</think>\n"
        "Reason: Placeholders.\nClassification: Unacceptable",
        U,
        "Placeholders.",
    ),
    Case(
        "think-close-only",
        "Okay, the user wants a classification. These are all IMG_ names.\n</think>\n"
        "Reason: File names only.\nClassification: Unacceptable",
        U,
        "File names only.",
    ),
    Case(
        "think-unclosed",
        "<think>\nLet me look at each sample. Sample 1 is acceptable, sample 2",
        None,
        "",
        "<think>",
    ),
    Case("empty", "", None, "", "empty"),
    Case("whitespace-only", "   \n\t\n", None, "", "empty"),
    Case(
        "only-reason",
        "Reason: The captions are mostly file names and repeated placeholders.",
        None,
        "The captions are mostly file names and repeated placeholders.",
        "no verdict",
    ),
    Case(
        "truncated-classification",
        "Reason: Varied captions about food and travel.\nClassification:",
        None,
        "Varied captions about food and travel.",
        "unrecognised",
    ),
    Case(
        "both-in-classification",
        "Reason: Mixed.\nClassification: Acceptable or Unacceptable",
        None,
        "Mixed.",
        "ambiguous",
    ),
    Case(
        "template-echo",
        "Reason: [your reason]\nClassification: Acceptable|Unacceptable",
        None,
        None,
        "ambiguous",
    ),
    Case(
        "conflicting-lines",
        "Classification: Acceptable\n\nOn reflection, the duplicates dominate.\nClassification: Unacceptable",
        None,
        None,
        "conflicting",
    ),
    Case(
        "final-classification-wins",
        "Initial classification: borderline.\nClassification: Acceptable\n"
        "After weighing the duplicates:\nFinal Classification: Unacceptable",
        U,
        None,
    ),
    Case(
        "both-in-prose-no-line",
        "Parts of this cluster are acceptable, while other parts are unacceptable.",
        None,
        None,
        "ambiguous",
    ),
    Case(
        "not-acceptable-in-prose-only",
        "This cluster is not acceptable for CLIP training.",
        None,
        "This cluster is not acceptable for CLIP training.",
        "no Classification line",
    ),
    Case("bare-verdict", "Unacceptable", U, ""),
    Case("bare-verdict-bold-period", "**Acceptable.**", A, ""),
    Case(
        "stated-in-prose",
        "The captions are detailed and cover many subjects, so I classify this cluster as Acceptable.",
        A,
        "The captions are detailed and cover many subjects, so I classify this cluster as Acceptable.",
    ),
    Case(
        "json-plain",
        '{"classification": "Acceptable", "reason": "Descriptive captions of places."}',
        A,
        "Descriptive captions of places.",
    ),
    Case(
        "json-fenced-capitalised-keys",
        '```json\n{\n  "Reason": "All file names.",\n  "Classification": "Unacceptable"\n}\n```',
        U,
        "All file names.",
    ),
    Case(
        "json-after-prose",
        'Here is my answer:\n{"verdict": "Low Value", "explanation": "Duplicated placeholders."}',
        U,
        "Duplicated placeholders.",
    ),
    Case(
        "json-unknown-value",
        '{"classification": "Maybe", "reason": "Hard to say."}',
        None,
        "Hard to say.",
        "unrecognised",
    ),
    Case(
        "json-echo-then-line",
        'Cluster data:\n```json\n{"closest_samples": ["IMG_1.jpg"], "furthest_samples": ["IMG_2.jpg"]}\n```\n'
        "Reason: File names.\nClassification: Unacceptable",
        U,
        "File names.",
    ),
    Case(
        "bullet-and-quote-prefixes",
        "- **Reason:** Recipes and food photos from many cuisines.\n- **Classification:** Acceptable",
        A,
        "Recipes and food photos from many cuisines.",
    ),
    Case(
        "multiline-reason",
        "Reason:\n1. Captions are real place names.\n2. Varied regions.\n\nClassification: Acceptable",
        A,
        "Captions are real place names.\nVaried regions.",
    ),
    Case(
        "verdict-label",
        "Verdict: Unacceptable\nReasoning: The samples repeat the same placeholder.",
        U,
        "The samples repeat the same placeholder.",
    ),
    Case(
        "no-verdict-prose",
        "I'm sorry, but I can't help with classifying this content.",
        None,
        None,
        "no verdict",
    ),
    Case(
        "unicode-dash-separator",
        "Reason \u2014 many languages and places\nClassification \u2014 Acceptable",
        A,
        "many languages and places",
    ),
    Case(
        "crlf-line-endings",
        "Reason: Repeated watermark text.\r\nClassification: Unacceptable\r\n",
        U,
        "Repeated watermark text.",
    ),
]

# Negated and hedged verdicts (issue 11, item 3): either the verdict they certainly mean, or
# unparsed; never the opposite. `_R` is the reason line most of these answers start with.
_R = "Reason: Mixed captions.\n"
NEGATIONS: list[Case] = [
    # The shapes the adversarial test found.
    Case("neg-not-hyphen", _R + "Classification: Not-Acceptable", U, "Mixed captions."),
    Case("neg-non-hyphen", _R + "Classification: Non-acceptable", U, "Mixed captions."),
    Case("neg-un-hyphen", _R + "Classification: Un-acceptable", U, "Mixed captions."),
    Case("neg-in-hyphen", _R + "Classification: In-acceptable", U, "Mixed captions."),
    Case("hedge-not-really", _R + "Classification: Not really acceptable", None, "Mixed captions.", "hedged"),
    Case("hedge-hardly", _R + "Classification: Hardly acceptable", None, "Mixed captions.", "hedged"),
    Case("neg-not-high-value", _R + "Classification: Not high value", U, "Mixed captions."),
    Case("neg-would-not-classify", "I would not classify this as Acceptable.", None, None, "hedged or negated"),
    Case("neg-double-not-unacceptable", _R + "Classification: not unacceptable", None, "Mixed captions.", "hedged"),
    # Twenty-odd more shapes of the same kind.
    Case("neg-nonacceptable-one-word", _R + "Classification: Nonacceptable", U, "Mixed captions."),
    Case("neg-non-space", _R + "Classification: Non acceptable", U, "Mixed captions."),
    Case("neg-inacceptable-one-word", _R + "Classification: Inacceptable", U, "Mixed captions."),
    Case("neg-not-hyphen-high-value", _R + "Classification: not-high-value", U, "Mixed captions."),
    Case("neg-definitely-not", _R + "Classification: Definitely not acceptable", U, "Mixed captions."),
    Case("neg-not-acceptable-bold-caps", _R + "Classification: **NOT ACCEPTABLE**", U, "Mixed captions."),
    Case("neg-bare-not-hyphen", "Not-Acceptable", U, ""),
    Case("neg-json-non-acceptable", '{"classification": "Non-Acceptable", "reason": "dupes"}', U, "dupes"),
    Case("neg-double-not-low-value", _R + "Classification: Not low value", None, "Mixed captions.", "hedged"),
    Case("neg-never-acceptable", _R + "Classification: Never acceptable", None, "Mixed captions.", "hedged"),
    Case("neg-isnt-acceptable", _R + "Classification: It isn't acceptable", None, "Mixed captions.", "hedged"),
    Case("neg-cannot-call", _R + "Classification: I cannot call it acceptable", None, "Mixed captions.", "hedged"),
    Case("neg-no-longer", _R + "Verdict: no longer acceptable", None, "Mixed captions.", "hedged"),
    Case("hedge-not-quite", _R + "Classification: Not quite acceptable", None, "Mixed captions.", "hedged"),
    Case("hedge-not-entirely-unacceptable", _R + "Classification: Not entirely unacceptable", None,
         "Mixed captions.", "hedged"),
    Case("hedge-barely", _R + "Classification: Barely acceptable", None, "Mixed captions.", "hedged"),
    Case("hedge-probably", _R + "Classification: Probably Acceptable", None, "Mixed captions.", "hedged"),
    Case("hedge-mostly-unacceptable", _R + "Classification: Mostly unacceptable", None, "Mixed captions.", "hedged"),
    Case("hedge-borderline", _R + "Classification: Borderline acceptable", None, "Mixed captions.", "hedged"),
    Case("hedge-kind-of", _R + "Classification: kind of acceptable", None, "Mixed captions.", "hedged"),
    Case("hedge-question-mark", _R + "Classification: Acceptable?", None, "Mixed captions.", "hedged"),
    Case("hedge-ish", _R + "Classification: Acceptable-ish", None, "Mixed captions.", "hedged"),
    Case("hedge-parenthetical", _R + "Classification: Acceptable (borderline)", None, "Mixed captions.", "hedged"),
    Case("hedge-but-barely", _R + "Classification: Acceptable, but barely", None, "Mixed captions.", "hedged"),
    Case("hedge-or-not", _R + "Classification: Acceptable or not", None, "Mixed captions.", "hedged"),
    Case("hedge-leaning", _R + "Classification: Leaning acceptable", None, "Mixed captions.", "hedged"),
    Case("hedge-json-maybe", '{"classification": "Maybe acceptable", "reason": "unsure"}', None, "unsure", "hedged"),
    Case("hedge-final-line", _R + "Final classification: possibly high value", None, "Mixed captions.", "hedged"),
    Case("neg-dont-think-stated", "I don't think I can rate this as Acceptable.", None, None, "hedged or negated"),
    Case("neg-wouldnt-deem", "The captions repeat; I wouldn't deem it as Acceptable.", None, None, "hedged or negated"),
    Case("hedge-could-classify", "One could classify this cluster as Acceptable.", None, None, "hedged or negated"),
    Case("neg-stated-not-acceptable-is-certain", "I classify this cluster as not acceptable.", U, None),
    Case("neg-prose-negation-then-line", "The captions are not diverse.\nClassification: Unacceptable", U, None),
    Case("neg-reason-says-not-acceptable-line-decides",
         "Reason: Not acceptable captions for training.\nClassification: Unacceptable", U,
         "Not acceptable captions for training."),
]
CORPUS += NEGATIONS

"""The page script and style that make the Review keys dependable: focus, key map, scroll, clamp.

Why a script at all: Streamlit's shortcuts (hotkeys-js) ignore plain keys while the focus is
in an INPUT, TEXTAREA or SELECT, which includes a toggle's checkbox and a selectbox's search
field. Without help, a curator who typed a note or used a sidebar control has to click the
page before A works again. The script (installed once per browser tab) does only this:

- Escape leaves whatever field or control has the focus (the note keeps its text: Streamlit
  commits a text field when it loses the focus), and closes the key map;
- a toggle, a checkbox or a chosen select option gives the focus back to the page at once;
- Enter in a one-line text field commits it and leaves it;
- `?` (outside a field) shows or hides the key map;
- a new cluster card (its header's serial changes) scrolls the page to the top;
- while a new card streams in, parts still left from the previous card are hidden;
- a click on a clamped caption opens or closes it;
- a web thumbnail that fails to load is replaced by the words "image could not be loaded".

Everything here is our own fixed text: no data reaches this script or this style.
"""

from __future__ import annotations

import streamlit as st

KEY_MAP = (
    ("A", "Accept: record the proposal's verdict"),
    ("O", "Override: record the other verdict"),
    ("1", "Acceptable"),
    ("2", "Unacceptable"),
    ("S", "Skip (kept for you until you revisit skips)"),
    ("U", "Undo your last decision"),
    ("Esc", "Leave the note field or a sidebar control"),
    ("?", "Show or hide this key map"),
)

_SCRIPT = """
<script>
(function () {
  if (window.__cqcKeys) { return; }
  window.__cqcKeys = true;
  var doc = window.document;
  var KEYS = __KEYMAP__;
  function editable(el) {
    return !!el && (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT' || el.isContentEditable);
  }
  function leave() {
    var a = doc.activeElement;
    if (a && a !== doc.body && a.blur) { a.blur(); }
  }
  function help() {
    var box = doc.getElementById('cqc-keymap');
    if (box) { return box; }
    box = doc.createElement('div');
    box.id = 'cqc-keymap';
    box.setAttribute('role', 'dialog');
    box.setAttribute('aria-label', 'Keys');
    box.style.cssText = 'position:fixed;top:4rem;right:1.5rem;z-index:1000000;background:#fff;color:#222;' +
      'border:1px solid #bbb;border-radius:.5rem;padding:.75rem 1rem;box-shadow:0 4px 16px rgba(0,0,0,.2);' +
      'font:14px/1.6 sans-serif;display:none';
    var title = doc.createElement('div');
    title.style.fontWeight = '600';
    title.textContent = 'Keys';
    box.appendChild(title);
    KEYS.forEach(function (k) {
      var row = doc.createElement('div');
      var key = doc.createElement('kbd');
      key.textContent = k[0];
      key.style.cssText = 'display:inline-block;min-width:2.2em;font-weight:600';
      row.appendChild(key);
      row.appendChild(doc.createTextNode(k[1]));
      box.appendChild(row);
    });
    doc.body.appendChild(box);
    return box;
  }
  doc.addEventListener('keydown', function (e) {
    if (e.key === 'Escape') {
      help().style.display = 'none';
      leave();
      return;
    }
    var t = e.target;
    if (e.key === 'Enter' && t && t.tagName === 'INPUT' && (t.type === 'text' || t.type === 'search' || t.type === '')
        && !t.getAttribute('role')) {
      setTimeout(leave, 0);
      return;
    }
    if (e.key === '?' && !editable(t)) {
      var box = help();
      box.style.display = box.style.display === 'none' ? 'block' : 'none';
      e.preventDefault();
    }
  }, true);
  doc.addEventListener('change', function (e) {
    var t = e.target;
    if (t && (t.type === 'checkbox' || t.type === 'radio')) { setTimeout(function () { t.blur(); }, 0); }
  }, true);
  doc.addEventListener('click', function (e) {
    var t = e.target;
    if (!t || !t.closest) { return; }
    if (t.closest('[role="option"]')) { setTimeout(leave, 60); return; }
    var caption = t.closest('.cqc-cap');
    if (caption) { caption.classList.toggle('cqc-open'); }
  }, true);
  doc.addEventListener('error', function (e) {
    var img = e.target;
    if (!img || img.tagName !== 'IMG' || img.dataset.cqcBroken) { return; }
    img.dataset.cqcBroken = '1';
    img.style.display = 'none';
    var note = doc.createElement('div');
    note.className = 'cqc-broken';
    note.textContent = 'image could not be loaded';
    img.parentNode && img.parentNode.insertBefore(note, img);
  }, true);
  // Parts of the card tagged with another serial than the header's are from the previous
  // card (still on screen while the new one streams in): hidden until replaced. A
  // MutationObserver runs before the next paint, so no frame shows them under the new id.
  function serialOf(el, prefix) {
    var name = Array.prototype.find.call(el.classList, function (c) { return c.indexOf(prefix) === 0; });
    return name ? name.slice(prefix.length).split('_')[0] : null;
  }
  function hideOtherCards() {
    var head = doc.querySelector('[class*="st-key-cqc_head_"]');
    if (!head) { return; }
    var serial = serialOf(head, 'st-key-cqc_head_');
    // The card's last block carries its serial too: until it has the header's serial, the
    // samples and proposals on screen may still be (partly) the previous card's.
    var end = doc.querySelector('[class*="st-key-cqc_end_"]');
    var complete = !!end && serialOf(end, 'st-key-cqc_end_') === serial;
    doc.querySelectorAll('.st-key-cqc_samples, [class*="st-key-cqc_proposals_"]').forEach(function (el) {
      el.classList.toggle('cqc-other-card', !complete);
    });
  }
  var lastCard = null;
  function toTop() {
    window.scrollTo(0, 0);
    ['[data-testid="stMain"]', '[data-testid="stAppViewContainer"]', '.stMain', 'section.main'].forEach(function (s) {
      doc.querySelectorAll(s).forEach(function (el) { el.scrollTop = 0; });
    });
  }
  new MutationObserver(function () {
    hideOtherCards();
    var head = doc.querySelector('[class*="st-key-cqc_head_"]');
    if (!head) { return; }
    var serial = serialOf(head, 'st-key-cqc_head_');
    if (serial && serial !== lastCard) { lastCard = serial; toTop(); }
  }).observe(doc.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['class']});
})();
</script>
"""

_STYLE = """
<style>
[data-testid="stMainBlockContainer"] { padding-top: 3.2rem; padding-bottom: 2rem; }
.st-key-cqc_card { gap: 0.4rem; }
.st-key-cqc_card [data-testid="stText"] { line-height: 1.35; }
[class*="st-key-cqc_sample_"] { gap: 0.3rem; }
.cqc-grid { display: grid; grid-template-columns: 1fr 1fr; column-gap: 1.5rem; }
.cqc-title { font-weight: 600; margin-bottom: 0.2rem; }
.cqc-sample { margin-bottom: 0.3rem; }
.cqc-cap {
  cursor: pointer; font-size: 0.92rem; line-height: 1.35; white-space: pre-wrap; overflow-wrap: anywhere;
  display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; overflow: hidden;
}
.cqc-cap.cqc-open { display: block; }
.cqc-tags { display: flex; flex-wrap: wrap; gap: 0.3rem; margin-top: 0.1rem; }
.cqc-tag { font-size: 0.78rem; line-height: 1.5; padding: 0 0.45rem; border-radius: 0.5rem; white-space: nowrap; }
.cqc-orange { background: #fff3e0; color: #b45309; }
.cqc-gray { background: #f0f2f6; color: #31333f; }
.cqc-green { background: #e6f4ea; color: #1a7f37; font-weight: 600; }
.cqc-red { background: #fdecea; color: #c62828; font-weight: 600; }
.cqc-prop { padding: 0.3rem 0.6rem; margin-bottom: 0.3rem; border: 1px solid transparent; border-radius: 0.5rem; }
.cqc-prop.cqc-answered { border-color: rgba(49, 51, 63, 0.2); }
.cqc-prop-head { display: flex; gap: 0.5rem; align-items: center; font-size: 0.92rem; }
.cqc-reason {
  font-size: 0.92rem; line-height: 1.35; white-space: pre-wrap; overflow-wrap: anywhere; margin-top: 0.15rem;
  display: -webkit-box; -webkit-line-clamp: 3; -webkit-box-orient: vertical; overflow: hidden;
}
.st-key-cqc_samples { gap: 0.3rem; }
.st-key-cqc_samples [data-testid="stImage"] img { height: 110px; object-fit: cover; }
[class*="st-key-cqc_btn_"][class*="__green__"] button { border-color: #1a7f37; color: #1a7f37; }
[class*="st-key-cqc_btn_"][class*="__red__"] button { border-color: #c62828; color: #c62828; }
[class*="st-key-cqc_btn_accept__"][class*="__green__"] button { background: #1a7f37; color: #fff; }
[class*="st-key-cqc_btn_accept__"][class*="__red__"] button { background: #c62828; color: #fff; }
[class*="st-key-cqc_bulk_row__"] { padding: 0.4rem 0.75rem; }
[class*="st-key-cqc_bulk_row__"] [data-testid="stText"] > span {
  display: -webkit-box !important; -webkit-line-clamp: 2; -webkit-box-orient: vertical; overflow: hidden;
}
[class*="st-key-cqc_bulk_row__"] [data-testid="stVerticalBlock"] { gap: 0.25rem; }
[class*="st-key-cqc_end_"] { display: none; }
.cqc-other-card, .cqc-other-card * { visibility: hidden !important; }
.cqc-broken { color: #c62828; font-size: 0.85rem; padding: 1rem 0; }
</style>
"""


def install() -> None:
    """Add the page style and the key script (the script runs once per tab, whatever the reruns)."""
    import json

    st.html(_STYLE)
    st.html(_SCRIPT.replace("__KEYMAP__", json.dumps([list(k) for k in KEY_MAP])), unsafe_allow_javascript=True)

"""Output rails on streams: PII-leak masking and moderation with bounded buffering.

:class:`OutputStreamGuard` sits between the engine's token deltas and the client.
``feed(delta)`` returns the text that is safe to send now (often all of it, sometimes a
little less), ``finish()`` the rest at the end of the stream. The guarantees, checked by
property tests over random chunkings:

- the concatenation of everything emitted equals ``mask_pii(full_answer)[0]`` (given
  tokens shorter than ``max_buffer_chars``): a PII value is never emitted half-way, and a
  placeholder such as ``[EMAIL]`` is always emitted whole, inside one piece;
- buffering is bounded and local: only a trailing region that could still become a PII
  value is held back: the unfinished last token, and, when a digit, ``@`` or ``+``
  occurs in the last ``hold_chars`` characters, everything from the token where it starts
  (spaced values such as ``+1 415 555 0100`` or IBANs are at most ~42 characters). Plain
  prose is released word by word, Chinese character by character; the answer is never
  awaited as a whole. Past ``max_buffer_chars`` of held text the guard cuts anyway, and a
  recognisable value longer than that (only an email's domain part has no length limit in
  the pattern) is released, masked, up to where it ends so far: held text never grows
  without bound, which made every later ``feed`` rescan it (quadratic: 53 s for a
  30 KB answer ``x@bb.bb.bb...``);
- moderation sees every character before it is released, together with the last
  ``context_chars`` released characters, so a harmful phrase split across deltas is
  caught before any of it leaves (phrases up to ``hold_chars`` long, or any phrase that
  ends in a still-held region).

Cost per delta: one ``find_pii`` over the held region (usually < 100 characters, at most
``max_buffer_chars`` + the delta) and one moderation pass over at most ``context_chars +
held`` characters, i.e. tens of us, so the whole answer costs time linear in its length.
An answer longer than ``max_chars`` (``RailsConfig.max_scan_chars``) is stopped like a
moderation block, with the decision ``output.size``.
"""

from __future__ import annotations

from llmops_ray.safety.config import OutputRailsConfig
from llmops_ray.safety.decision import RailDecision
from llmops_ray.safety.links import construct_containing, neutralize_links, open_construct_start, open_url_unsafe
from llmops_ray.safety.moderation import moderation_score
from llmops_ray.safety.pii import KEYWORD_CONTEXT_CHARS, KEYWORD_HINT, find_pii, mask_pii, mask_pii_after

_PII_EXTRA = frozenset("@._%+-()/:#")
_PRONE = frozenset("0123456789@+")


def _is_pii_char(ch: str) -> bool:
    # Characters that can occur inside an unspaced PII value (email, IP, ID, IBAN, phone).
    return ch.isascii() and (ch.isalnum() or ch in _PII_EXTRA)


def _run_start(text: str, pos: int) -> int:
    """Start of the run of PII characters that contains ``text[pos]``."""
    while pos > 0 and _is_pii_char(text[pos - 1]):
        pos -= 1
    return pos


class OutputStreamGuard:
    """Stateful output rails for one streamed answer (not shared between requests)."""

    def __init__(self, config: OutputRailsConfig | None = None, max_chars: int | None = None):
        self.config = config or OutputRailsConfig()
        self.max_chars = max_chars
        """Most characters of answer this guard scans (None: no limit); past it the stream is stopped."""
        self._fed = 0
        self._buf = ""
        self._tail = ""  # last released raw characters (moderation context, left context of masking)
        self._pii_counts: dict[str, int] = {}
        self._mod_score = 0.0
        self._mod_category: str | None = None
        self.blocked: RailDecision | None = None
        """Set when moderation (or the size limit) stopped the stream: send ``block_message`` and finish with ``content_filter``."""
        self.emitted_chars = 0
        self._link_counts: dict[str, int] = {}
        self._link_hosts: set[str] = set()
        self._swallow: str | None = None  # terminators of a URL being dropped (cut open by the buffer bound)
        self._swallow_at: tuple[int, str] | None = None  # set by _cut_point: (construct start, marker)

    # ------------------------------------------------------------------ public API

    def feed(self, delta: str) -> str:
        """Add one engine delta; return the text that may be sent now (possibly "")."""
        if self.blocked is not None or not delta:
            return ""
        self._fed += len(delta)
        if self._swallow is not None:
            delta = self._consume_swallow(delta)
            if not delta:
                return ""
        if self.max_chars is not None and self._fed > self.max_chars:
            # Never let unscanned text through: the answer stops here.
            self.blocked = RailDecision("output.size", "block", f"answer longer than the scan limit "
                                        f"({self.max_chars} characters)", 1.0, {"limit": self.max_chars})
            self._buf = ""
            return ""
        self._buf += delta
        cut = self._cut_point()
        if self._swallow_at is not None:
            return self._cut_open_link()
        if cut <= 0:
            return ""
        return self._release(cut)

    def finish(self) -> str:
        """End of stream: release (masked, moderated) whatever is still held."""
        if self.blocked is not None or not self._buf:
            return ""
        return self._release(len(self._buf))

    @property
    def block_message(self) -> str:
        return self.config.block_message

    def decisions(self) -> list[RailDecision]:
        """One decision per enabled output rail (call after ``finish()``): pii, moderation, links."""
        out: list[RailDecision] = []
        cfg = self.config
        if self.blocked is not None and self.blocked.name == "output.size":
            out.append(self.blocked)
        if cfg.pii:
            n = sum(self._pii_counts.values())
            if n:
                action = "mask" if cfg.pii_action == "mask" else "flag"
                out.append(RailDecision("output.pii", action, f"{n} PII value(s) in the answer", 1.0, dict(self._pii_counts)))
            else:
                out.append(RailDecision("output.pii", "allow", "", 0.0))
        if cfg.moderation:
            if self.blocked is not None and self.blocked.name == "output.moderation":
                out.append(self.blocked)
            elif self._mod_score >= cfg.moderation_threshold:
                out.append(RailDecision("output.moderation", "flag", f"category {self._mod_category}", self._mod_score))
            else:
                out.append(RailDecision("output.moderation", "allow", "", self._mod_score))
        if cfg.links:
            n = sum(self._link_counts.values())
            if n:
                action = "mask" if cfg.link_action == "neutralize" else "flag"
                out.append(RailDecision("output.links", action, f"{n} link(s)/image(s) to untrusted hosts or carrying data",
                                        1.0, {**self._link_counts, "hosts": sorted(self._link_hosts)[:10]}))
            else:
                out.append(RailDecision("output.links", "allow", "", 0.0))
        return out

    # ------------------------------------------------------------------ internals

    def _cut_point(self) -> int:
        buf = self._buf
        n = len(buf)
        hold = _run_start(buf, n)  # the unfinished last token may still grow into a value
        window_start = max(0, n - self.config.hold_chars)
        for j in range(window_start, hold):
            if buf[j] in _PRONE:
                hold = min(hold, _run_start(buf, j))
                break
        if self.config.links:
            start = open_construct_start(buf, len(buf))
            if start is not None:
                if n - start > self.config.max_buffer_chars:
                    # A link/URL longer than the buffer bound: decide on what is known so far
                    # (host, data in the query); an unsafe one is dropped to its end.
                    swallow, marker = open_url_unsafe(buf[start:], self.config.allowed_link_hosts)
                    if swallow and self.config.link_action == "neutralize":
                        self._swallow_at = (start, marker)
                        return start
                hold = min(hold, start)
            inside = construct_containing(buf, hold)
            if inside is not None:
                hold = inside
        if n - hold > self.config.max_buffer_chars:
            hold = n - self.config.hold_chars  # bounded: cut inside a very long token
        if hold <= 0:
            return 0
        # Never cut through a value that is already recognisable, unless it is longer than the
        # buffer bound: then it goes out whole (one placeholder) up to where it ends so far.
        for m in find_pii(buf):
            if m.start < hold < m.end:
                hold = m.end if m.end - m.start > self.config.max_buffer_chars else m.start
                break
            if m.start >= hold:
                break
        return hold

    def _release(self, cut: int) -> str:
        cfg = self.config
        raw = self._buf[:cut]
        if cfg.moderation:
            # Everything still held is checked too: a phrase straddling the cut is seen whole
            # before any of it leaves.
            context = self._tail[-cfg.context_chars:] if cfg.context_chars else ""
            score, category = moderation_score(context + self._buf)
            if score > self._mod_score:
                self._mod_score, self._mod_category = score, category
            if score >= cfg.moderation_threshold and cfg.moderation_action == "block":
                self.blocked = RailDecision("output.moderation", "block", f"category {category}", score)
                self._buf = ""
                return ""
        self._buf = self._buf[cut:]
        out = raw
        if cfg.links:
            linked, findings = neutralize_links(raw, cfg.allowed_link_hosts)
            for f in findings:
                self._link_counts[f.kind] = self._link_counts.get(f.kind, 0) + 1
                self._link_hosts.add(f.host)
            if cfg.link_action == "neutralize":
                out = raw = linked
        if cfg.pii:
            masked, counts = self._mask(raw)
            for kind, c in counts.items():
                self._pii_counts[kind] = self._pii_counts.get(kind, 0) + c
            if cfg.pii_action == "mask":
                out = masked
        self._tail = (self._tail + raw)[-max(cfg.context_chars, KEYWORD_CONTEXT_CHARS):]
        self.emitted_chars += len(out)
        return out

    def _cut_open_link(self) -> str:
        """Release the text before an over-long unsafe link, a marker for it, and drop the rest of its URL."""
        start, marker = self._swallow_at
        self._swallow_at = None
        kind = "image" if marker.startswith("[image") else "link"
        construct = self._buf[start:]
        before = self._release(start) if start > 0 else ""
        if self.blocked is not None:
            return ""
        self._buf = ""
        self._link_counts[kind] = self._link_counts.get(kind, 0) + 1
        self._link_hosts.add(marker.split(": ", 1)[-1].rstrip("]"))
        # What ends the URL: ')' inside markdown, '>' inside a tag, whitespace for a bare URL.
        if construct.startswith(("[", "!")):
            self._swallow = ")"
        elif construct.startswith("<"):
            self._swallow = ">"
        else:
            self._swallow = " \n\t"
        self._tail = (self._tail + marker)[-max(self.config.context_chars, KEYWORD_CONTEXT_CHARS):]
        self.emitted_chars += len(marker)
        return before + marker

    def _consume_swallow(self, delta: str) -> str:
        """Drop the part of ``delta`` that still belongs to a swallowed URL; return the rest."""
        ends = [i for i in (delta.find(c) for c in self._swallow) if i != -1]
        if not ends:
            return ""
        end = min(ends)
        keep_terminator = self._swallow.startswith(" ")  # whitespace after a bare URL is prose
        self._swallow = None
        return delta[end:] if keep_terminator else delta[end + 1 :]

    def _mask(self, raw: str) -> tuple[str, dict[str, int]]:
        # Released characters as left context keep the detectors' look-behinds ("no digit
        # before a phone number") and keyword anchors ("passport no. E1234567", "卡号 ...")
        # the same as on the whole answer.
        ctx = self._tail[-KEYWORD_CONTEXT_CHARS:]
        if not KEYWORD_HINT.search(ctx):
            ctx = ctx[-1:]
        if ctx:
            return mask_pii_after(ctx + raw, len(ctx))
        return mask_pii(raw)


def check_output(text: str, config: OutputRailsConfig | None = None,
                 max_chars: int | None = None) -> tuple[str, list[RailDecision]]:
    """Non-streamed answer: the same rails in one call. Returns (text to send, decisions).

    When moderation blocks, or the answer is longer than ``max_chars``, the text is the
    config's ``block_message``.
    """
    guard = OutputStreamGuard(config, max_chars)
    out = guard.feed(text) + guard.finish()
    if guard.blocked is not None:
        out = guard.block_message
    return out, guard.decisions()

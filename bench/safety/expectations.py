"""What each loader does with hostile and damaged files: the safety suite's expectations.

Defaults: the valid file loads exactly, and every hostile or damaged input gives a clear error.
Each known departure is declared, with its reason, by the format it concerns
(`FormatSpec.safety_findings`, in its adapter's module). The tests hold every measured outcome to
these, so a framework that starts (or stops) executing code, returning wrong data, or blowing up
memory fails a test.
"""

from __future__ import annotations

import frameworks
from bench.safety.modes import base_mode

DEFAULT_BY_GROUP = {"valid": "loaded-exact", "hostile": "clear-error", "damaged": "clear-error"}


def expected_outcome(framework: str, fmt: str, mode: str, name: str, group: str) -> tuple[str, str]:
    """(outcome, reason) the suite expects for one load: the format's first matching finding, else the default.
    An entry point's mode (a remote request, a distributed job) is held to the serbench mode it stands for
    (`modes.base_mode`), unless a finding names the entry point's mode itself."""
    findings = frameworks.adapter_class(framework).safety_spec(fmt).safety_findings
    for held_as in dict.fromkeys((mode, base_mode(mode))):
        for finding in findings:
            if finding.matches(held_as, name):
                return finding.outcome, finding.reason
    return DEFAULT_BY_GROUP[group], f"default for {group} inputs"
